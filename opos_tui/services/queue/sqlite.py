"""The SQLite engine: the whole queue in one file (``queue.db``) shared by every process of an installation.

How it keeps the promises of :mod:`.engine`:

- The file runs in WAL mode with ``synchronous=FULL``: a committed change survives a crash or power loss.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the file's write lock before it reads, so two
  operators and a cron job can claim from one queue at once and no item is claimed by two of them.
- A claim records the claiming host, process and lease. On this host a claim is alive while its process is
  (:func:`.liveness.pid_alive`); from another host, while its lease lasts.
- The schema is versioned (``PRAGMA user_version``); :data:`MIGRATIONS` bring a file of any earlier version
  up to date when it is opened, inside one write transaction.
- Statements never carry more than :data:`MAX_PARAMETERS` parameters, on every SQLite build; lists of item
  numbers go through :func:`select_in`, which splits them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from opos_tui.services.files import make_file, narrow
from opos_tui.services.queue.engine import LEASE_SECONDS, Clock, StatusFilter
from opos_tui.services.queue.headers import date_header, new_message_id
from opos_tui.services.queue.liveness import STALE_REASON, claim_gone
from opos_tui.services.queue.model import (
    DELETABLE,
    EDITABLE,
    ActionResult,
    Attachment,
    AttachmentInfo,
    Attempt,
    DuplicateImport,
    ItemRow,
    NewItem,
    QueueError,
    QueueGone,
    QueueItem,
    Recipient,
    Rendered,
    Status,
    UnknownItems,
)
from opos_tui.services.queue.operations import EngineOperations
from opos_tui.services.queue.rows import row_fields, timestamp
from opos_tui.services.queue.search import search_text, search_words

BUSY_TIMEOUT_MS = 15_000
MMAP_BYTES = 256 * 1024 * 1024
"""How much of the queue file SQLite reads through a memory map (``PRAGMA mmap_size``)."""
WAIT_STEP = 0.25
"""How often :meth:`SqliteQueue.wait_for_change` looks at the change counter, in seconds."""
MAX_PARAMETERS = 999
"""The most parameters one statement carries: the lowest limit of any SQLite build (older ones and some
distributions stop at 999), set on every connection so that a missed :func:`select_in` fails everywhere."""

MIGRATIONS: tuple[str, ...] = (
    # 1: items with their recipients, attachments and attempts; ``meta.changes`` counts every write.
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        status TEXT NOT NULL,
        type TEXT NOT NULL,
        level INTEGER,
        sender TEXT NOT NULL,
        reply_to TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        vars TEXT NOT NULL DEFAULT '{}',
        customer_name TEXT NOT NULL DEFAULT '',
        customer_number TEXT NOT NULL DEFAULT '',
        document_number TEXT NOT NULL DEFAULT '',
        search TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL UNIQUE,
        date TEXT,
        source_key TEXT UNIQUE,
        created_at REAL NOT NULL,
        first_attempt_at REAL,
        next_attempt_at REAL,
        sent_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        claim_host TEXT,
        claim_pid INTEGER,
        lease_until REAL
    );
    CREATE INDEX items_status ON items (status, id);
    CREATE TABLE recipients (
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        address TEXT NOT NULL,
        refused TEXT,
        PRIMARY KEY (item_id, position)
    );
    CREATE TABLE attachments (
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        filename TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (item_id, position)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        outcome TEXT NOT NULL,
        reply TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX attempts_item ON attempts (item_id, id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('changes', 0);
    """,
    # 2: the plausibility check's result per item (services.plausibility). Attachments and document numbers
    # never change after enqueue, so a result stays valid for the item's life.
    """
    CREATE TABLE plausibility (
        item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 3: each mail written once, as it goes on the wire (model.Rendered), in a table of its own so that
    # listing, counting and claiming never read it. Items queued before get theirs when first claimed.
    """
    CREATE TABLE rendered (
        item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    """,
)
"""The schema, one step per version: ``MIGRATIONS[n]`` turns a file of version ``n`` into version ``n + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)

# A deferred item counts as tried by a run that began at the parameter (``since``) if it was deferred after
# that: its last history entry is its deferral.
_DEFERRED_BEFORE = "coalesce((SELECT max(at) FROM attempts a WHERE a.item_id = items.id), 0) < ?"
# What a run may take among the items it was given: pending ones, and deferred ones at once (the operator
# named them) unless the deferral happened during this run.
_NAMED_SENDABLE = f"(status = 'pending' OR (status = 'deferred' AND {_DEFERRED_BEFORE}))"
# Not among the items a run has looked at to send next (a JSON array of their ids).
_NOT_EXCLUDED = "id NOT IN (SELECT value FROM json_each(?))"
# What a claim sets (parameters: host, process, lease end, Date header if it has none, first attempt if none).
_CLAIM = (
    "UPDATE items SET status = 'sending', claim_host = ?, claim_pid = ?, lease_until = ?,"
    " attempts = attempts + 1, date = coalesce(date, ?), first_attempt_at = coalesce(first_attempt_at, ?)"
)

