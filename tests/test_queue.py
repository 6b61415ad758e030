"""The queue file itself: what goes in comes out byte for byte, listing at scale, claims, stale claims."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opos_tui.services.queue import (
    DuplicateImport,
    LetterType,
    NewAttachment,
    NewItem,
    Queue,
    Recipient,
    Status,
    UnknownItems,
)


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


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    q = Queue(tmp_path / "queue.db")
    yield q  # type: ignore[misc]
    q.close()


def test_what_goes_in_comes_out(queue: Queue) -> None:
    item = queue.enqueue(new_item())
    assert item.status is Status.PENDING
    assert item.message_id.startswith("<") and item.message_id.endswith("@mueller.example>")
    assert item.to == ("Jörg Ärger 1 <kunde1@example.com>",)
    assert item.envelope_recipients == ("kunde1@example.com", "cc@example.com", "archiv@mueller.example")
    assert item.vars["customer_name"] == "Ärger & Söhne 1"
    assert item.date is None
    (att,) = queue.attachments(item.id)
    assert att.filename == "Mahnung_1_Größe.pdf"
    assert att.data == new_item().attachments[0].data
    assert queue.get(item.id).attachment_infos[0].size == len(att.data)


def test_pragmas_make_it_durable(queue: Queue, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "queue.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert queue._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_paging_search_counts_and_the_change_probe(queue: Queue, tmp_path: Path) -> None:
    ids = queue.enqueue_many(new_item(n) for n in range(1, 251))
    other = Queue(tmp_path / "queue.db")  # another process's view
    before = other.version()
    queue.hold(ids[:10])
    assert other.version() != before
    assert other.counts()[Status.HELD] == 10
    assert other.counts()[Status.PENDING] == 240
    first = other.page(limit=100)
    assert [r.id for r in first] == ids[::-1][:100]  # newest first
    assert [r.id for r in other.page(offset=100, limit=100)] == ids[::-1][100:200]
    assert other.count(Status.HELD) == 10
    assert {r.id for r in other.page(Status.HELD)} == set(ids[:10])
    # search: recipient, customer name, customer number, document number, subject; case-insensitive
    assert [r.id for r in other.page(search="kunde17@")] == [ids[16]]
    assert [r.id for r in other.page(search="ärger & SÖHNE 142")] == [ids[141]]
    assert [r.id for r in other.page(search="k1099")] == [ids[98]]
    assert [r.id for r in other.page(search="r-00123")] == [ids[122]]
    assert other.count(search="mahnung") == 250
    assert other.count(Status.HELD, search="R-0000") == 9
    row = other.page(search="R-00005")[0]
    assert row.attachments == ("Mahnung_5_Größe.pdf",)
    assert row.customer_number == "K1005"
    other.close()


def test_operator_actions_and_their_limits(queue: Queue) -> None:
    a, b, c = queue.enqueue_many(new_item(n) for n in (1, 2, 3))
    assert queue.hold([a, b]).changed == (a, b)
    result = queue.release([b, c])
    assert result.changed == (b,) and result.skipped == {c: Status.PENDING}
    with pytest.raises(UnknownItems):
        queue.hold([c, 999])
    assert queue.get(c).status is Status.PENDING  # nothing changed
    claimed = queue.claim([c])
    assert claimed is not None and claimed.status is Status.SENDING
    assert queue.delete([a, c]).skipped == {c: Status.SENDING}
    queue.record_sent(c, "250 ok")
    assert queue.delete([c]).skipped == {c: Status.SENT}
    with pytest.raises(UnknownItems):
        queue.get(a)  # deleted, with attachments
    assert queue.attachments(a) == []


def test_deferred_backoff_retry_and_history(queue: Queue) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    claimed = queue.claim()
    assert claimed is not None and claimed.date is not None
    date = claimed.date
    queue.record_deferred(item_id, "451 4.3.0 try again later", datetime.now(UTC) + timedelta(minutes=5))
    assert queue.claim() is None  # backoff not over
    item = queue.get(item_id)
    assert item.status is Status.DEFERRED and item.error == "451 4.3.0 try again later"
    assert queue.retry().changed == (item_id,)
    again = queue.claim()
    assert again is not None and again.date == date and again.message_id == claimed.message_id
    queue.record_sent(item_id, "250 2.0.0 queued", refused={"cc@example.com": "550 5.1.1 no such user"})
    done = queue.get(item_id)
    assert done.status is Status.SENT and done.sent_at is not None and done.error is None
    assert done.attempts == 2
    assert [a.outcome for a in done.history] == ["deferred", "retry", "sent"]
    assert done.history[0].reply == "451 4.3.0 try again later"
    assert {r.address: r.refused for r in done.recipients}["cc@example.com"] == "550 5.1.1 no such user"


def test_duplicate_source_is_refused(queue: Queue) -> None:
    first = queue.enqueue(new_item(source_key="abc"))
    with pytest.raises(DuplicateImport) as caught:
        queue.enqueue(new_item(source_key="abc"))
    assert caught.value.item_id == first.id
    assert queue.count() == 1


def test_two_claimants_never_take_the_same_item(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with Queue(path) as q:
        q.enqueue_many(new_item(n) for n in range(200))
    taken: list[list[int]] = [[], [], [], []]

    def worker(slot: int) -> None:
        with Queue(path) as mine:
            while (item := mine.claim()) is not None:
                taken[slot].append(item.id)
                mine.record_sent(item.id, "250 ok")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in taken for i in ids]
    assert len(everything) == 200 == len(set(everything))


def test_a_dead_claimant_leaves_its_item_uncertain(queue: Queue) -> None:
    (item_id, other_id) = queue.enqueue_many([new_item(1), new_item(2)])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    assert queue.claim([item_id]) is not None
    assert queue.claim([other_id]) is not None
    queue._db.execute("UPDATE items SET claim_pid = ? WHERE id = ?", (dead_pid, item_id))
    assert queue.recover_stale() == [item_id]  # our own live claim stays
    item = queue.get(item_id)
    assert item.status is Status.UNCERTAIN
    assert "may have arrived" in (item.error or "")
    assert queue.claim() is None  # never resent by itself
    assert queue.mark_sent([item_id]).changed == (item_id,)
    assert queue.get(item_id).status is Status.SENT


def test_claims_from_another_host_expire_by_lease(queue: Queue) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim(lease=60) is not None
    queue._db.execute("UPDATE items SET claim_host = 'terminal-server-2' WHERE id = ?", (item_id,))
    assert queue.recover_stale() == []
    queue._db.execute("UPDATE items SET lease_until = 0 WHERE id = ?", (item_id,))
    assert queue.recover_stale() == [item_id]


def test_unclaim_gives_the_item_back_uncounted(queue: Queue) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    assert queue.claim() is not None
    queue.unclaim(item_id, "run stopped: authentication failed")
    item = queue.get(item_id)
    assert item.status is Status.PENDING and item.attempts == 0


def test_recipients_can_be_corrected_before_sending(queue: Queue) -> None:
    (item_id,) = queue.enqueue_many([new_item()])
    queue.set_recipients(item_id, [Recipient("to", "richtig@example.com", "Richtige Kundin")])
    assert queue.get(item_id).to == ("Richtige Kundin <richtig@example.com>",)
    assert [r.id for r in queue.page(search="richtige")] == [item_id]
    assert queue.page(search="kunde1@") == []
