"""Moving an installation's SQLite queue into a PostgreSQL database (``opos-tui queue migrate --to URL``).

Everything goes, as it is: every item with its number, Message-ID, status, times and error, its recipients,
attachments, history, plausibility result and rendered mail. The copy is one PostgreSQL transaction (all or
nothing) made while the SQLite file's write lock is held (nothing is queued or sent meanwhile), into a database
that holds no queue yet or an unused one: a second run finds the first one's items and refuses. ``queue.db`` is
left as it was.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from opos_tui.services.queue.model import QueueError
from opos_tui.services.queue.postgresql import PostgresQueue, safe_url
from opos_tui.services.queue.sqlite import SqliteQueue, connect, queue_error

# The tables in the order their references need: (table, its columns, where they come from in the SQLite file,
# in which order). Column names are the same in both engines; SQLite keeps attachment bytes with their names.
_ITEM_COLUMNS = (
    "id, status, type, level, sender, reply_to, subject, body, vars, customer_name, customer_number,"
    " document_number, search, message_id, date, source_key, created_at, first_attempt_at, next_attempt_at,"
    " sent_at, attempts, error, claim_host, claim_pid, lease_until"
)
_TABLES = (
    ("items", _ITEM_COLUMNS, "items", "id"),
    ("recipients", "item_id, position, kind, name, address, refused", "recipients", "item_id, position"),
    ("attachments", "item_id, position, filename, content_type, size", "attachments", "item_id, position"),
    ("attachment_data", "item_id, position, data", "attachments", "item_id, position"),
    ("attempts", "id, item_id, at, outcome, reply", "attempts", "id"),
    ("plausibility", "item_id, ok, detail", "(SELECT item_id, ok != 0 AS ok, detail FROM plausibility)", "item_id"),
    ("rendered", "item_id, at, data", "rendered", "item_id"),
)
_NUMBERED = ("items", "attempts")
"""The tables whose ids the database hands out: new ones go on above every id SQLite ever gave."""


@dataclass(frozen=True)
class Moved:
    items: int
    attachments: int
    history: int


def migrate_to_postgresql(path: Path, target: PostgresQueue) -> Moved:
    """Copy the SQLite queue at ``path`` into ``target``'s database, which must be unused."""
    shown = safe_url(target.url)
    if target.version() != 0:
        raise QueueError(
            f"the database {shown} already holds a queue ({target.count()} items): nothing was moved"
            " (a queue is moved only once, into an unused database)",
            f"die Datenbank {shown} enthält schon eine Warteschlange ({target.count()} Einträge): nichts verschoben"
            " (eine Warteschlange wird nur einmal verschoben, in eine unbenutzte Datenbank)",
        )
    SqliteQueue(path, create=False).close()  # a queue file of the current schema, or a clear error
    source = connect(path, create=False)
    try:
        source.execute("BEGIN IMMEDIATE")  # no other process writes while the copy is made
        sending = source.execute("SELECT count(*) FROM items WHERE status = 'sending'").fetchone()[0]
        if sending:
            raise QueueError(
                f"{sending} items are being sent right now: stop every sender (send, run, the TUI), then move the"
                " queue",
                f"{sending} Einträge werden gerade gesendet: alle Sender beenden (send, run, die TUI), dann die"
                " Warteschlange verschieben",
            )
        with target.copying() as cur:
            for table, columns, origin, order in _TABLES:
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in source.execute(f"SELECT {columns} FROM {origin} ORDER BY {order}"):
                        copy.write_row(row)
            for table in _NUMBERED:
                found = source.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" greatest(%s, coalesce(max(id), 0)) + 1, false) FROM {table}",
                    (int(found[0]) if found else 0,),
                )
            counts = {
                table: int(source.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("items", "attachments", "attempts")
            }
    except sqlite3.Error as exc:
        raise queue_error(path, exc) from None
    finally:
        if source.in_transaction:
            source.execute("ROLLBACK")
        source.close()
    return Moved(counts["items"], counts["attachments"], counts["attempts"])