# Ending a claim (``_finish``) in one statement, all or nothing by itself (no savepoint needed inside a batch of
# writes): an insert into this connection's temporary view ``finish``, whose trigger sets the item's status, adds
# the attempt to its history and marks the recipients the server refused (``refused``: a JSON object address ->
# reply, or NULL). Temporary: nothing of it is in the file, and each connection makes its own.
_FINISH = (
    "CREATE TEMP VIEW finish (item_id, status, error, sent_at, next_attempt_at, at, outcome, reply, refused)"
    " AS SELECT 0, '', NULL, NULL, NULL, 0, '', '', NULL WHERE 0",
    """CREATE TEMP TRIGGER finish_claim INSTEAD OF INSERT ON finish BEGIN
        UPDATE items SET status = NEW.status, error = NEW.error, sent_at = NEW.sent_at,
               next_attempt_at = NEW.next_attempt_at, claim_host = NULL, claim_pid = NULL, lease_until = NULL
         WHERE id = NEW.item_id AND status = 'sending';
        INSERT INTO attempts (item_id, at, outcome, reply) VALUES (NEW.item_id, NEW.at, NEW.outcome, NEW.reply);
        UPDATE recipients
           SET refused = (SELECT value FROM json_each(NEW.refused) WHERE lower(key) = lower(recipients.address))
         WHERE NEW.refused IS NOT NULL AND item_id = NEW.item_id
           AND lower(address) IN (SELECT lower(key) FROM json_each(NEW.refused));
    END""",
)

# The To list and attachment names of a row, in order, without loading the rows themselves (and without
# touching attachment bytes: ``data`` is the last column, stored apart from the names).
_PLAUSIBLE = "(SELECT ok FROM plausibility p WHERE p.item_id = items.id)"
_ROW_COLUMNS = f"""
    items.id, items.status, items.type, items.level, items.customer_name, items.customer_number,
    items.document_number, items.subject, items.attempts, items.error, items.message_id, items.created_at,
    items.sent_at, items.next_attempt_at,
    (SELECT json_group_array(json_array(name, address))
       FROM (SELECT name, address FROM recipients r
              WHERE r.item_id = items.id AND r.kind = 'to' ORDER BY r.position)) AS to_json,
    (SELECT json_group_array(filename)
       FROM (SELECT filename FROM attachments a WHERE a.item_id = items.id ORDER BY a.position)) AS att_json,
    {_PLAUSIBLE} AS plausible
"""

# A whole item in one row: its recipients, the attachments' names and its history as JSON (one statement, not
# four: a send run reads every mail it claims, in the claim's own statement). The times of the history as text of
# 17 digits, which gives back the very same float (JSON's numbers would keep 15).
_RECIPIENTS_JSON = """(SELECT json_group_array(json_array(kind, name, address, refused))
       FROM (SELECT kind, name, address, refused FROM recipients r
              WHERE r.item_id = items.id ORDER BY r.position))"""
_HISTORY_JSON = """(SELECT json_group_array(json_array(printf('%!.17g', at), outcome, reply))
       FROM (SELECT at, outcome, reply FROM attempts h WHERE h.item_id = items.id ORDER BY h.id))"""
_ITEM_COLUMNS = f"""{_ROW_COLUMNS},
    items.sender, items.reply_to, items.body, items.vars, items.date, items.first_attempt_at,
    {_RECIPIENTS_JSON} AS recipients_json,
    (SELECT json_group_array(json_array(position, filename, content_type, size))
       FROM (SELECT position, filename, content_type, size FROM attachments a
              WHERE a.item_id = items.id ORDER BY a.position)) AS infos_json,
    {_HISTORY_JSON} AS history_json
"""


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Which file a path names (device and inode), or None if it names none that can be seen."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def not_a_queue(path: Path, why: str) -> QueueError:
    return QueueError(
        f"{path} is not an opos-tui queue or is damaged ({why})",
        f"{path} ist keine opos-tui-Warteschlange oder beschädigt ({why})",
        why,
    )


