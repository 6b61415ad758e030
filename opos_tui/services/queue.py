"""The durable send queue: every mail from enqueue to sent, in one SQLite file shared by all processes.

Nothing is lost and nothing is sent twice:

- The file runs in WAL mode with ``synchronous=FULL``: a committed change survives a crash or power loss.
- Work is claimed inside ``BEGIN IMMEDIATE`` transactions, so two operators and a cron job can send from one
  queue at once and no item is claimed by two of them.
- An item is ``sending`` (committed) before its data goes out, and ``sent`` right after the server's 250.
  An item found ``sending`` whose claimant is gone (its process died on this host, or its lease ran out on
  another host) becomes ``uncertain``: it may have arrived, so it is never resent by itself.
- Attachments are copied into the queue at enqueue time: what the operator reviews is what goes out, and the
  accounting system may delete its files.

All SQL and the claim logic live in this module behind :class:`Queue`; a PostgreSQL engine for farms of
terminal servers can implement the same interface later (stale claims are found by lease for that reason).

The listing API is made for a screen over 100,000 items: pages (:meth:`Queue.page`), counts per status
(:meth:`Queue.counts`), filtering and incremental text search done in SQL, and a cheap probe
(:meth:`Queue.version`) that changes whenever any process changed the queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.utils import formatdate
from enum import StrEnum
from pathlib import Path
from typing import Literal

from opos_tui.services.addresses import new_message_id
from opos_tui.services.errors import BadInput, OposError
from opos_tui.services.files import make_file, narrow
from opos_tui.services.home import Home

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 15_000
LEASE_SECONDS = 15 * 60
"""How long a claim on another host counts as alive. Longer than any single SMTP transaction can take."""


class Status(StrEnum):
    PENDING = "pending"
    """Waiting to be sent."""
    HELD = "held"
    """Kept back by an operator; not sent until released."""
    SENDING = "sending"
    """Claimed by a sender; its data may be on the wire right now."""
    SENT = "sent"
    """The server accepted it (250)."""
    DEFERRED = "deferred"
    """A temporary failure (4xx, connection lost before the data went out); retried after a backoff."""
    FAILED = "failed"
    """A permanent failure (5xx, or deferred for too long); needs an operator."""
    UNCERTAIN = "uncertain"
    """The data may have gone out but no final reply came: an operator decides (retry or mark sent)."""


class LetterType(StrEnum):
    PAYMENT_ADVICE = "payment-advice"
    """Zahlungsavis."""
    DUNNING = "dunning"
    """Mahnung, with a level 1..9."""


RecipientKind = Literal["to", "cc", "bcc"]

# Which statuses each operator action applies to.
HOLDABLE = frozenset({Status.PENDING, Status.DEFERRED})
RELEASABLE = frozenset({Status.HELD})
RETRYABLE = frozenset({Status.DEFERRED, Status.FAILED, Status.UNCERTAIN})
DELETABLE = frozenset({Status.PENDING, Status.HELD, Status.DEFERRED, Status.FAILED, Status.UNCERTAIN})
EDITABLE = DELETABLE


class QueueError(OposError):
    """The queue file cannot be opened or used (not a queue, disk full, locked for too long)."""


class QueueGone(QueueError):
    """The queue file was deleted or replaced by another while it was open: what this connection reads is
    seen by no other process any more."""

    def __init__(self, path: Path, replaced: bool) -> None:
        if replaced:
            en = f"the queue file {path} was replaced by another file while it was open"
            de = f"die Warteschlangendatei {path} wurde während der Nutzung durch eine andere ersetzt"
        else:
            en = f"the queue file {path} was deleted while it was open"
            de = f"die Warteschlangendatei {path} wurde während der Nutzung gelöscht"
        super().__init__(en, de)


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


class DuplicateImport(OposError):
    """This spool manifest was imported before; ``item_id`` is the item it became."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"already queued as #{item_id}", f"bereits eingereiht als #{item_id}")
        self.item_id = item_id


