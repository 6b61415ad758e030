"""A send run's one queue writer (services.queue.writer): what arrives together is committed together, each
caller is answered only once its write is committed, and a claim nobody waits for any more is handed back; on the
run's event loop (an SQLite queue) and on a thread of its own (a queue on a server). Real SQLite files, a real
aiosmtpd server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from opos_tui.services import secrets
from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.home import Home
from opos_tui.services.queue import Queue, QueueError, QueueItem, SqliteQueue, Status, open_queue, sqlite
from opos_tui.services.queue.sqlite import connect
from opos_tui.services.queue.writer import Writer
from opos_tui.services.transports.registry import build_transport
from tests.servers.smtp import StartServer
from tests.test_queue_contract import new_item
from tests.test_send import advice


async def test_an_sqlite_queue_is_written_on_the_event_loop_what_one_turn_asks_in_one_commit(tmp_path: Path) -> None:
    """No thread: the writes asked within three turns of the loop are made together. Each caller is answered
    once they are committed, and the claims' callers with their commit."""
    with SqliteQueue(tmp_path / "queue.db") as queue:
        ids = queue.enqueue_many(new_item(n) for n in range(1, 6))
        seen = queue.version()
        before = threading.active_count()
        writer = Writer(queue)
        assert threading.active_count() == before
        holds = [asyncio.create_task(writer.do(lambda q, i=i: q.hold([i]))) for i in ids[:4]]
        claimed, committed = writer.submit(lambda q: q.claim([ids[4]]))
        await asyncio.gather(*holds)
        item = await claimed
        assert committed.done() and committed.exception() is None
        await writer.close()
        assert item is not None and item.id == ids[4]
        assert queue.counts()[Status.HELD] == 4 and queue.counts()[Status.SENDING] == 1
        assert queue.version() - seen == 1


async def test_on_the_loop_writes_asked_in_the_turns_before_a_batch_join_it(tmp_path: Path) -> None:
    """Three writes, each a turn of the loop after the one before, share one commit (as the writes of connections
    whose replies came in together do); a write asked once that batch is made goes into the next."""
    with SqliteQueue(tmp_path / "queue.db") as queue:
        ids = queue.enqueue_many(new_item(n) for n in range(1, 5))
        seen = queue.version()
        writer = Writer(queue)
        holds = []
        for item_id in ids[:3]:
            holds.append(asyncio.ensure_future(writer.do(lambda q, i=item_id: q.hold([i]))))
            await asyncio.sleep(0)  # a turn of the loop
        await asyncio.gather(*holds)
        assert queue.version() - seen == 1
        await writer.do(lambda q: q.hold([ids[3]]))
        await writer.close()
        assert queue.counts()[Status.HELD] == 4
        assert queue.version() - seen == 2


async def test_writes_that_arrive_while_one_waits_share_a_commit(tmp_path: Path) -> None:
    """On a thread: the first write waits for another process's lock; the three asked meanwhile follow it."""
    with SqliteQueue(tmp_path / "queue.db") as queue:
        ids = queue.enqueue_many(new_item(n) for n in range(1, 5))
        seen = queue.version()
        blocker = connect(tmp_path / "queue.db")
        blocker.execute("BEGIN IMMEDIATE")  # another process writing: the writer's first commit waits for it
        writer = Writer(queue, on_loop=False)
        holds = [asyncio.create_task(writer.do(lambda q, i=i: q.hold([i]))) for i in ids]
        await asyncio.sleep(0)  # every task has handed its write over
        assert not any(task.done() for task in holds)  # nobody is answered before the commit
        blocker.execute("ROLLBACK")
        await asyncio.gather(*holds)
        await writer.close()
        blocker.close()
        assert queue.counts()[Status.HELD] == 4
        assert queue.version() - seen <= 2  # at most the first alone, then the other three in one commit