def queue_error(path: Path, exc: sqlite3.Error) -> QueueError:
    """What an SQLite error on the queue file means for the person who ran the command."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code; not set on every error
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        waited = f"{BUSY_TIMEOUT_MS / 1000:g}"
        return QueueError(
            f"the queue {path} is locked by another process (waited {waited} s): try again later",
            f"die Warteschlange {path} ist von einem anderen Prozess gesperrt ({waited} s gewartet):"
            " später erneut versuchen",
            str(exc),
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return QueueError(
            f"the queue {path} cannot be opened for writing ({exc}): check the permissions of the file and its folder",
            f"die Warteschlange {path} ist nicht beschreibbar ({exc}): Rechte der Datei und ihres Ordners prüfen",
            str(exc),
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return not_a_queue(path, str(exc))
    if code == sqlite3.SQLITE_FULL:
        return QueueError(
            f"the queue {path} cannot grow: the disk is full",
            f"die Warteschlange {path} kann nicht wachsen: die Platte ist voll",
            str(exc),
        )
    return QueueError(
        f"the queue {path} cannot be used: {exc}", f"die Warteschlange {path} ist nicht nutzbar: {exc}", str(exc)
    )


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection to the queue file as the engine uses it: autocommit (transactions are explicit), usable
    from any thread (the engine serialises), durable (WAL, ``synchronous=FULL``), patient with other writers
    (``busy_timeout``), foreign keys on, at most :data:`MAX_PARAMETERS` parameters per statement.
    ``create=False``: only a file that is there, opened for reading and writing."""
    db = sqlite3.connect(
        path if create else f"{path.absolute().as_uri()}?mode=rw",
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        uri=not create,
    )
    try:
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMETERS)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        # The first 256 MiB of the file are read through a memory map: a mail written when it was queued (140 KB
        # with a 100 KB PDF) is then read at its claim without 35 page reads from the operating system.
        db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    except BaseException:
        db.close()
        raise
    return db


def select_in(
    db: sqlite3.Connection,
    sql: str,
    ids: Iterable[int],
    *params: object,
    first: int | None = None,
    before: Sequence[object] = (),
) -> Generator[sqlite3.Row, None, None]:
    """The rows of ``sql`` for any number of ``ids``: ``sql`` holds ``IN ({ids})``, which is filled with one
    chunk of ids at a time (in the order given), preceded by the parameters ``before`` and followed by
    ``params``. Lazy: stop early and the remaining chunks are never queried. ``first``: the first chunk holds
    only so many ids, and each next one four times as many (up to the most a statement takes), for a query that
    mostly stops at its first rows."""
    wanted = list(ids)
    most = MAX_PARAMETERS - len(params) - len(before)
    size = min(first or most, most)
    start = 0
    while start < len(wanted):
        chunk = wanted[start : start + size]
        cursor = db.execute(sql.format(ids=", ".join(["?"] * len(chunk))), [*before, *chunk, *params])
        cursor.row_factory = sqlite3.Row
        yield from cursor
        start += size
        size = min(size * 4, most)


def _where(statuses: StatusFilter, search: str) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if isinstance(statuses, Status):
        statuses = [statuses]
    if statuses is not None:
        wanted = [Status(s).value for s in statuses]
        clauses.append(f"items.status IN ({', '.join('?' for _ in wanted)})")
        params += wanted
    for word in search_words(search):
        clauses.append("instr(items.search, ?) > 0")
        params.append(word)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _row(r: sqlite3.Row) -> ItemRow:
    return ItemRow(**_row_fields(r))


def _row_fields(r: sqlite3.Row) -> dict[str, Any]:
    """The fields of an :class:`ItemRow` from a row of :data:`_ROW_COLUMNS`."""
    return row_fields(
        r, to=json.loads(r["to_json"]), attachments=json.loads(r["att_json"]), plausible=_verdict(r["plausible"])
    )


def _item(r: sqlite3.Row) -> QueueItem:
    """The item of a row of :data:`_ITEM_COLUMNS`."""
    return QueueItem(
        **_row_fields(r),
        sender=r["sender"],
        reply_to=r["reply_to"],
        recipients=_recipients(r["recipients_json"]),
        body=r["body"],
        vars=json.loads(r["vars"]),
        attachment_infos=tuple(AttachmentInfo(*info) for info in json.loads(r["infos_json"])),
        history=_history(r["history_json"]),
        date=r["date"],
        first_attempt_at=timestamp(r["first_attempt_at"]),
    )


def _recipients(found: str) -> tuple[Recipient, ...]:
    """The recipients of an item, from the JSON of :data:`_RECIPIENTS_JSON`."""
    return tuple(
        Recipient(kind=kind, address=address, name=name, refused=refused)
        for kind, name, address, refused in json.loads(found)
    )


def _verdict(ok: int | None) -> bool | None:
    """An item's plausibility, from :data:`_PLAUSIBLE`: None while it was never checked."""
    return None if ok is None else bool(ok)


def _history(found: str) -> tuple[Attempt, ...]:
    """The history of an item, from the JSON of :data:`_HISTORY_JSON`."""
    return tuple(
        Attempt(datetime.fromtimestamp(float(at), UTC), outcome, reply) for at, outcome, reply in json.loads(found)
    )


