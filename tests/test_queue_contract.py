"""The queue contract: what every queue engine must do, tested through the QueueEngine Protocol only.

Written once for every engine: add an engine to ``ENGINES`` and it must pass all of this. Times come from a
hand-moved clock, never from editing the queue behind its back; concurrency is real (threads and processes).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.queue import (
    LEASE_SECONDS,
    DuplicateImport,
    LetterType,
    NewAttachment,
    NewItem,
    QueueEngine,
    QueueError,
    Recipient,
    Rendered,
    SqliteQueue,
    Status,
    UnknownItems,
)
from tests.clock import HandClock

MANY = 2_000
"""More item numbers than SQLite takes in one statement (999): every list of ids must be split."""


@dataclass
class Engine:
    """One engine under test, on a fresh empty queue."""

    name: str
    opener: Callable[..., QueueEngine]
    """Opens a handle on the queue: ``opener(clock=..., host=...)``; ``host`` is the claimant's host name."""
    child_opener: str
    """Python source that opens a handle on the same queue as ``queue`` in another process."""
    opened: list[QueueEngine] = field(default_factory=list)

    def open(self, **identity: Any) -> QueueEngine:
        handle = self.opener(**identity)
        self.opened.append(handle)
        return handle

    def start(self, code: str) -> subprocess.Popen[str]:
        """Run ``code`` in a process of its own, with ``queue`` open; its stdin and stdout are pipes."""
        return subprocess.Popen(
            [sys.executable, "-c", f"{self.child_opener}\n{code}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )


def sqlite_engine(tmp_path: Path) -> Engine:
    path = tmp_path / "queue.db"
    return Engine(
        "sqlite",
        lambda **identity: SqliteQueue(path, **identity),
        "from pathlib import Path\n"
        "from opos_tui.services.queue import SqliteQueue\n"
        f"queue = SqliteQueue(Path({str(path)!r}))",
    )


def postgresql_engine(request: pytest.FixtureRequest) -> Engine:
    from opos_tui.services.queue.postgresql import PostgresQueue

    url: str = request.getfixturevalue("postgresql_url")  # a database of this test's own
    return Engine(
        "postgresql",
        lambda **identity: PostgresQueue(url, **identity),
        f"from opos_tui.services.queue.postgresql import PostgresQueue\nqueue = PostgresQueue({url!r})",
    )


ENGINES: dict[str, Callable[[pytest.FixtureRequest], Engine]] = {
    "sqlite": lambda request: sqlite_engine(request.getfixturevalue("tmp_path")),
    "postgresql": postgresql_engine,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    made = ENGINES[request.param](request)
    yield made
    for handle in made.opened:
        handle.close()


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def queue(engine: Engine, clock: HandClock) -> QueueEngine:
    return engine.open(clock=clock)


def new_item(n: int = 1, **changes: object) -> NewItem:
    base = NewItem(
        type=LetterType.DUNNING,
        level=2,
        sender="Müller GmbH <buchhaltung@mueller.example>",
        recipients=(
            Recipient("to", f"kunde{n}@example.com", f"Jörg Ärger {n}"),
            Recipient("cc", "cc@example.com"),
            Recipient("bcc", "archiv@mueller.example"),
        ),
        subject=f"2. Mahnung R-{n:05d}",
        body="Sehr geehrter Herr Ärger,\n",
        attachments=(NewAttachment(f"Mahnung_{n}_Größe.pdf", b"%PDF-1.4\n\x00\xff binary " + bytes([n % 256])),),
        vars={
            "customer_name": f"Ärger & Söhne {n}",
            "customer_number": f"K{1000 + n}",
            "document_number": f"R-{n:05d}",
        },
    )
    return NewItem(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def at(clock: HandClock, later: float = 0) -> datetime:
    return datetime.fromtimestamp(clock() + later, UTC)


# --- adding and reading ---------------------------------------------------------------------------------


def test_what_goes_in_comes_out(queue: QueueEngine, clock: HandClock) -> None:
    item = queue.enqueue(new_item())
    assert item.status is Status.PENDING
    assert item.message_id.startswith("<") and item.message_id.endswith("@mueller.example>")
    assert item.to == ("Jörg Ärger 1 <kunde1@example.com>",)
    assert item.envelope_recipients == ("kunde1@example.com", "cc@example.com", "archiv@mueller.example")
    assert item.vars["customer_name"] == "Ärger & Söhne 1"
    assert item.date is None and item.first_attempt_at is None and item.attempts == 0
    assert item.created_at == at(clock)
    (att,) = queue.attachments(item.id)
    assert att.filename == "Mahnung_1_Größe.pdf"
    assert att.data == new_item().attachments[0].data
    assert queue.get(item.id).attachment_infos[0].size == len(att.data)
    with pytest.raises(UnknownItems) as caught:
        queue.get(item.id + 1)
    assert caught.value.ids == (item.id + 1,)
    assert queue.quick_check() == ["ok"]


def test_enqueue_many_gives_growing_ids_and_is_all_or_nothing(queue: QueueEngine) -> None:
    ids = queue.enqueue_many(new_item(n, source_key=f"manifest-{n}") for n in range(1, 4))
    assert ids == sorted(ids) and len(set(ids)) == 3
    with pytest.raises(DuplicateImport) as caught:
        queue.enqueue_many([new_item(4, source_key="manifest-4"), new_item(2, source_key="manifest-2")])
    assert caught.value.item_id == ids[1]
    assert queue.count() == 3  # manifest-4 was not queued either


def test_duplicate_source_is_refused(queue: QueueEngine) -> None:
    first = queue.enqueue(new_item(source_key="abc"))
    with pytest.raises(DuplicateImport) as caught:
        queue.enqueue(new_item(source_key="abc"))
    assert caught.value.item_id == first.id
    assert queue.count() == 1


def test_paging_search_counts_and_the_change_probe(engine: Engine, queue: QueueEngine) -> None:
    ids = queue.enqueue_many(new_item(n) for n in range(1, 251))
    other = engine.open()  # another process's view
    before = other.version()
    queue.hold(ids[:10])
    assert other.version() != before
    assert other.counts()[Status.HELD] == 10
    assert other.counts()[Status.PENDING] == 240
    assert set(other.counts()) == set(Status) and other.counts()[Status.SENT] == 0
    first = other.page(limit=100)
    assert [r.id for r in first] == ids[::-1][:100]  # newest first
    assert [r.id for r in other.page(offset=100, limit=100)] == ids[::-1][100:200]
    assert other.count(Status.HELD) == 10
    assert {r.id for r in other.page(Status.HELD)} == set(ids[:10])
    assert other.count([Status.HELD, Status.PENDING]) == 250
    # search: recipient, customer name, customer number, document number, subject; case-insensitive
    assert [r.id for r in other.page(search="kunde17@")] == [ids[16]]
    assert [r.id for r in other.page(search="ärger & SÖHNE 142")] == [ids[141]]
    assert [r.id for r in other.page(search="k1099")] == [ids[98]]
    assert [r.id for r in other.page(search="r-00123")] == [ids[122]]
    assert other.count(search="mahnung") == 250
    assert other.count(Status.HELD, search="R-0000") == 9
    assert other.ids(Status.HELD, search="R-0000") == ids[:9][::-1]
    row = other.page(search="R-00005")[0]
    assert row.attachments == ("Mahnung_5_Größe.pdf",)
    assert row.customer_number == "K1005"


def test_position_counts_the_newer_matching_items(queue: QueueEngine) -> None:
    a, b, c, d = queue.enqueue_many(new_item(n) for n in range(1, 5))
    queue.hold([b, d])
    assert queue.position(a) == 3
    assert queue.position(d) == 0
    assert queue.position(c) == 1
    assert queue.position(a, Status.PENDING) == 1  # only c is newer and pending
    assert queue.position(b, Status.PENDING) == 1  # where b would stand among the pending ones
    assert queue.position(a, search="R-00001") == 0


def test_the_change_probe_moves_with_every_write_and_only_then(queue: QueueEngine) -> None:
    seen = [queue.version()]
    (item_id,) = queue.enqueue_many([new_item()])
    seen.append(queue.version())
    queue.page(), queue.count(), queue.counts(), queue.get(item_id), queue.attachments(item_id)
    assert queue.version() == seen[-1]
    for write in (
        lambda: queue.hold([item_id]),
        lambda: queue.release([item_id]),
        lambda: queue.record_checks([(item_id, True, "{}")]),
        lambda: queue.claim(),
        lambda: queue.record_sent(item_id, "250 ok"),
    ):
        write()
        seen.append(queue.version())
    assert len(set(seen)) == len(seen)


def test_a_waiting_handle_wakes_for_a_change_by_another(engine: Engine, queue: QueueEngine) -> None:
    follower = engine.open()
    seen = follower.version()
    assert follower.wait_for_change(seen, timeout=0.05) is False  # nothing changed
    woke: list[bool] = []
    waiting = threading.Thread(target=lambda: woke.append(follower.wait_for_change(seen, timeout=120)))
    waiting.start()
    queue.enqueue(new_item())
    waiting.join()
    assert woke == [True]
    assert follower.wait_for_change(seen, timeout=0) is True  # a change before the wait counts at once
    assert follower.count() == 1  # and the handle still works after waiting


def test_customers_are_counted_by_number_else_name_else_address(queue: QueueEngine) -> None:
    no_number = {"customer_name": "Ärger & Söhne"}
    ids = queue.enqueue_many(
        [
            new_item(1),
            new_item(2, vars={**new_item(1).vars, "document_number": "R-2"}),  # customer 1 again, by number
            new_item(3, vars=no_number),
            new_item(4, vars=no_number),  # the same name, no number
            new_item(5, vars={}),
            new_item(6, vars={}, recipients=(Recipient("to", "KUNDE5@example.com"),)),  # the same To address
        ]
    )
    assert queue.customers(ids) == 3
    assert queue.customers(ids[:1]) == 1 and queue.customers([]) == 0


# --- operator actions -----------------------------------------------------------------------------------


def test_operator_actions_and_their_limits(queue: QueueEngine) -> None:
    a, b, c = queue.enqueue_many(new_item(n) for n in (1, 2, 3))
    assert queue.hold([a, b]).changed == (a, b)
    result = queue.release([b, c])
    assert result.changed == (b,) and result.skipped == {c: Status.PENDING}
    with pytest.raises(UnknownItems) as unknown:
        queue.hold([c, 999])
    assert unknown.value.ids == (999,)
    assert queue.get(c).status is Status.PENDING  # nothing changed
    claimed = queue.claim([c])
    assert claimed is not None and claimed.status is Status.SENDING
    assert queue.delete([a, c]).skipped == {c: Status.SENDING}
    assert queue.hold([c]).skipped == {c: Status.SENDING}
    queue.record_sent(c, "250 ok")
    assert queue.delete([c]).skipped == {c: Status.SENT}
    assert queue.retry([c]).skipped == {c: Status.SENT}
    with pytest.raises(UnknownItems):
        queue.get(a)  # deleted, with attachments
    assert queue.attachments(a) == []
    assert [x.outcome for x in queue.get(b).history] == ["held", "released"]


def test_writes_made_together_are_committed_together(engine: Engine, queue: QueueEngine) -> None:
    """A send run records a mail's result and claims the next one in one transaction: nothing of the block is
    seen (or durable) before it ends, and a write that fails inside it leaves the others be."""
    a, b = queue.enqueue_many(new_item(n) for n in (1, 2))
    other = engine.open()
    seen = other.version()
    with queue.together():
        assert queue.claim([a]) is not None
        queue.hold([b])
        with pytest.raises(UnknownItems):
            queue.hold([b, 999])
        assert other.statuses([a, b]) == {a: Status.PENDING, b: Status.PENDING}
        assert other.version() == seen
    assert other.statuses([a, b]) == {a: Status.SENDING, b: Status.HELD}
    assert other.version() != seen
    assert [x.outcome for x in other.get(b).history] == ["held"]


def test_retry_without_ids_takes_every_retryable_item(queue: QueueEngine, clock: HandClock) -> None:
    deferred, failed, uncertain, pending = queue.enqueue_many(new_item(n) for n in range(1, 5))
    for item_id, record in (
        (deferred, lambda i: queue.record_deferred(i, "451 later", at(clock, 3600))),
        (failed, lambda i: queue.record_failed(i, "550 no")),
        (uncertain, lambda i: queue.record_uncertain(i, "connection lost")),
    ):
        assert queue.claim([item_id]) is not None
        record(item_id)
    assert queue.retry().changed == (uncertain, failed, deferred)
    assert queue.statuses([deferred, failed, uncertain, pending]) == dict.fromkeys(
        [deferred, failed, uncertain, pending], Status.PENDING
    )
    assert queue.get(deferred).next_attempt_at is None


def test_only_an_uncertain_item_can_be_marked_sent(queue: QueueEngine, clock: HandClock) -> None:
    doubtful, pending = queue.enqueue_many(new_item(n) for n in (1, 2))
    assert queue.claim([doubtful]) is not None
    queue.record_uncertain(doubtful, "connection lost after the data was sent")
    clock.advance(60)
    result = queue.mark_sent([doubtful, pending])
    assert result.changed == (doubtful,) and result.skipped == {pending: Status.PENDING}
    item = queue.get(doubtful)
    assert item.status is Status.SENT and item.error is None and item.sent_at == at(clock)
    assert [x.outcome for x in item.history] == ["uncertain", "marked-sent"]


def test_recipients_can_be_corrected_before_sending(queue: QueueEngine) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    queue.set_recipients(item_id, [Recipient("to", "richtig@example.com", "Richtige Kundin")])
    assert queue.get(item_id).to == ("Richtige Kundin <richtig@example.com>",)
    assert [r.id for r in queue.page(search="richtige")] == [item_id]
    assert queue.page(search="kunde1@") == []
    assert queue.claim() is not None
    with pytest.raises(QueueError):
        queue.set_recipients(item_id, [Recipient("to", "zu-spaet@example.com")])
    with pytest.raises(UnknownItems):
        queue.set_recipients(item_id + 1, [Recipient("to", "niemand@example.com")])


def test_plausibility_results_are_stored_per_item(queue: QueueEngine) -> None:
    good, bad, sent = queue.enqueue_many(new_item(n) for n in (1, 2, 3))
    assert queue.claim([sent]) is not None
    queue.record_sent(sent, "250 ok")
    assert queue.unchecked() == [bad, good]  # unsent ones only, newest first
    assert queue.unchecked([good], limit=10) == [good]
    queue.record_checks([(good, True, "fine"), (bad, False, "R-00002 missing"), (bad + 100, False, "gone")])
    assert queue.unchecked() == []
    assert queue.check_detail(bad) == "R-00002 missing" and queue.check_detail(sent) is None
    assert queue.flagged([good, bad]) == [bad]
    assert {r.id: r.plausible for r in queue.page()} == {good: True, bad: False, sent: None}
    queue.delete([bad])
    assert queue.flagged([bad]) == [] and queue.check_detail(bad) is None


# --- sending --------------------------------------------------------------------------------------------


def test_a_claim_is_committed_with_its_lease_first_attempt_and_date(
    engine: Engine, queue: QueueEngine, clock: HandClock
) -> None:
    older, newer = queue.enqueue_many(new_item(n) for n in (1, 2))
    clock.advance(30)
    claimed = queue.claim()
    assert claimed is not None and claimed.id == older  # the oldest first
    assert claimed.status is Status.SENDING and claimed.attempts == 1
    assert claimed.first_attempt_at == at(clock) and claimed.date is not None
    # Committed before claim returned: every other handle sees it.
    assert engine.open().get(older).status is Status.SENDING
    with queue.another() as worker:  # a handle for another thread
        assert worker.get(older).status is Status.SENDING
    assert queue.sendable_count() == 1 and queue.sendable_count([older, newer]) == 1
    assert queue.claim([older]) is None  # one claimant per item


def rendered_item(n: int) -> NewItem:
    return new_item(n, rendered=Rendered(f"To: kunde{n}@example.com\r\n\r\nHallo\r\n".encode(), 0))


def test_peek_shows_what_a_claim_would_take_and_changes_nothing(
    engine: Engine, queue: QueueEngine, clock: HandClock
) -> None:
    first, second, third = queue.enqueue_many(rendered_item(n) for n in (1, 2, 3))
    probe = queue.version()
    peeked = queue.peek()
    assert peeked is not None and peeked[0].id == first and peeked[0].status is Status.PENDING
    assert peeked == (queue.get(first), queue.rendered(first)) and queue.version() == probe  # nothing written
    assert peeked[1] == rendered_item(1).rendered
    assert queue.peek([third, second]) == (queue.get(second), queue.rendered(second))
    assert queue.peek(exclude=[first]) == (queue.get(second), queue.rendered(second))
    assert queue.peek([first, second], exclude=[first, second]) is None
    claimed = queue.claim(exclude=[first])
    assert claimed is not None and claimed.id == second
    claimed = queue.claim([first, third], exclude=[first])
    assert claimed is not None and claimed.id == third
    assert queue.claim(exclude=[first]) is None and queue.peek(exclude=[first]) is None
    assert engine.open().get(first).status is Status.PENDING


def test_a_peeked_item_is_claimed_as_it_was_or_not_at_all(engine: Engine, queue: QueueEngine, clock: HandClock) -> None:
    first, second, third, fourth = queue.enqueue_many(rendered_item(n) for n in (1, 2, 3, 4))
    peeked = [queue.peek([i]) for i in (first, second, third, fourth)]
    assert all(p is not None for p in peeked)
    p1, p2, p3, p4 = (p[0] for p in peeked if p is not None)
    clock.advance(5)

    claimed = queue.claim_peeked(p1, "Fri, 27 Nov 2026 10:00:00 +0100")
    assert claimed is not None and claimed.status is Status.SENDING and claimed.attempts == 1
    assert claimed.date == "Fri, 27 Nov 2026 10:00:00 +0100" and claimed.first_attempt_at == at(clock)
    assert claimed == queue.get(first)  # the item as the queue now holds it
    assert engine.open().get(first).status is Status.SENDING  # as any claim
    assert queue.claim_peeked(p1, "Fri, 27 Nov 2026 10:00:00 +0100") is None  # one claimant

    other = engine.open(clock=clock)  # another sender takes it meanwhile
    assert other.claim([second]) is not None
    assert queue.claim_peeked(p2, "Fri, 27 Nov 2026 10:00:00 +0100") is None

    queue.hold([third])  # the operator holds it
    assert queue.claim_peeked(p3, "Fri, 27 Nov 2026 10:00:00 +0100") is None
    queue.release([third])  # and lets it go again, unchanged: it may go as it was
    claimed = queue.claim_peeked(p3, "Fri, 27 Nov 2026 10:00:00 +0100")
    assert claimed is not None and claimed == queue.get(third)

    # Its recipients corrected, written anew at another sender's claim, and given back: not as peeked.
    queue.set_recipients(fourth, [Recipient("to", "richtig@example.com")])
    assert other.claim([fourth]) is not None
    other.store_rendered(fourth, Rendered(b"To: richtig@example.com\r\n\r\nHallo\r\n", 0))
    other.unclaim(fourth, "the run was stopped")
    assert queue.get(fourth).attempts == p4.attempts and queue.rendered(fourth) is not None
    assert queue.claim_peeked(p4, "Fri, 27 Nov 2026 10:00:00 +0100") is None
    after = queue.get(fourth)
    assert after.status is Status.PENDING and after.attempts == p4.attempts  # taken back whole


def test_a_peeked_item_is_claimed_with_what_changed_since(queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([rendered_item(1)])
    assert queue.claim() is not None
    queue.record_deferred(item_id, "451 4.3.0 try again later", at(clock, 5 * 60))
    clock.advance(1)
    found = queue.peek([item_id])  # named by the operator: taken before its backoff is over
    assert found is not None and found[0].next_attempt_at is not None
    peeked = found[0]
    assert queue.retry().changed == (item_id,)  # the backoff cleared, a line in the history
    queue.record_checks([(item_id, True, "")])  # checked meanwhile
    claimed = queue.claim_peeked(peeked, "Fri, 27 Nov 2026 10:00:00 +0100")
    assert claimed is not None and claimed == queue.get(item_id)
    assert claimed.next_attempt_at is None and claimed.plausible is True
    assert [a.outcome for a in claimed.history] == ["deferred", "retry"]


def test_deferred_backoff_retry_and_history(queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    claimed = queue.claim()
    assert claimed is not None and claimed.date is not None
    date, first = claimed.date, claimed.first_attempt_at
    queue.record_deferred(item_id, "451 4.3.0 try again later", at(clock, 5 * 60))
    clock.advance(1)
    assert queue.claim() is None  # backoff not over
    assert queue.sendable_count() == 0 and queue.sendable_count([item_id]) == 1
    item = queue.get(item_id)
    assert item.status is Status.DEFERRED and item.error == "451 4.3.0 try again later"
    assert item.next_attempt_at == at(clock, 5 * 60 - 1)
    assert queue.retry().changed == (item_id,)
    clock.advance(60)
    again = queue.claim()
    assert again is not None and again.date == date and again.message_id == claimed.message_id
    assert again.first_attempt_at == first  # fixed at the first claim
    # The server's reply names the address in its own case: the recipient is found regardless.
    queue.record_sent(item_id, "250 2.0.0 queued", refused={"CC@Example.COM": "550 5.1.1 no such user"})
    done = queue.get(item_id)
    assert done.status is Status.SENT and done.sent_at == at(clock) and done.error is None
    assert done.attempts == 2
    assert [a.outcome for a in done.history] == ["deferred", "retry", "sent"]
    assert done.history[0].reply == "451 4.3.0 try again later"
    refused = {r.address: r.refused for r in done.recipients}
    assert refused.pop("cc@example.com") == "550 5.1.1 no such user"
    assert refused and set(refused.values()) == {None}  # the others were accepted


def test_a_deferred_item_comes_back_when_its_backoff_is_over(queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim() is not None
    queue.record_deferred(item_id, "421 busy", at(clock, 300))
    clock.advance(299)
    assert queue.claim() is None
    clock.advance(1)
    assert queue.sendable_count() == 1
    claimed = queue.claim()
    assert claimed is not None and claimed.id == item_id and claimed.attempts == 2


def test_a_deferred_item_is_sent_early_when_asked_for_by_number(queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim() is not None
    queue.record_deferred(item_id, "421 busy", at(clock, 3600))
    clock.advance(1)  # a later run
    claimed = queue.claim([item_id])
    assert claimed is not None and claimed.id == item_id


def test_a_failure_and_a_late_record_for_an_item_no_longer_sending(queue: QueueEngine) -> None:
    failed, pending = queue.enqueue_many(new_item(n) for n in (1, 2))
    assert queue.claim([failed]) is not None
    queue.record_failed(failed, "550 5.1.1 no such user", refused={"kunde1@example.com": "550 5.1.1 no such user"})
    item = queue.get(failed)
    assert item.status is Status.FAILED and item.error == "550 5.1.1 no such user"
    taken = queue.claim()
    assert taken is not None and taken.id == pending and queue.claim() is None  # failed is not sendable
    queue.record_sent(failed, "250 ok")  # only from sending: the status stays
    assert queue.get(failed).status is Status.FAILED
    assert queue.get(failed).history[-1].outcome == "sent"  # but the late reply is kept for the operator


def test_unclaim_gives_the_item_back_uncounted(queue: QueueEngine) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim() is not None
    queue.unclaim(item_id, "run stopped: authentication failed")
    item = queue.get(item_id)
    assert item.status is Status.PENDING and item.attempts == 0
    assert (item.history[-1].outcome, item.history[-1].reply) == ("not-sent", "run stopped: authentication failed")
    assert queue.claim() is not None


def test_claims_from_another_host_expire_by_lease(engine: Engine, queue: QueueEngine, clock: HandClock) -> None:
    (item_id, other_id) = queue.enqueue_many([new_item(1), new_item(2)])
    elsewhere = engine.open(clock=clock, host="terminal-server-2")
    assert elsewhere.claim([item_id], lease=60) is not None
    assert queue.claim([other_id]) is not None
    clock.advance(59)
    assert queue.recover_stale() == []
    clock.advance(2)
    assert queue.recover_stale() == [item_id]  # our own claim stays
    item = queue.get(item_id)
    assert item.status is Status.UNCERTAIN and "may have arrived" in (item.error or "")
    assert queue.claim() is None  # never resent by itself
    elsewhere.record_sent(item_id, "250 ok")  # its late answer does not undo the doubt
    assert queue.get(item_id).status is Status.UNCERTAIN
    assert queue.mark_sent([item_id]).changed == (item_id,)
    assert queue.get(item_id).status is Status.SENT


def test_the_default_lease_outlasts_a_mail(engine: Engine, queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert engine.open(clock=clock, host="terminal-server-2").claim() is not None
    clock.advance(LEASE_SECONDS - 1)
    assert queue.recover_stale() == []
    clock.advance(2)
    assert queue.recover_stale() == [item_id]


def test_two_claimants_never_take_the_same_item(engine: Engine, queue: QueueEngine) -> None:
    queue.enqueue_many(new_item(n) for n in range(200))
    handles = [engine.open() for _ in range(4)]
    taken: list[list[int]] = [[] for _ in handles]

    def worker(slot: int) -> None:
        mine = handles[slot]
        while (item := mine.claim()) is not None:
            taken[slot].append(item.id)
            mine.record_sent(item.id, "250 ok")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in taken for i in ids]
    assert len(everything) == 200 == len(set(everything))


CLAIM_AND_REPORT = """
import sys
print("ready", flush=True)
sys.stdin.readline()  # all start together
while (item := queue.claim()) is not None:
    print(item.id, flush=True)
    queue.record_sent(item.id, "250 ok")
queue.close()
"""


def test_claimants_in_separate_processes_each_get_an_item_once(engine: Engine, queue: QueueEngine) -> None:
    ids = queue.enqueue_many(new_item(n) for n in range(300))
    children = [engine.start(CLAIM_AND_REPORT) for _ in range(3)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0]
    claimed = [int(line) for out in outs for line in out.split()]
    assert sorted(claimed) == ids  # every item exactly once
    assert queue.counts()[Status.SENT] == 300


# --- any number of item numbers -------------------------------------------------------------------------


@pytest.fixture
def many(queue: QueueEngine) -> list[int]:
    return queue.enqueue_many(new_item(n, attachments=()) for n in range(MANY))


def test_claim_among_more_ids_than_one_statement_takes(queue: QueueEngine, many: list[int]) -> None:
    queue.hold(many[:-5])
    assert queue.sendable_count(many) == 5
    claimed = queue.claim(many)
    assert claimed is not None and claimed.id == many[-5]  # the oldest sendable one, from the last chunk
    assert queue.sendable_count(many) == 4


def test_statuses_and_actions_on_more_ids_than_one_statement_takes(queue: QueueEngine, many: list[int]) -> None:
    assert queue.hold(many).changed == tuple(many)
    assert queue.statuses(many) == dict.fromkeys(many, Status.HELD)
    assert queue.release(many[::-1]).changed == tuple(many[::-1])
    with pytest.raises(UnknownItems) as caught:
        queue.statuses([*many, many[-1] + 1])
    assert caught.value.ids == (many[-1] + 1,)
    with pytest.raises(UnknownItems):
        queue.delete([*many, many[-1] + 1])
    assert queue.count() == MANY  # nothing deleted


def test_plausibility_lists_over_more_ids_than_one_statement_takes(queue: QueueEngine, many: list[int]) -> None:
    assert queue.customers(many) == MANY
    assert queue.unchecked(many, limit=MANY) == many[::-1]
    queue.record_checks((i, i % 2 == 0, "") for i in many)
    assert queue.flagged(many) == [i for i in many[::-1] if i % 2]
    assert queue.delete(many).changed == tuple(many)
    assert queue.count() == 0


def test_a_run_is_handed_each_deferred_item_once(queue: QueueEngine, clock: HandClock) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    run_began = clock()
    clock.advance(1)
    assert queue.claim(since=run_began) is not None
    queue.record_deferred(item_id, "451 later", at(clock, 60))
    clock.advance(120)  # its backoff ends while the run still goes on
    assert queue.sendable_count(since=run_began) == 0 and queue.claim(since=run_began) is None
    assert queue.sendable_count([item_id], since=run_began) == 0 and queue.claim([item_id], since=run_began) is None
    next_run = clock()  # the next run tries it again
    assert queue.sendable_count(since=next_run) == 1 and queue.sendable_count([item_id], since=next_run) == 1
    claimed = queue.claim([item_id], since=next_run)
    assert claimed is not None and claimed.attempts == 2


def test_a_claimed_item_held_back_before_sending(queue: QueueEngine) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim() is not None
    queue.record_held(item_id, "the attachment does not name R-00001")
    item = queue.get(item_id)
    assert item.status is Status.HELD and item.attempts == 0
    assert item.error == "the attachment does not name R-00001"
    assert (item.history[-1].outcome, item.history[-1].reply) == ("held", "the attachment does not name R-00001")
    assert queue.claim() is None
    assert queue.release([item_id]).changed == (item_id,)


def test_message_ids_of_more_ids_than_one_statement_takes(queue: QueueEngine, many: list[int]) -> None:
    """What a bulk enqueue reports: each queued mail's Message-ID, read at once; unknown numbers are left out."""
    found = queue.message_ids([*many, many[-1] + 1])
    assert sorted(found) == many
    assert found[many[0]] == queue.get(many[0]).message_id
    assert len(set(found.values())) == len(many)
