"""The two queue engines side by side: claims per second and the first page of a 100,000-item queue.

Run: ``python bench/queue_engines.py [--items 100000] [--claims 500] [--url postgresql://...]``. Without
``--url`` a PostgreSQL server is started from the ``pgserver`` package (``pip install -e '.[test]'``) on a
Unix socket and removed afterwards. Each engine gets the same items (20 KB PDFs); the table shows each
measure on SQLite and PostgreSQL and their ratio (PostgreSQL / SQLite) from the same run. A claim is a whole
sender's turn: ``claim`` and ``record_sent``, each a committed transaction. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.queue_scale import item, timed
from opos_tui.services.queue import Queue, SqliteQueue


@contextmanager
def postgresql(url: str | None) -> Iterator[str]:
    """The database to measure: ``url``, or a fresh one on a throw-away server."""
    if url:
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="opos-bench-pg-") as folder:
        server = pgserver.get_server(Path(folder), cleanup_mode="stop")
        try:
            server.psql("CREATE DATABASE opos_bench;")
            yield str(server.get_uri("opos_bench"))
        finally:
            server.cleanup()


def fill(queue: Queue, count: int) -> float:
    start = time.perf_counter()
    for first in range(0, count, 1000):
        queue.enqueue_many(item(n) for n in range(first, min(first + 1000, count)))
    return time.perf_counter() - start


def claims_per_second(queue: Queue, claims: int, senders: int) -> float:
    """``claims`` claims with ``record_sent``, by ``senders`` threads with a handle each."""
    handles = [queue.another() for _ in range(senders)]
    share = claims // senders

    def send(handle: Queue) -> None:
        for _ in range(share):
            claimed = handle.claim()
            if claimed is None:
                return
            handle.record_sent(claimed.id, "250 ok")

    threads = [threading.Thread(target=send, args=(h,)) for h in handles]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for h in handles:
        h.close()
    return share * senders / elapsed


def measure(queue: Queue, items: int, claims: int) -> dict[str, float]:
    results = {"fill (s, enqueue_many by 1000)": fill(queue, items)}
    measures: dict[str, Callable[[], float]] = {
        "first page, 100 rows (ms)": lambda: 1000 * timed(lambda: queue.page(limit=100)),
        "count all (ms)": lambda: 1000 * timed(queue.count),
        "change probe (ms)": lambda: 1000 * timed(queue.version),
        "claims/s, 1 sender": lambda: claims_per_second(queue, claims, 1),
        "claims/s, 4 senders": lambda: claims_per_second(queue, claims, 4),
    }
    results.update({name: run() for name, run in measures.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--url", help="an empty PostgreSQL database to use instead of a throw-away server")
    args = parser.parse_args()
    from opos_tui.services.queue.postgresql import PostgresQueue

    with tempfile.TemporaryDirectory() as folder, postgresql(args.url) as url:
        print(f"{args.items} items, {args.claims} claims per measure", flush=True)
        with SqliteQueue(Path(folder) / "queue.db") as lite:
            on_sqlite = measure(lite, args.items, args.claims)
        with PostgresQueue(url) as pg:
            on_postgresql = measure(pg, args.items, args.claims)
    print(f"{'':34} {'SQLite':>10} {'PostgreSQL':>11} {'ratio':>7}")
    for name, lite_value in on_sqlite.items():
        pg_value = on_postgresql[name]
        print(f"{name:34} {lite_value:10.2f} {pg_value:11.2f} {pg_value / lite_value:6.2f}x")


if __name__ == "__main__":
    main()