def _statuses(db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Status]:
    found = {int(r[0]): Status(r[1]) for r in select_in(db, "SELECT id, status FROM items WHERE id IN ({ids})", ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise UnknownItems(missing)
    return found


def _insert_recipients(db: sqlite3.Connection, item_id: int, recipients: Iterable[Recipient]) -> None:
    db.executemany(
        "INSERT INTO recipients (item_id, position, kind, name, address) VALUES (?, ?, ?, ?, ?)",
        [(item_id, pos, r.kind, r.name, r.address) for pos, r in enumerate(recipients)],
    )


def _store_rendered(db: sqlite3.Connection, item_id: int, rendered: Rendered) -> None:
    db.execute(
        "INSERT OR REPLACE INTO rendered (item_id, at, data) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM items"
        " WHERE id = ?)",
        (item_id, rendered.at, rendered.data, item_id),
    )


def _rendered_data(db: sqlite3.Connection, item_id: int) -> bytes:
    """An item's rendered mail (there is one), read through the blob API: a ``SELECT`` of it took several times as
    long with the queue's 4 KB pages (140 KB with a 100 KB PDF: 120 µs against 16 µs)."""
    with db.blobopen("rendered", "data", item_id, readonly=True) as blob:
        return blob.read()


def _note(db: sqlite3.Connection, item_id: int, at: float, outcome: str, reply: str = "") -> None:
    """One line of an item's history."""
    db.execute("INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, ?, ?)", (item_id, at, outcome, reply))


class _SqliteErrors:
    """A block whose SQLite errors become a :class:`QueueError` about the queue at ``path``. A class, not a
    generator: a send run enters one several times per mail."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(error, sqlite3.Error):
            raise queue_error(self.path, error) from None


class SqliteQueue(EngineOperations):
    """The send queue in one SQLite file (a :class:`~.engine.QueueEngine`). Thread-safe; one instance per
    process is enough, plus one per worker thread that must not wait for the others (:meth:`another`).
    Each method does what :class:`~.engine.QueueEngine` says it does; the comments here say only how.

    Open an installation's queue with :func:`~opos_tui.services.queue.open_queue`. ``create=False`` opens
    only a queue that is there: never a new one, and never a file that is not an SQLite database (SQLite
    might write into it). ``clock`` is where every recorded time comes from; ``message_id`` makes the
    Message-ID of a new item from its sender; ``host`` names this host in claims (the host name unless given).
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        clock: Clock = time.time,
        message_id: Callable[[str], str] = new_message_id,
        host: str | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.local = True
        self.message_id = message_id
        self.host = socket.gethostname() if host is None else host
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._together = False
        self._create = create
        self._errors = _SqliteErrors(path)
        try:
            if create:
                # Made with the installation's mode before SQLite opens it: SQLite gives its -wal and -shm the
                # mode of the database file. Those an earlier version made world-readable are narrowed.
                make_file(path)
            else:
                with path.open("rb") as file:
                    is_sqlite = file.read(16) == b"SQLite format 3\x00"
                if not is_sqlite:
                    raise not_a_queue(path, "not an SQLite database")
            for companion in ("-wal", "-shm"):
                narrow(path.with_name(path.name + companion))
        except OSError as exc:
            raise QueueError(
                f"cannot open the queue {path}: {exc.strerror}",
                f"Warteschlange {path} nicht zu öffnen: {exc.strerror}",
                str(exc),
            ) from None
        with self._sqlite_errors():
            self._db = connect(path, create=create)
            try:
                self._migrate()
                self._db.execute("PRAGMA temp_store = MEMORY")  # the temporary view and trigger are never a file
                for statement in _FINISH:
                    self._db.execute(statement)
            except BaseException:
                self._db.close()
                raise
        self._identity = _file_identity(path)

    # --- plumbing -------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not self._create:
            raise not_a_queue(self.path, "no queue in it")
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"the queue {self.path} was made by a newer opos-tui (schema {version})",
                f"die Warteschlange {self.path} stammt von einem neueren opos-tui (Schema {version})",
            )
        with self._write() as db:
            # Read again inside the lock: another process may have migrated it meanwhile.
            found = db.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[found:]:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _sqlite_errors(self) -> _SqliteErrors:
        """The one place where SQLite's errors become a :class:`QueueError` that says what to do."""
        return self._errors

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        # One transaction around the block; each write inside is a savepoint of it (see _write).
        with self._write():
            self._together = True
            try:
                yield
            finally:
                self._together = False

    @contextlib.contextmanager
    def _write(self, *, one_statement: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so readers-turned-writers never deadlock; inside
        :meth:`together`, a savepoint of its transaction (all or nothing on its own, committed with the rest).
        ``one_statement``: the block changes the queue with one statement at most (a claim), which is all or
        nothing by itself: inside :meth:`together` it needs no savepoint."""
        with self._lock, self._sqlite_errors():
            db = self._db
            if self._together and one_statement:
                yield db
                return
            if self._together:
                db.execute("SAVEPOINT one_write")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK TO one_write")
                    raise
                finally:
                    db.execute("RELEASE one_write")
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock, self._sqlite_errors():
            cursor = self._db.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def _read_in(self, sql: str, ids: Iterable[int], *params: object) -> list[sqlite3.Row]:
        with self._lock, self._sqlite_errors():
            return list(select_in(self._db, sql, ids, *params))

    def check_file(self) -> None:
        """:class:`QueueGone` if the path no longer names the file this queue has open (it was deleted, or
        another file was put in its place)."""
        found = _file_identity(self.path)
        if found != self._identity or found is None:
            raise QueueGone(self.path, replaced=found is not None)

    def another(self) -> SqliteQueue:
        self.check_file()
        other = SqliteQueue(self.path, create=False, clock=self.clock, message_id=self.message_id, host=self.host)
        if other._identity != self._identity:
            other.close()
            raise QueueGone(self.path, replaced=True)
        return other

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- adding ---------------------------------------------------------------------------------------

    def enqueue_many(self, items: Iterable[NewItem]) -> list[int]:
        ids: list[int] = []
        now = self.clock()
        with self._write() as db:
            for item in items:
                if item.source_key is not None:
                    found = db.execute("SELECT id FROM items WHERE source_key = ?", (item.source_key,)).fetchone()
                    if found:
                        raise DuplicateImport(found[0])
                cursor = db.execute(
                    """INSERT INTO items (status, type, level, sender, reply_to, subject, body, vars, customer_name,
                           customer_number, document_number, search, message_id, source_key, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        Status.PENDING.value,
                        item.type.value,
                        item.level,
                        item.sender,
                        item.reply_to,
                        item.subject,
                        item.body,
                        json.dumps(item.vars, ensure_ascii=False),
                        item.vars.get("customer_name", ""),
                        item.vars.get("customer_number", ""),
                        item.vars.get("document_number", ""),
                        search_text(item.subject, item.recipients, item.vars),
                        self.message_id(item.sender),
                        item.source_key,
                        now,
                    ),
                )
                item_id = int(cursor.lastrowid or 0)
                _insert_recipients(db, item_id, item.recipients)
                db.executemany(
                    "INSERT INTO attachments (item_id, position, filename, content_type, size, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (item_id, pos, a.filename, a.content_type, len(a.data), a.data)
                        for pos, a in enumerate(item.attachments)
                    ],
                )
                if item.rendered is not None:
                    _store_rendered(db, item_id, item.rendered)
                ids.append(item_id)
        return ids

    # --- reading --------------------------------------------------------------------------------------

    def version(self) -> int:
        self.check_file()
        return int(self._read("SELECT value FROM meta WHERE key = 'changes'")[0][0])

    def wait_for_change(self, seen: int, timeout: float) -> bool:
        # SQLite cannot wake anyone: look at the change counter every WAIT_STEP seconds.
        deadline = time.monotonic() + timeout
        while self.version() == seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(WAIT_STEP, left))
        return True

    def page(self, status: StatusFilter = None, search: str = "", offset: int = 0, limit: int = 100) -> list[ItemRow]:
        where, params = _where(status, search)
        rows = self._read(
            f"SELECT {_ROW_COLUMNS} FROM items{where} ORDER BY items.id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_row(r) for r in rows]

    def count(self, status: StatusFilter = None, search: str = "") -> int:
        where, params = _where(status, search)
        return int(self._read(f"SELECT count(*) FROM items{where}", params)[0][0])

    def counts(self) -> dict[Status, int]:
        found = {r[0]: r[1] for r in self._read("SELECT status, count(*) FROM items GROUP BY status")}
        return {s: int(found.get(s.value, 0)) for s in Status}

    def customers(self, ids: Sequence[int]) -> int:
        sql = """
            SELECT DISTINCT CASE
                WHEN customer_number != '' THEN 'number:' || customer_number
                WHEN customer_name != '' THEN 'name:' || customer_name
                ELSE 'to:' || coalesce((SELECT lower(address) FROM recipients r
                                         WHERE r.item_id = items.id AND r.kind = 'to'
                                         ORDER BY r.position LIMIT 1), '')
            END FROM items WHERE id IN ({ids})"""
        return len({str(r[0]) for r in self._read_in(sql, ids)})

    def ids(self, status: StatusFilter = None, search: str = "") -> list[int]:
        where, params = _where(status, search)
        return [int(r[0]) for r in self._read(f"SELECT id FROM items{where} ORDER BY id DESC", params)]

    def position(self, item_id: int, status: StatusFilter = None, search: str = "") -> int:
        where, params = _where(status, search)
        sql = f"SELECT count(*) FROM items{where}{' AND' if where else ' WHERE'} items.id > ?"
        return int(self._read(sql, [*params, item_id])[0][0])

    def statuses(self, ids: Sequence[int]) -> dict[int, Status]:
        with self._lock, self._sqlite_errors():
            return _statuses(self._db, ids)

    def message_ids(self, ids: Sequence[int]) -> dict[int, str]:
        rows = self._read_in("SELECT id, message_id FROM items WHERE id IN ({ids})", ids)
        return {int(r["id"]): str(r["message_id"]) for r in rows}

    def get(self, item_id: int) -> QueueItem:
        rows = self._read(f"SELECT {_ITEM_COLUMNS} FROM items WHERE items.id = ?", (item_id,))
        if not rows:
            raise UnknownItems([item_id])
        return _item(rows[0])

    def attachments(self, item_id: int) -> list[Attachment]:
        return [
            Attachment(x["position"], x["filename"], x["content_type"], x["size"], bytes(x["data"]))
            for x in self._read(
                "SELECT position, filename, content_type, size, data FROM attachments WHERE item_id = ?"
                " ORDER BY position",
                (item_id,),
            )
        ]

    def rendered(self, item_id: int) -> Rendered | None:
        with self._lock, self._sqlite_errors():
            found = self._db.execute("SELECT at FROM rendered WHERE item_id = ?", (item_id,)).fetchone()
            return None if found is None else Rendered(_rendered_data(self._db, item_id), found[0])

    def store_rendered(self, item_id: int, rendered: Rendered) -> None:
        with self._write() as db:
            _store_rendered(db, item_id, rendered)

    def sendable_count(self, ids: Sequence[int] | None = None, since: float | None = None) -> int:
        now = self.clock()
        since = now if since is None else since
        if ids is None:
            sql = (
                "SELECT count(*) FROM items WHERE status = 'pending'"
                f" OR (status = 'deferred' AND next_attempt_at <= ? AND {_DEFERRED_BEFORE})"
            )
            return int(self._read(sql, (now, since))[0][0])
        sql = f"SELECT count(*) FROM items WHERE id IN ({{ids}}) AND {_NAMED_SENDABLE}"
        return sum(int(r[0]) for r in self._read_in(sql, dict.fromkeys(ids), since))

    # --- plausibility results -------------------------------------------------------------------------

    def unchecked(self, ids: Sequence[int] | None = None, limit: int = 100) -> list[int]:
        base = "SELECT id FROM items WHERE status != 'sent' AND id NOT IN (SELECT item_id FROM plausibility)"
        if ids is None:
            return [int(r[0]) for r in self._read(f"{base} ORDER BY id DESC LIMIT ?", (limit,))]
        found = [int(r[0]) for r in self._read_in(f"{base} AND id IN ({{ids}})", ids)]
        return sorted(found, reverse=True)[:limit]

    def record_checks(self, results: Iterable[tuple[int, bool, str]]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO plausibility (item_id, ok, detail)"
                " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM items WHERE id = ?)",
                [(item_id, int(ok), detail, item_id) for item_id, ok, detail in results],
            )

    def check_detail(self, item_id: int) -> str | None:
        rows = self._read("SELECT detail FROM plausibility WHERE item_id = ?", (item_id,))
        return str(rows[0][0]) if rows else None

    def flagged(self, ids: Sequence[int]) -> list[int]:
        sql = "SELECT item_id FROM plausibility WHERE ok = 0 AND item_id IN ({ids})"
        return sorted((int(r[0]) for r in self._read_in(sql, ids)), reverse=True)

    # --- operator actions -----------------------------------------------------------------------------

    def _act(
        self, ids: Iterable[int], allowed: frozenset[Status], change: Callable[[sqlite3.Connection, int, float], None]
    ) -> ActionResult:
        """Apply ``change`` to those of ``ids`` whose status is ``allowed``, in one transaction."""
        wanted = list(dict.fromkeys(ids))
        with self._write() as db:
            found = _statuses(db, wanted)
            changed = [i for i in wanted if found[i] in allowed]
            now = self.clock()
            for item_id in changed:
                change(db, item_id, now)
        return ActionResult(tuple(changed), {i: found[i] for i in wanted if i not in changed})

    def _transition(
        self, ids: Iterable[int], allowed: frozenset[Status], target: Status, note: str, clear_backoff: bool = False
    ) -> ActionResult:
        extra = ", next_attempt_at = NULL" if clear_backoff else ""

        def change(db: sqlite3.Connection, item_id: int, now: float) -> None:
            db.execute(f"UPDATE items SET status = ?{extra} WHERE id = ?", (target.value, item_id))
            _note(db, item_id, now, note)

        return self._act(ids, allowed, change)

    def mark_sent(self, ids: Iterable[int]) -> ActionResult:
        def change(db: sqlite3.Connection, item_id: int, now: float) -> None:
            db.execute("UPDATE items SET status = 'sent', sent_at = ?, error = NULL WHERE id = ?", (now, item_id))
            _note(db, item_id, now, "marked-sent")

        return self._act(ids, frozenset({Status.UNCERTAIN}), change)

    def delete(self, ids: Iterable[int]) -> ActionResult:
        def change(db: sqlite3.Connection, item_id: int, now: float) -> None:
            db.execute("DELETE FROM items WHERE id = ?", (item_id,))

        return self._act(ids, DELETABLE, change)

    def set_recipients(self, item_id: int, recipients: Sequence[Recipient]) -> None:
        with self._write() as db:
            status = _statuses(db, [item_id])[item_id]
            if status not in EDITABLE:
                raise QueueError(
                    f"#{item_id} is {status}: its recipients can no longer change",
                    f"#{item_id} ist {status}: die Empfänger sind nicht mehr änderbar",
                )
            db.execute("DELETE FROM recipients WHERE item_id = ?", (item_id,))
            db.execute("DELETE FROM rendered WHERE item_id = ?", (item_id,))
            _insert_recipients(db, item_id, recipients)
            subject, raw_vars = db.execute("SELECT subject, vars FROM items WHERE id = ?", (item_id,)).fetchone()
            db.execute(
                "UPDATE items SET search = ? WHERE id = ?",
                (search_text(subject, recipients, json.loads(raw_vars)), item_id),
            )

    # --- sending --------------------------------------------------------------------------------------

    def claim(
        self,
        ids: Sequence[int] | None = None,
        lease: float = LEASE_SECONDS,
        since: float | None = None,
        exclude: Collection[int] = (),
    ) -> QueueItem | None:
        now = self.clock()
        # The oldest sendable item is found, claimed and read in one statement.
        update = f"{_CLAIM} WHERE id = ({{oldest}}) RETURNING {_ITEM_COLUMNS}"
        claim = (self.host, self.pid, now + lease, date_header(now), now)
        with self._write(one_statement=True) as db:
            found = self._oldest(db, update, claim, now, ids, since, exclude)
        return None if found is None else _item(found)

    def peek(
        self, ids: Sequence[int] | None = None, since: float | None = None, exclude: Collection[int] = ()
    ) -> tuple[QueueItem, Rendered | None] | None:
        # The item, and whether it has its mail written, in one statement; the mail itself read as a blob.
        select = (
            f"SELECT {_ITEM_COLUMNS}, rendered.at AS rendered_at"
            " FROM items LEFT JOIN rendered ON rendered.item_id = items.id WHERE items.id = ({oldest})"
        )
        with self._lock, self._sqlite_errors():
            found = self._oldest(self._db, select, (), self.clock(), ids, since, exclude)
            if found is None:
                return None
            at = found["rendered_at"]
            return _item(found), None if at is None else Rendered(_rendered_data(self._db, found["id"]), at)

    def _oldest(
        self,
        db: sqlite3.Connection,
        sql: str,
        before: Sequence[object],
        now: float,
        ids: Sequence[int] | None,
        since: float | None,
        exclude: Collection[int],
    ) -> sqlite3.Row | None:
        """The first row of ``sql`` (parameters ``before`` first), whose ``{oldest}`` is filled with the query of
        the oldest item :meth:`claim` may take at ``now``."""
        since = now if since is None else since
        excluded = json.dumps(sorted(exclude))
        if ids is None:
            # Two index lookups: one OR query would sort every pending item to find the oldest.
            oldest = (
                f"SELECT min(id) FROM (SELECT min(id) AS id FROM items WHERE status = 'pending' AND {_NOT_EXCLUDED}"
                " UNION ALL SELECT min(id) FROM items WHERE status = 'deferred' AND next_attempt_at <= ?"
                f" AND {_DEFERRED_BEFORE} AND {_NOT_EXCLUDED})"
            )
            cursor = db.execute(sql.format(oldest=oldest), (*before, excluded, now, since, excluded))
            cursor.row_factory = sqlite3.Row
            row: sqlite3.Row | None = cursor.fetchone()
            return row
        # Chunks in ascending order: the first one holding a sendable item holds the oldest. A run hands in the
        # items it has not yet passed over, so that one is mostly among the first few.
        oldest = (
            f"SELECT id FROM items WHERE id IN ({{ids}}) AND {_NAMED_SENDABLE} AND {_NOT_EXCLUDED} ORDER BY id LIMIT 1"
        )
        chunks = select_in(db, sql.format(oldest=oldest), sorted(set(ids)), since, excluded, first=16, before=before)
        try:
            return next(chunks, None)
        finally:
            chunks.close()  # the chunks after the one that found it are never run

    def claim_peeked(self, item: QueueItem, date: str, lease: float = LEASE_SECONDS) -> QueueItem | None:
        # Unchanged: no claim since (``attempts``), and the same recipients, the only thing an operator may
        # change, which drops the rendered mail (written anew only at a claim, which counts an attempt). Checked by
        # the claim's one statement: the mail is then ``item``'s, and the claim reads back only what it sets and
        # what a hold, a release, a retry or a check may have changed since (not the whole item again). The
        # recipients as peeked are written by SQLite's own JSON functions, as the queue's are (_RECIPIENTS_JSON),
        # to be compared with them: the same text if and only if they are the same.
        now = self.clock()
        peeked = json.dumps([[r.kind, r.name, r.address, r.refused] for r in item.recipients])
        with self._write(one_statement=True) as db:
            found = db.execute(
                f"{_CLAIM} WHERE id = ? AND status IN ('pending', 'deferred') AND attempts = ?"
                " AND EXISTS (SELECT 1 FROM rendered r WHERE r.item_id = items.id)"
                f" AND {_RECIPIENTS_JSON} = (SELECT json_group_array(json_array(value ->> 0, value ->> 1,"
                " value ->> 2, value ->> 3)) FROM json_each(?))"
                f" RETURNING attempts, date, first_attempt_at, error, next_attempt_at, {_PLAUSIBLE}, {_HISTORY_JSON}",
                (self.host, self.pid, now + lease, date, now, item.id, item.attempts, peeked),
            ).fetchone()
        if found is None:
            return None
        attempts, sent_date, first, error, retry, plausible, history = found
        return replace(
            item,
            status=Status.SENDING,
            attempts=attempts,
            date=sent_date,
            first_attempt_at=timestamp(first),
            error=error,
            next_attempt_at=timestamp(retry),
            plausible=_verdict(plausible),
            history=_history(history),
        )

    def _finish(
        self,
        item_id: int,
        status: Status,
        outcome: str,
        reply: str,
        *,
        error: str | None,
        sent: bool = False,
        next_attempt_at: float | None = None,
        refused: dict[str, str] | None = None,
    ) -> None:
        now = self.clock()
        with self._write(one_statement=True) as db:
            db.execute(
                "INSERT INTO temp.finish VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item_id,
                    status.value,
                    error,
                    now if sent else None,
                    next_attempt_at,
                    now,
                    outcome,
                    reply,
                    json.dumps(refused) if refused else None,
                ),
            )

    def _unclaim(self, item_id: int, status: Status, outcome: str, reason: str, *, error: str | None) -> None:
        now = self.clock()
        with self._write() as db:
            db.execute(
                """UPDATE items SET status = ?, attempts = max(attempts - 1, 0), error = coalesce(?, error),
                       claim_host = NULL, claim_pid = NULL, lease_until = NULL
                   WHERE id = ? AND status = 'sending'""",
                (status.value, error, item_id),
            )
            _note(db, item_id, now, outcome, reason)

    def quick_check(self) -> list[str]:
        try:
            return [str(r[0]) for r in self._read("PRAGMA quick_check")]
        except QueueError as exc:  # too broken to be checked at all
            return [exc.detail or exc.en]

    def recover_stale(self) -> list[int]:
        now = self.clock()
        stale: list[tuple[int, str, int]] = []
        rows = self._read("SELECT id, claim_host, claim_pid, lease_until FROM items WHERE status = 'sending'")
        for r in rows:
            claim = (r["claim_host"], r["claim_pid"], r["lease_until"])
            if claim_gone(claim, host=self.host, pid=self.pid, now=now):
                stale.append((int(r["id"]), r["claim_host"], r["claim_pid"]))
        if not stale:
            return []
        recovered: list[int] = []
        with self._write() as db:
            for item_id, host, pid in stale:
                # Only the claim seen above: the item may have been finished and claimed again meanwhile.
                cursor = db.execute(
                    """UPDATE items SET status = 'uncertain', error = ?, claim_host = NULL, claim_pid = NULL,
                           lease_until = NULL
                       WHERE id = ? AND status = 'sending' AND claim_host = ? AND claim_pid = ?""",
                    (STALE_REASON, item_id, host, pid),
                )
                if cursor.rowcount:
                    recovered.append(item_id)
                    _note(db, item_id, now, "uncertain", STALE_REASON)
        return recovered