async def test_writes_that_arrive_while_a_batch_is_worked_on_join_its_commit(tmp_path: Path) -> None:
    """On a thread, the writer takes the first write alone (nothing else was asked yet); the others, asked while
    it is being made, go into the same transaction: one commit for all four, not one for the first and one for
    the rest."""
    with SqliteQueue(tmp_path / "queue.db") as queue:
        ids = queue.enqueue_many(new_item(n) for n in range(1, 5))
        seen = queue.version()
        writer = Writer(queue, on_loop=False)
        loop = asyncio.get_running_loop()
        first_begun = asyncio.Event()
        others_asked = threading.Event()

        def first(q: Queue) -> None:
            loop.call_soon_threadsafe(first_begun.set)
            assert others_asked.wait(30)
            q.hold([ids[0]])

        holds = [asyncio.create_task(writer.do(first))]
        await first_begun.wait()
        holds += [asyncio.create_task(writer.do(lambda q, i=i: q.hold([i]))) for i in ids[1:]]
        await asyncio.sleep(0)  # every task has handed its write over
        others_asked.set()
        await asyncio.gather(*holds)
        await writer.close()
        assert queue.counts()[Status.HELD] == 4
        assert queue.version() - seen == 1


@pytest.mark.parametrize("on_loop", [True, False], ids=["on the loop", "on a thread"])
async def test_a_claim_whose_caller_was_cancelled_is_handed_to_abandoned(tmp_path: Path, on_loop: bool) -> None:
    with SqliteQueue(tmp_path / "queue.db") as queue:
        (item_id,) = queue.enqueue_many([new_item(1)])
        blocker = connect(tmp_path / "queue.db")
        blocker.execute("BEGIN IMMEDIATE")
        writer = Writer(queue, on_loop=on_loop)
        left: list[QueueItem | None] = []
        claim = asyncio.create_task(writer.do(lambda q: q.claim(), left.append))
        await asyncio.sleep(0)
        claim.cancel()
        blocker.execute("ROLLBACK")
        await writer.close()
        blocker.close()
        await asyncio.wait([claim])
        assert claim.cancelled()
        assert [x.id for x in left if x is not None] == [item_id]  # the dispatcher gives it back from there


@pytest.mark.parametrize("on_loop", [True, False], ids=["on the loop", "on a thread"])
async def test_a_claim_that_cannot_begin_gets_the_error_instead_of_waiting_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """Another process keeps the queue locked past the busy timeout: the claim's caller (a connection about to
    send) gets the queue's error, and so does the commit it would wait for; nothing was claimed."""
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 100)  # the writer's own handle gives up after 0.1 s
    with SqliteQueue(tmp_path / "queue.db") as queue:
        queue.enqueue_many([new_item(1)])
        blocker = connect(tmp_path / "queue.db")
        blocker.execute("BEGIN IMMEDIATE")
        writer = Writer(queue, on_loop=on_loop)
        claimed, committed = writer.submit(lambda q: q.claim())
        with pytest.raises(QueueError):
            await asyncio.wait_for(claimed, 30)
        with pytest.raises(QueueError):
            await committed
        blocker.execute("ROLLBACK")
        await writer.close()
        blocker.close()
        assert queue.counts()[Status.PENDING] == 1


async def test_one_connection_commits_once_per_mail(home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    """Each mail's result goes into the transaction that claims the next one: five mails, six commits (the last
    result with the claim that finds nothing more), where a commit each for claims and results made eleven."""
    server = smtp_server("plain")
    current = server.settings()
    with open_queue(home) as queue:
        ids = queue.enqueue_many(advice(current, tmp_path, n, f"k{n}@aerger.example") for n in range(5))
        seen = queue.version()
        store = secrets.open_store(home)
        result = await Dispatcher(queue, lambda: build_transport(current, store)).run(ids, skip_check=ids)
        assert result.sent == ids and result.all_went
        assert queue.counts()[Status.SENT] == 5
        assert queue.version() - seen == 6
    assert len(server.received) == 5