@dataclass(frozen=True)
class Recipient:
    kind: RecipientKind
    address: str
    name: str = ""
    refused: str | None = None
    """The server's reply if it refused this recipient (while accepting others), else None."""

    def formatted(self) -> str:
        """``Name <addr>`` as typed by a person (not encoded), or the bare address."""
        if not self.name:
            return self.address
        local, _, domain = self.address.rpartition("@")
        return str(Address(display_name=self.name, username=local, domain=domain))


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    data: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class NewItem:
    """A mail ready to be queued: templates already rendered, addresses and files already checked."""

    type: LetterType
    level: int | None
    sender: str
    """The From header as ``Name <addr>`` or the bare address."""
    recipients: tuple[Recipient, ...]
    subject: str
    body: str
    attachments: tuple[NewAttachment, ...]
    reply_to: str = ""
    vars: dict[str, str] = field(default_factory=dict)
    """The item's placeholder values (customer_name, customer_number, document_number, amount, ...)."""
    source_key: str | None = None
    """Identity of the spool manifest it came from: the same key is never queued twice."""


@dataclass(frozen=True)
class AttachmentInfo:
    position: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Attachment(AttachmentInfo):
    data: bytes


@dataclass(frozen=True)
class Attempt:
    at: datetime
    outcome: str
    """``sent``, ``deferred``, ``failed``, ``uncertain``, ``not-sent``, ``held``, ``retry``, ``marked-sent`` or
    ``released``."""
    reply: str
    """The server's reply (code and text) or what happened, e.g. ``451 4.3.0 try again later``."""


@dataclass(frozen=True)
class ItemRow:
    """One line of the queue listing: cheap to load by the page."""

    id: int
    status: Status
    type: LetterType
    level: int | None
    to: tuple[str, ...]
    """The To recipients, formatted as ``Name <addr>`` where a name is known."""
    customer_name: str
    customer_number: str
    document_number: str
    subject: str
    attachments: tuple[str, ...]
    """Attachment file names, in order."""
    attempts: int
    error: str | None
    message_id: str
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    plausible: bool | None
    """Whether the attachments name this item's document (and customer); None while not checked yet."""


@dataclass(frozen=True)
class QueueItem(ItemRow):
    """Everything about one item, for the detail view and for sending."""

    sender: str
    reply_to: str
    recipients: tuple[Recipient, ...]
    body: str
    vars: dict[str, str]
    attachment_infos: tuple[AttachmentInfo, ...]
    history: tuple[Attempt, ...]
    date: str | None
    """The Date header, fixed at the first send so that retries carry the same one."""
    first_attempt_at: datetime | None

    @property
    def envelope_recipients(self) -> tuple[str, ...]:
        """To, Cc and Bcc addresses, each once, in order."""
        return tuple(dict.fromkeys(r.address for r in self.recipients))


@dataclass(frozen=True)
class ActionResult:
    """What an operator action did: the items it changed, and the ones it could not change and why."""

    changed: tuple[int, ...]
    skipped: dict[int, Status]
    """Items whose status does not allow the action, with that status."""


class UnknownItems(BadInput):
    """Some item numbers do not exist; nothing was changed."""

    def __init__(self, ids: Sequence[int]) -> None:
        listed = ", ".join(f"#{i}" for i in ids)
        super().__init__(f"no such item: {listed}", f"kein solcher Eintrag: {listed}")
        self.ids = tuple(ids)


