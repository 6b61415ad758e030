"""What the queue costs at month-end size: enqueue and listing with 100,000 items, against 1,000.

Run: ``python bench/queue_scale.py [--items 100000]``. Prints each operation's time at 1k and at the full
size and their ratio; a page, a count, a search and the change probe should stay near 1x (indexes, LIMIT),
only whole-table work (a text search, counting all) may grow with the size. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Queue, Recipient, SqliteQueue, Status

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 80  # ~20 KB, a typical one-page letter


def item(n: int) -> NewItem:
    return NewItem(
        type=LetterType.DUNNING,
        level=1 + n % 3,
        sender="Müller GmbH <buchhaltung@mueller.example>",
        recipients=(Recipient("to", f"kunde{n}@example.com", f"Kundin Nr. {n}"),),
        subject=f"{1 + n % 3}. Mahnung M-{n:07d}",
        body="Sehr geehrte Damen und Herren,\n\nanbei unsere Mahnung.\n",
        attachments=(NewAttachment(f"Mahnung_{n}.pdf", PDF),),
        vars={"customer_name": f"Firma {n} GmbH", "customer_number": f"K{n:07d}", "document_number": f"M-{n:07d}"},
    )


def timed(action: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def fill(path: Path, count: int) -> tuple[Queue, float]:
    queue = SqliteQueue(path)
    start = time.perf_counter()
    for first in range(0, count, 1000):
        queue.enqueue_many(item(n) for n in range(first, min(first + 1000, count)))
    elapsed = time.perf_counter() - start
    # a realistic mix of states
    queue.hold(range(1, count + 1, 50))
    return queue, elapsed


def measure(queue: Queue, size: int) -> dict[str, float]:
    middle = size // 2
    return {
        "enqueue one (own transaction, fsync)": timed(lambda: queue.enqueue(item(size + 1)), repeat=3),
        "first page (100 rows, newest first)": timed(lambda: queue.page(limit=100)),
        "page in the middle (offset)": timed(lambda: queue.page(offset=middle, limit=100)),
        "filter held, first page": timed(lambda: queue.page(Status.HELD, limit=100)),
        "counts per status": timed(queue.counts),
        "search 'm-0000123' (one hit)": timed(lambda: queue.page(search="m-0000123", limit=100)),
        "search count 'firma 4'": timed(lambda: queue.count(search="firma 4")),
        "change probe (version)": timed(queue.version, repeat=50),
        "claim + record sent": timed(lambda: _claim_and_send(queue), repeat=3),
    }


def _claim_and_send(queue: Queue) -> None:
    claimed = queue.claim()
    if claimed is not None:
        queue.record_sent(claimed.id, "250 ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        small, small_fill = fill(Path(folder) / "small.db", 1000)
        large, large_fill = fill(Path(folder) / "large.db", args.items)
        base, full = measure(small, 1000), measure(large, args.items)
        size_mb = (Path(folder) / "large.db").stat().st_size / 1e6
        small.close()
        large.close()
    print(f"queue with {args.items:,} items ({size_mb:.0f} MB) against 1,000 items")
    print(f"{'bulk enqueue per item':<40} {small_fill / 1000 * 1e6:9.0f} µs {large_fill / args.items * 1e6:9.0f} µs")
    print(f"{'operation':<40} {'1k':>12} {'full':>12} {'ratio':>8}")
    for name, seconds in full.items():
        print(f"{name:<40} {base[name] * 1000:9.2f} ms {seconds * 1000:9.2f} ms {seconds / base[name]:7.1f}x")


if __name__ == "__main__":
    main()
