"""What only the SQLite engine does beyond the queue contract (tests/test_queue_contract.py): how it opens the
file, how it brings an older file up to date, and how it knows a claimant on this host is gone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

from opos_tui.services.queue import QueueError, Rendered, SqliteQueue, Status
from opos_tui.services.queue.sqlite import MAX_PARAMETERS, MIGRATIONS, SCHEMA_VERSION, connect
from tests.test_queue_contract import new_item


def test_every_connection_is_durable_and_patient(tmp_path: Path) -> None:
    SqliteQueue(tmp_path / "queue.db").close()
    db = connect(tmp_path / "queue.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        db.execute(f"SELECT {', '.join(['?'] * (MAX_PARAMETERS + 1))}", [0] * (MAX_PARAMETERS + 1))
    db.close()


def a_file_of_version(path: Path, version: int) -> None:
    """A queue file as opos-tui of schema ``version`` left it."""
    db = connect(path)
    for step in MIGRATIONS[:version]:
        db.executescript(step)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


def test_a_file_of_an_earlier_schema_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    a_file_of_version(path, 1)
    with SqliteQueue(path) as queue:
        (item_id,) = queue.enqueue_many([new_item()])
        queue.record_checks([(item_id, True, "{}")])  # the table schema 2 added
        assert queue.check_detail(item_id) == "{}"
    assert connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_of_a_newer_opos_tui_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    a_file_of_version(path, SCHEMA_VERSION)
    connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(QueueError, match="newer opos-tui"):
        SqliteQueue(path)


# A sender on this host that dies (kill -9) with its mail on the wire.
CLAIM_AND_DIE = """
import os, signal, sys
from pathlib import Path
from typing import Any, NoReturn
from opos_tui.services.queue import SqliteQueue
queue = SqliteQueue(Path(sys.argv[1]))
item = queue.claim([int(sys.argv[2])])
print(item.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_dead_claimant_on_this_host_leaves_its_item_uncertain_at_once(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with SqliteQueue(path) as queue:
        item_id, other_id = queue.enqueue_many([new_item(1), new_item(2)])
        died = subprocess.run(
            [sys.executable, "-c", CLAIM_AND_DIE, str(path), str(item_id)], capture_output=True, text=True
        )
        assert died.returncode == -9 and died.stdout == f"{item_id}\n", died.stderr
        assert queue.claim([other_id]) is not None
        assert queue.recover_stale() == [item_id]  # without waiting for its lease; our own live claim stays
        item = queue.get(item_id)
        assert item.status is Status.UNCERTAIN
        assert "may have arrived" in (item.error or "")
        assert queue.claim() is None  # never resent by itself
        assert queue.mark_sent([item_id]).changed == (item_id,)
        assert queue.get(item_id).status is Status.SENT


class NoBlobs:
    """A connection that opens no blob (the authorizer does not see what is read through one)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def blobopen(self, table: str, column: str, *_: object, **__: object) -> NoReturn:
        raise sqlite3.DatabaseError(f"{table}.{column} is prohibited")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_listing_counting_and_claiming_never_read_message_or_attachment_bytes(tmp_path: Path) -> None:
    """The queue's own connection may not read rendered mails or attachment bytes (SQLite's authorizer, and no blob
    opened, as the authorizer does not see those): everything but the two methods that hand them out still works."""
    with SqliteQueue(tmp_path / "queue.db") as queue:
        ids = queue.enqueue_many(new_item(n, rendered=Rendered(b"From: x\r\n\r\nbody\r\n", 9)) for n in range(1, 4))
        bytes_columns = {("rendered", "data"), ("attachments", "data")}

        def no_bytes(action: int, table: str | None, column: str | None, *_: str | None) -> int:
            reads_bytes = action == sqlite3.SQLITE_READ and (table, column) in bytes_columns
            return sqlite3.SQLITE_DENY if reads_bytes else sqlite3.SQLITE_OK

        queue._db.set_authorizer(no_bytes)
        queue._db = NoBlobs(queue._db)  # type: ignore[assignment]
        assert [r.id for r in queue.page(search="mahnung")] == ids[::-1]
        assert queue.page()[0].attachments == ("Mahnung_3_Größe.pdf",)
        assert queue.count() == 3 and queue.counts()[Status.PENDING] == 3 and queue.version() > 0
        assert queue.sendable_count() == 3 and queue.sendable_count(ids) == 3
        claimed = queue.claim()
        assert claimed is not None and claimed.attachment_infos[0].size > 0
        queue.record_sent(claimed.id, "250 ok")
        assert queue.get(claimed.id).status is Status.SENT
        for reader in (queue.rendered, queue.attachments):  # the two methods that read them
            with pytest.raises(QueueError, match=r"(rendered|attachments)\.data is prohibited"):
                reader(claimed.id)