def _now() -> float:
    return time.time()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 in UTC with a ``Z``, as the command line prints it."""
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _search_text(subject: str, recipients: Iterable[Recipient], vars: dict[str, str]) -> str:
    parts = [subject, *(f"{r.name} {r.address}" for r in recipients)]
    parts += [vars.get(k, "") for k in ("customer_name", "customer_number", "document_number")]
    return "\n".join(parts).casefold()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    if sys.platform == "win32":
        import ctypes

        # os.kill(pid, 0) would send CTRL_C_EVENT on Windows: ask the kernel instead.
        process_query_limited_information, still_active = 0x1000, 259
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == still_active
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


_SCHEMA = """
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
"""

# Schema 2: the plausibility check's result per item (services.plausibility). Attachments and document
# numbers never change after enqueue, so a result stays valid for the item's life.
_SCHEMA_2 = """
CREATE TABLE plausibility (
    item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
)
"""

# A deferred item counts as tried by a run that began at the parameter (``since``) if it was deferred after
# that: its last history entry is its deferral.
_DEFERRED_BEFORE = "coalesce((SELECT max(at) FROM attempts a WHERE a.item_id = items.id), 0) < ?"
# What a run may take among the items it was given: pending ones, and deferred ones at once (the operator
# named them) unless the deferral happened during this run.
_NAMED_SENDABLE = f"(status = 'pending' OR (status = 'deferred' AND {_DEFERRED_BEFORE}))"

# The To list and attachment names of a row, in order, without loading the rows themselves.
_ROW_COLUMNS = """
    items.id, items.status, items.type, items.level, items.customer_name, items.customer_number,
    items.document_number, items.subject, items.attempts, items.error, items.message_id, items.created_at,
    items.sent_at, items.next_attempt_at,
    (SELECT json_group_array(json_array(name, address))
       FROM (SELECT name, address FROM recipients r
              WHERE r.item_id = items.id AND r.kind = 'to' ORDER BY r.position)) AS to_json,
    (SELECT json_group_array(filename)
       FROM (SELECT filename FROM attachments a WHERE a.item_id = items.id ORDER BY a.position)) AS att_json,
    (SELECT ok FROM plausibility p WHERE p.item_id = items.id) AS plausible
