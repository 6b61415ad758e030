"""The queue screen at month-end size: time to first paint and memory with 100,000 items, against 1,000.

Run: ``python bench/queue_screen.py [--items 100000]``. Fills two queues (1,000 items and ``--items``), opens
the real app headless at 80x24 on each, and prints the time until the table shows its first rows, the
memory the process grew by while doing so, and a 100k/1k ratio for both. The screen reads one window of rows
from SQL, so both ratios should stay near 1x. Nothing is asserted.

``python bench/queue_screen.py --fill DIR --items N`` only fills a home folder with N items (with real PDFs
whose text names their document and customer) for driving the screen by hand: ``opos-tui --home DIR``;
with ``--every-status`` some of them are held, sent, deferred, failed, uncertain and one has another customer's
PDF, as after a month-end run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pdfs: the same PDFs the tests use

from opos_tui.app import OposApp
from opos_tui.screens.queue import QueueScreen
from opos_tui.services.home import Home
from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Recipient, open_queue
from opos_tui.services.settings import check, save
from tests.pdfs import make_pdf

CUSTOMERS = ["Müller GmbH", "Schäfer & Söhne KG", "Bäckerei Groß", "Özdemir Logistik", "Weiß Elektro"]


def item(n: int) -> NewItem:
    customer = CUSTOMERS[n % len(CUSTOMERS)]
    document, number = f"M-{n:07d}", f"K{10000 + n % 5000}"
    dunning = n % 4 != 0
    level = 1 + n % 3 if dunning else None
    title = f"{level}. Mahnung" if dunning else "Zahlungsavis"
    pdf = make_pdf(f"{title} {document}", f"Kunde {customer}", f"Kundennummer {number}", "Betrag 1.234,56 EUR")
    return NewItem(
        type=LetterType.DUNNING if dunning else LetterType.PAYMENT_ADVICE,
        level=level,
        sender="Buchhaltung <buchhaltung@example.test>",
        recipients=(Recipient("to", f"kunde{n}@example.test", customer),),
        subject=f"{title} {document}",
        body=f"Sehr geehrte Damen und Herren,\n\nanbei {title} {document} für {customer}.\n",
        attachments=(NewAttachment(f"{title.replace(' ', '_')}_{document}.pdf", pdf),),
        vars={"customer_name": customer, "customer_number": number, "document_number": document},
    )


def fill(home: Home, count: int) -> None:
    home.ensure()
    save(home, check({"sender": {"address": "buchhaltung@example.test"}}))
    with open_queue(home) as queue:
        for first in range(0, count, 1000):
            queue.enqueue_many(item(n) for n in range(first, min(first + 1000, count)))


# (status, attempts, last error) for every seventh item, in turn; the rest stay pending.
EVERY_STATUS = [
    ("held", 0, None),
    ("sent", 1, None),
    ("deferred", 1, "451 4.7.1 Greylisted, please try again in 300 seconds"),
    ("failed", 1, "550 5.1.1 <kunde@example.test>: Recipient address rejected: User unknown in virtual mailbox"),
    ("uncertain", 1, "the connection was lost after the data was sent: it may have arrived"),
    ("failed", 2, "552 5.3.4 Message size exceeds fixed limit"),
]


def every_status(home: Home) -> None:
    """Give the items of a filled home every status, and one of them another customer's PDF."""
    db = sqlite3.connect(home.queue_db)
    ids = [r[0] for r in db.execute("SELECT id FROM items ORDER BY id")]
    for n, item_id in enumerate(ids[::7]):
        status, attempts, error = EVERY_STATUS[n % len(EVERY_STATUS)]
        db.execute(
            "UPDATE items SET status = ?, attempts = ?, error = ?, sent_at = CASE WHEN ? = 'sent' THEN created_at END"
            " WHERE id = ?",
            (status, attempts, error, status, item_id),
        )
    if len(ids) > 3:  # the swapped PDF: the attachment of the item before
        db.execute(
            "UPDATE attachments SET data = (SELECT data FROM attachments WHERE item_id = ?) WHERE item_id = ?",
            (ids[-4], ids[-3]),
        )
    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
    db.commit()
    db.close()


async def first_paint(home: Home) -> tuple[float, int]:
    """Seconds from starting the app until the table shows rows, and the bytes allocated meanwhile."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        while not (isinstance(app.screen, QueueScreen) and app.screen.table.row_count):
            await pilot.pause(0.001)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--fill", type=Path, help="only fill this home folder with --items items")
    parser.add_argument("--every-status", action="store_true", help="with --fill: items of every status")
    args = parser.parse_args()
    if args.fill:
        fill(Home(args.fill), args.items)
        if args.every_status:
            every_status(Home(args.fill))
        print(f"{args.items:,} items in {args.fill}")
        return
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for size in (1000, args.items):
            home = Home(Path(folder) / str(size))
            started = time.perf_counter()
            fill(home, size)
            print(f"filled {size:,} items in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            asyncio.run(first_paint(home))  # warm-up: imports, CSS parsing
            results[size] = min((asyncio.run(first_paint(home)) for _ in range(3)), key=lambda r: r[0])
        (small_time, small_mem), (big_time, big_mem) = results[1000], results[args.items]
        print(f"{'':28}{'1,000':>12}{args.items:>12,}{'ratio':>10}")
        ratio = big_time / small_time
        print(f"{'time to first paint':28}{small_time * 1000:>10.0f}ms{big_time * 1000:>10.0f}ms{ratio:>9.2f}x")
        print(
            f"{'memory allocated (peak)':28}{small_mem / 1e6:>10.1f}MB{big_mem / 1e6:>10.1f}MB"
            f"{big_mem / small_mem:>9.2f}x"
        )


if __name__ == "__main__":
    main()