"""


class Queue:
    """The send queue in one SQLite file. Thread-safe; one instance per process is enough.

    Open with :func:`open_queue`; close with :meth:`close` or use it as a context manager. ``create=False``
    opens only a queue that is there: never a new one, and never a file that is not an SQLite database (SQLite
    might write into it).
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._create = create
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
            self._db = sqlite3.connect(
                path if create else f"{path.absolute().as_uri()}?mode=rw",
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                uri=not create,
            )
            try:
                self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA foreign_keys = ON")
                self._migrate()
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
            # Checked again inside the lock: another process may have created it meanwhile.
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if found < 2:
                db.execute(_SCHEMA_2)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """The one place where SQLite's errors become a :class:`QueueError` that says what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            raise queue_error(self.path, exc) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so readers-turned-writers never deadlock."""
        with self._lock, self._sqlite_errors():
            db = self._db
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def check_file(self) -> None:
        """:class:`QueueGone` if the path no longer names the file this queue has open (it was deleted, or
        another file was put in its place)."""
        found = _file_identity(self.path)
        if found != self._identity or found is None:
            raise QueueGone(self.path, replaced=found is not None)

    def another(self) -> Queue:
        """A second connection to this queue's file, for another thread; :class:`QueueGone` if the path no
        longer names that file (never a new, empty queue in its place)."""
        self.check_file()
        other = Queue(self.path, create=False)
        if other._identity != self._identity:
            other.close()
            raise QueueGone(self.path, replaced=True)
        return other

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- adding ---------------------------------------------------------------------------------------

    def enqueue(self, item: NewItem) -> QueueItem:
        """Queue one mail; it gets its id and Message-ID now. ``DuplicateImport`` if its source_key is known."""
        (item_id,) = self.enqueue_many([item])
        return self.get(item_id)

    def enqueue_many(self, items: Iterable[NewItem]) -> list[int]:
        """Queue many mails in one transaction (all or none); returns their ids in order."""
        ids: list[int] = []
        now = _now()
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
                        _search_text(item.subject, item.recipients, item.vars),
                        new_message_id(item.sender),
                        item.source_key,
                        now,
                    ),
                )
                item_id = int(cursor.lastrowid or 0)
                self._insert_recipients(db, item_id, item.recipients)
                db.executemany(
                    "INSERT INTO attachments (item_id, position, filename, content_type, size, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (item_id, pos, a.filename, a.content_type, len(a.data), a.data)
                        for pos, a in enumerate(item.attachments)
                    ],
                )
                ids.append(item_id)
        return ids

    @staticmethod
    def _insert_recipients(db: sqlite3.Connection, item_id: int, recipients: Iterable[Recipient]) -> None:
        db.executemany(
            "INSERT INTO recipients (item_id, position, kind, name, address) VALUES (?, ?, ?, ?, ?)",
            [(item_id, pos, r.kind, r.name, r.address) for pos, r in enumerate(recipients)],
        )

    # --- reading --------------------------------------------------------------------------------------

    def version(self) -> int:
        """A number that changes whenever any process changed the queue. Poll it; re-read when it moves.

        :class:`QueueGone` once the file was deleted or replaced: nothing read from it is current then.
        """
        self.check_file()
        return int(self._read("SELECT value FROM meta WHERE key = 'changes'")[0][0])

    @staticmethod
    def _where(statuses: Iterable[Status] | Status | None, search: str) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if isinstance(statuses, Status):
            statuses = [statuses]
        if statuses is not None:
            wanted = [Status(s).value for s in statuses]
            clauses.append(f"items.status IN ({', '.join('?' for _ in wanted)})")
            params += wanted
        for word in search.casefold().split():
            clauses.append("instr(items.search, ?) > 0")
            params.append(word)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def page(
        self,
        status: Iterable[Status] | Status | None = None,
        search: str = "",
        offset: int = 0,
        limit: int = 100,
    ) -> list[ItemRow]:
        """Rows newest first, filtered by status(es) and by search words (all must occur, case-insensitive,
        in recipient names and addresses, customer name and number, document number or subject)."""
        where, params = self._where(status, search)
        rows = self._read(
            f"SELECT {_ROW_COLUMNS} FROM items{where} ORDER BY items.id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self._row(r) for r in rows]

    def count(self, status: Iterable[Status] | Status | None = None, search: str = "") -> int:
        """How many rows :meth:`page` would page through with the same filter."""
        where, params = self._where(status, search)
        return int(self._read(f"SELECT count(*) FROM items{where}", params)[0][0])

    def counts(self) -> dict[Status, int]:
        """Items per status (every status present, zeros included)."""
        found = {r[0]: r[1] for r in self._read("SELECT status, count(*) FROM items GROUP BY status")}
        return {s: int(found.get(s.value, 0)) for s in Status}

    def sendable_count(self, ids: Sequence[int] | None = None, since: float | None = None) -> int:
        """How many items :meth:`claim` would still hand out (with the same ``ids`` and ``since``)."""
        since = _now() if since is None else since
        if ids is None:
            sql = (
                "SELECT count(*) FROM items WHERE status = 'pending'"
                f" OR (status = 'deferred' AND next_attempt_at <= ? AND {_DEFERRED_BEFORE})"
            )
            return int(self._read(sql, (_now(), since))[0][0])
        total = 0
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT count(*) FROM items WHERE id IN ({marks}) AND {_NAMED_SENDABLE}"
            total += int(self._read(sql, [*chunk, since])[0][0])
        return total

    def customers(self, ids: Sequence[int]) -> int:
        """How many customers ``ids`` go to: told apart by customer number, else name, else first To address."""
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            sql = f"""
                SELECT DISTINCT CASE
                    WHEN customer_number != '' THEN 'number:' || customer_number
                    WHEN customer_name != '' THEN 'name:' || customer_name
                    ELSE 'to:' || coalesce((SELECT lower(address) FROM recipients r
                                             WHERE r.item_id = items.id AND r.kind = 'to'
                                             ORDER BY r.position LIMIT 1), '')
                END FROM items WHERE id IN ({marks})"""
            found |= {str(r[0]) for r in self._read(sql, chunk)}
        return len(found)

    def ids(self, status: Iterable[Status] | Status | None = None, search: str = "") -> list[int]:
        """All ids matching a filter, newest first ("select all" on a screen)."""
        where, params = self._where(status, search)
        return [int(r[0]) for r in self._read(f"SELECT id FROM items{where} ORDER BY id DESC", params)]

    def message_ids(self, item_ids: Sequence[int]) -> dict[int, str]:
        """The Message-ID of each of these items (those that exist), read in one query: what a bulk enqueue
        reports for the mails it queued."""
        marks = ", ".join("?" for _ in item_ids)
        rows = self._read(f"SELECT id, message_id FROM items WHERE id IN ({marks})", item_ids)
        return {int(r[0]): str(r[1]) for r in rows}

    def position(self, item_id: int, status: Iterable[Status] | Status | None = None, search: str = "") -> int:
        """Where ``item_id`` stands (or would stand) in :meth:`page`'s order with the same filter: how many
        matching items are newer. Keeps a screen's cursor on its item when items come and go above it."""
        where, params = self._where(status, search)
        sql = f"SELECT count(*) FROM items{where}{' AND' if where else ' WHERE'} items.id > ?"
        return int(self._read(sql, [*params, item_id])[0][0])

    def get(self, item_id: int) -> QueueItem:
        """One item with recipients, attachment infos and its history; ``UnknownItems`` if there is none."""
        rows = self._read(
            f"""SELECT {_ROW_COLUMNS}, items.sender, items.reply_to, items.body, items.vars, items.date,
                       items.first_attempt_at
                FROM items WHERE items.id = ?""",
            (item_id,),
        )
        if not rows:
            raise UnknownItems([item_id])
        r = rows[0]
        row = self._row(r)
        recipients = tuple(
            Recipient(kind=x["kind"], address=x["address"], name=x["name"], refused=x["refused"])
            for x in self._read(
                "SELECT kind, name, address, refused FROM recipients WHERE item_id = ? ORDER BY position", (item_id,)
            )
        )
        infos = tuple(
            AttachmentInfo(x["position"], x["filename"], x["content_type"], x["size"])
            for x in self._read(
                "SELECT position, filename, content_type, size FROM attachments WHERE item_id = ? ORDER BY position",
                (item_id,),
            )
        )
        history = tuple(
            Attempt(_dt(x["at"]) or datetime.now(UTC), x["outcome"], x["reply"])
            for x in self._read("SELECT at, outcome, reply FROM attempts WHERE item_id = ? ORDER BY id", (item_id,))
        )
        return QueueItem(
            **{f: getattr(row, f) for f in ItemRow.__dataclass_fields__},
            sender=r["sender"],
            reply_to=r["reply_to"],
            recipients=recipients,
            body=r["body"],
            vars=json.loads(r["vars"]),
            attachment_infos=infos,
            history=history,
            date=r["date"],
            first_attempt_at=_dt(r["first_attempt_at"]),
        )

    def attachments(self, item_id: int) -> list[Attachment]:
        """The attachment bytes exactly as queued."""
        return [
            Attachment(x["position"], x["filename"], x["content_type"], x["size"], bytes(x["data"]))
            for x in self._read(
                "SELECT position, filename, content_type, size, data FROM attachments WHERE item_id = ?"
                " ORDER BY position",
                (item_id,),
            )
        ]

    @staticmethod
    def _row(r: sqlite3.Row) -> ItemRow:
        to = tuple(Recipient("to", address, name).formatted() for name, address in json.loads(r["to_json"]))
        return ItemRow(
            id=r["id"],
            status=Status(r["status"]),
            type=LetterType(r["type"]),
            level=r["level"],
            to=to,
            customer_name=r["customer_name"],
            customer_number=r["customer_number"],
            document_number=r["document_number"],
            subject=r["subject"],
            attachments=tuple(json.loads(r["att_json"])),
            attempts=r["attempts"],
            error=r["error"],
            message_id=r["message_id"],
            created_at=_dt(r["created_at"]) or datetime.now(UTC),
            sent_at=_dt(r["sent_at"]),
            next_attempt_at=_dt(r["next_attempt_at"]),
            plausible=None if r["plausible"] is None else bool(r["plausible"]),
        )

    # --- plausibility results (computed by services.plausibility, stored here so each PDF is read once) ----

    def unchecked(self, ids: Sequence[int] | None = None, limit: int = 100) -> list[int]:
        """Unsent items without a plausibility result, newest first; with ``ids``, only among those."""
        base = "SELECT id FROM items WHERE status != 'sent' AND id NOT IN (SELECT item_id FROM plausibility)"
        if ids is None:
            return [int(r[0]) for r in self._read(f"{base} ORDER BY id DESC LIMIT ?", (limit,))]
        found: list[int] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            found += [int(r[0]) for r in self._read(f"{base} AND id IN ({marks})", chunk)]
        return sorted(found, reverse=True)[:limit]

    def record_checks(self, results: Iterable[tuple[int, bool, str]]) -> None:
        """Store (item id, ok, detail) results; items deleted meanwhile are skipped."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO plausibility (item_id, ok, detail)"
                " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM items WHERE id = ?)",
                [(item_id, int(ok), detail, item_id) for item_id, ok, detail in results],
            )

    def check_detail(self, item_id: int) -> str | None:
        """The stored detail of an item's plausibility result, or None while it is not checked."""
        rows = self._read("SELECT detail FROM plausibility WHERE item_id = ?", (item_id,))
        return str(rows[0][0]) if rows else None

    def flagged(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` whose plausibility check failed, newest first."""
        found: list[int] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT item_id FROM plausibility WHERE ok = 0 AND item_id IN ({marks})"
            found += [int(r[0]) for r in self._read(sql, chunk)]
        return sorted(found, reverse=True)

    # --- operator actions -----------------------------------------------------------------------------

    def _transition(
        self, ids: Iterable[int], allowed: frozenset[Status], target: Status, note: str, clear_backoff: bool = False
    ) -> ActionResult:
        wanted = list(dict.fromkeys(ids))
        with self._write() as db:
            found = self._statuses(db, wanted)
            changed = [i for i in wanted if found[i] in allowed]
            skipped = {i: found[i] for i in wanted if found[i] not in allowed}
            now = _now()
            for item_id in changed:
                extra = ", next_attempt_at = NULL" if clear_backoff else ""
                db.execute(f"UPDATE items SET status = ?{extra} WHERE id = ?", (target.value, item_id))
                db.execute(
                    "INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, ?, '')", (item_id, now, note)
                )
        return ActionResult(tuple(changed), skipped)

    @staticmethod
    def _statuses(db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Status]:
        found: dict[int, Status] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for item_id, status in db.execute(f"SELECT id, status FROM items WHERE id IN ({marks})", chunk):
                found[int(item_id)] = Status(status)
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownItems(missing)
        return found

    def statuses(self, ids: Sequence[int]) -> dict[int, Status]:
        """The status of each item in one read (a dispatcher asked for 100,000 items must not read each
        whole item); UnknownItems for numbers not in the queue."""
        with self._lock, self._sqlite_errors():
            return self._statuses(self._db, ids)

    def hold(self, ids: Iterable[int]) -> ActionResult:
        """pending/deferred -> held. Unknown ids: ``UnknownItems`` and nothing changes."""
        return self._transition(ids, HOLDABLE, Status.HELD, "held")

    def release(self, ids: Iterable[int]) -> ActionResult:
        """held -> pending."""
        return self._transition(ids, RELEASABLE, Status.PENDING, "released")

    def retry(self, ids: Iterable[int] | None = None) -> ActionResult:
        """deferred/failed/uncertain -> pending, at once (no backoff). ``None`` = every such item."""
        if ids is None:
            ids = self.ids(RETRYABLE)
        return self._transition(ids, RETRYABLE, Status.PENDING, "retry", clear_backoff=True)

    def mark_sent(self, ids: Iterable[int]) -> ActionResult:
        """uncertain -> sent: the operator confirmed (e.g. with the recipient) that it arrived."""
        wanted = list(dict.fromkeys(ids))
        with self._write() as db:
            found = self._statuses(db, wanted)
            changed = [i for i in wanted if found[i] is Status.UNCERTAIN]
            now = _now()
            for item_id in changed:
                db.execute("UPDATE items SET status = 'sent', sent_at = ?, error = NULL WHERE id = ?", (now, item_id))
                db.execute(
                    "INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, 'marked-sent', '')",
                    (item_id, now),
                )
        return ActionResult(tuple(changed), {i: found[i] for i in wanted if i not in changed})

    def delete(self, ids: Iterable[int]) -> ActionResult:
        """Remove unsent items (never ``sent`` or ``sending`` ones) with their attachments and history."""
        wanted = list(dict.fromkeys(ids))
        with self._write() as db:
            found = self._statuses(db, wanted)
            changed = [i for i in wanted if found[i] in DELETABLE]
            for item_id in changed:
                db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        return ActionResult(tuple(changed), {i: found[i] for i in wanted if i not in changed})

    def set_recipients(self, item_id: int, recipients: Sequence[Recipient]) -> None:
        """Replace an unsent item's recipients (already validated by the caller)."""
        with self._write() as db:
            status = self._statuses(db, [item_id])[item_id]
            if status not in EDITABLE:
                raise QueueError(
                    f"#{item_id} is {status}: its recipients can no longer change",
                    f"#{item_id} ist {status}: die Empfänger sind nicht mehr änderbar",
                )
            db.execute("DELETE FROM recipients WHERE item_id = ?", (item_id,))
            self._insert_recipients(db, item_id, recipients)
            subject, raw_vars = db.execute("SELECT subject, vars FROM items WHERE id = ?", (item_id,)).fetchone()
            db.execute(
                "UPDATE items SET search = ? WHERE id = ?",
                (_search_text(subject, recipients, json.loads(raw_vars)), item_id),
            )

    # --- sending --------------------------------------------------------------------------------------

    def claim(
        self, ids: Sequence[int] | None = None, lease: float = LEASE_SECONDS, since: float | None = None
    ) -> QueueItem | None:
        """Take the oldest sendable item for this process and mark it ``sending`` (committed), or None.

        Sendable: ``pending``, or ``deferred`` whose backoff is over. With ``ids``, only those items, and a
        ``deferred`` one even before its backoff is over (the operator asked for it). ``since`` is when the
        caller's run began: an item deferred since then (by this run or by another sender) is not handed out
        again, whatever its backoff, so that a run tries each mail once. The Date header is fixed now if this
        is the item's first send.
        """
        now = _now()
        since = now if since is None else since
        with self._write() as db:
            if ids is None:
                # Two index lookups: one OR query would sort every pending item to find the oldest.
                sql = (
                    "SELECT min(id) FROM (SELECT min(id) AS id FROM items WHERE status = 'pending'"
                    " UNION ALL SELECT min(id) FROM items WHERE status = 'deferred' AND next_attempt_at <= ?"
                    f" AND {_DEFERRED_BEFORE})"
                )
                params: list[object] = [now, since]
            else:
                marks = ", ".join("?" for _ in ids)
                sql = f"SELECT id FROM items WHERE id IN ({marks}) AND {_NAMED_SENDABLE} ORDER BY id LIMIT 1"
                params = [*ids, since]
            found = db.execute(sql, params).fetchone()
            if found is None or found[0] is None:
                return None
            item_id = int(found[0])
            db.execute(
                """UPDATE items SET status = 'sending', claim_host = ?, claim_pid = ?, lease_until = ?,
                       attempts = attempts + 1, date = coalesce(date, ?),
                       first_attempt_at = coalesce(first_attempt_at, ?)
                   WHERE id = ?""",
                (self.host, self.pid, now + lease, formatdate(now, localtime=True), now, item_id),
            )
        return self.get(item_id)

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
        now = _now()
        with self._write() as db:
            db.execute(
                """UPDATE items SET status = ?, error = ?, sent_at = ?, next_attempt_at = ?,
                       claim_host = NULL, claim_pid = NULL, lease_until = NULL
                   WHERE id = ? AND status = 'sending'""",
                (status.value, error, now if sent else None, next_attempt_at, item_id),
            )
            db.execute(
                "INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, ?, ?)", (item_id, now, outcome, reply)
            )
            for address, why in (refused or {}).items():
                db.execute(
                    "UPDATE recipients SET refused = ? WHERE item_id = ? AND lower(address) = lower(?)",
                    (why, item_id, address),
                )

    def record_sent(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        """The server accepted the data (250); ``refused`` recipients are recorded one by one."""
        self._finish(item_id, Status.SENT, "sent", reply, error=None, sent=True, refused=refused)

    def record_deferred(self, item_id: int, reply: str, retry_at: datetime) -> None:
        """A temporary failure: try again from ``retry_at`` on."""
        self._finish(item_id, Status.DEFERRED, "deferred", reply, error=reply, next_attempt_at=retry_at.timestamp())

    def record_failed(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        """A permanent failure, with the server's reply (code and text)."""
        self._finish(item_id, Status.FAILED, "failed", reply, error=reply, refused=refused)

    def record_uncertain(self, item_id: int, reason: str) -> None:
        """The data went out but no final reply came: never resent without an operator."""
        self._finish(item_id, Status.UNCERTAIN, "uncertain", reason, error=reason)

    def unclaim(self, item_id: int, reason: str) -> None:
        """Give a claimed item back untouched (the run stopped before its data went out): ``pending`` again,
        and this attempt does not count."""
        self._unclaim(item_id, Status.PENDING, "not-sent", reason, error=None)

    def record_held(self, item_id: int, reason: str) -> None:
        """Hold a claimed item back before its data went out (it failed the plausibility check): ``held``,
        with the reason as its error and in its history; this attempt does not count."""
        self._unclaim(item_id, Status.HELD, "held", reason, error=reason)

    def _unclaim(self, item_id: int, status: Status, outcome: str, reason: str, *, error: str | None) -> None:
        now = _now()
        with self._write() as db:
            db.execute(
                """UPDATE items SET status = ?, attempts = max(attempts - 1, 0), error = coalesce(?, error),
                       claim_host = NULL, claim_pid = NULL, lease_until = NULL
                   WHERE id = ? AND status = 'sending'""",
                (status.value, error, item_id),
            )
            db.execute(
                "INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, ?, ?)",
                (item_id, now, outcome, reason),
            )

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: ``["ok"]`` for a sound file, else the problems it found."""
        try:
            return [str(r[0]) for r in self._read("PRAGMA quick_check")]
        except QueueError as exc:  # too broken to be checked at all
            return [exc.detail or exc.en]

    def recover_stale(self) -> list[int]:
        """Turn ``sending`` items whose claimant is gone into ``uncertain``; returns their ids.

        On this host a claim is alive while its process is; from another host, while its lease lasts.
        """
        now = _now()
        stale: list[tuple[int, str, int]] = []
        rows = self._read("SELECT id, claim_host, claim_pid, lease_until FROM items WHERE status = 'sending'")
        for r in rows:
            if r["claim_host"] == self.host:
                gone = r["claim_pid"] != self.pid and not pid_alive(int(r["claim_pid"] or 0))
            else:
                gone = (r["lease_until"] or 0) < now
            if gone:
                stale.append((int(r["id"]), r["claim_host"], r["claim_pid"]))
        if not stale:
            return []
        reason_en = "the sending process stopped while this mail was being sent: it may have arrived"
        recovered: list[int] = []
        with self._write() as db:
            for item_id, host, pid in stale:
                # Only the claim seen above: the item may have been finished and claimed again meanwhile.
                cursor = db.execute(
                    """UPDATE items SET status = 'uncertain', error = ?, claim_host = NULL, claim_pid = NULL,
                           lease_until = NULL
                       WHERE id = ? AND status = 'sending' AND claim_host = ? AND claim_pid = ?""",
                    (reason_en, item_id, host, pid),
                )
                if cursor.rowcount:
                    recovered.append(item_id)
                    db.execute(
                        "INSERT INTO attempts (item_id, at, outcome, reply) VALUES (?, ?, 'uncertain', ?)",
                        (item_id, now, reason_en),
                    )
        return recovered


def open_queue(home: Home) -> Queue:
    """The queue of an installation (``queue.db`` in its home folder), created on first use."""
    home.ensure()
    return Queue(home.queue_db)
