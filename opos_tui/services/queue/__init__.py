"""The durable send queue: every mail from enqueue to sent. Nothing is lost and nothing is sent twice.

Where to look:

- :mod:`.model`: what the queue holds (items, statuses, letter types, results of operator actions, errors).
- :mod:`.engine`: :class:`QueueEngine` (also named ``Queue``), the interface everyone else uses, with the
  guarantees every engine gives: atomic claims with exactly one winner, leases, durable records.
- :mod:`.sqlite`: the default engine, one SQLite file shared by every process of an installation.
- :mod:`.postgresql`: one queue on a PostgreSQL server for a farm of terminal servers (setting ``queue.url``);
  psycopg is imported only when it is used.
- :mod:`.liveness`, :mod:`.headers`, :mod:`.search`: the small things the engine needs that are not storage
  (is a claimant still running, the Message-ID and Date it fixes, what search looks through).

Open an installation's queue with :func:`open_queue`; it chooses the engine by ``queue.url``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opos_tui.services import config_file
from opos_tui.services.errors import ConfigError
from opos_tui.services.home import Home
from opos_tui.services.queue.engine import LEASE_SECONDS, Clock, Queue, QueueEngine
from opos_tui.services.queue.headers import new_message_id
from opos_tui.services.queue.liveness import pid_alive
from opos_tui.services.queue.model import (
    DELETABLE,
    EDITABLE,
    HOLDABLE,
    RELEASABLE,
    RETRYABLE,
    ActionResult,
    Attachment,
    AttachmentInfo,
    Attempt,
    DuplicateImport,
    ItemRow,
    LetterType,
    NewAttachment,
    NewItem,
    QueueError,
    QueueGone,
    QueueItem,
    Recipient,
    RecipientKind,
    Rendered,
    Status,
    UnknownItems,
    iso,
)
from opos_tui.services.queue.sqlite import BUSY_TIMEOUT_MS, SCHEMA_VERSION, SqliteQueue, not_a_queue, queue_error

if TYPE_CHECKING:
    from opos_tui.services.queue.postgresql import PostgresQueue

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DELETABLE",
    "EDITABLE",
    "HOLDABLE",
    "HOST_ENV",
    "LEASE_SECONDS",
    "RELEASABLE",
    "RETRYABLE",
    "SCHEMA_VERSION",
    "ActionResult",
    "Attachment",
    "AttachmentInfo",
    "Attempt",
    "Clock",
    "DuplicateImport",
    "ItemRow",
    "LetterType",
    "NewAttachment",
    "NewItem",
    "Queue",
    "QueueEngine",
    "QueueError",
    "QueueGone",
    "QueueItem",
    "Recipient",
    "RecipientKind",
    "Rendered",
    "SqliteQueue",
    "Status",
    "UnknownItems",
    "iso",
    "not_a_queue",
    "open_postgresql",
    "open_queue",
    "pid_alive",
    "queue_error",
    "queue_url",
]


HOST_ENV = "OPOS_TUI_HOST"
"""Names this host in claims instead of its host name: for hosts of one farm that share a name (containers)."""


def queue_url(home: Home) -> str:
    """The installation's ``queue.url`` (empty: SQLite). Read even from a config.toml with other invalid keys,
    but never guessed: an unreadable file or an invalid ``queue.url`` is a :class:`ConfigError`, since a wrong
    guess would put mails into a queue that the farm's senders never see."""
    parsed = config_file.parse(home.config_file)
    section = parsed[1].get("queue") if parsed is not None else None
    if not isinstance(section, dict) or section.get("url", "") == "":
        return ""  # SQLite, as in most installations: found without building the settings model
    from opos_tui.services import settings

    found = settings.salvage(home)
    if found.unreadable is not None:
        raise found.unreadable
    for problem in found.problems:
        if problem.key == "queue.url":
            raise ConfigError(
                f"{home.config_file}: queue.url {problem.message}", f"{home.config_file}: queue.url {problem.message}"
            )
    return found.settings.queue.url


def open_queue(
    home: Home,
    *,
    create: bool = True,
    clock: Clock = time.time,
    message_id: Callable[[str], str] = new_message_id,
) -> QueueEngine:
    """The queue of an installation: ``queue.db`` in its home folder, or the PostgreSQL database ``queue.url``
    names (with the password ``queue.password`` from the secret store, else libpq's ``~/.pgpass``); created on
    first use; with ``create=False`` only one that is there (nothing is made, ``QueueError`` otherwise).

    ``clock`` is where every time the queue records comes from, ``message_id`` makes the Message-ID of a new
    item from its sender: the defaults are the real ones; tests give fixed ones."""
    url = queue_url(home)
    if url:
        return open_postgresql(home, url, create=create, clock=clock, message_id=message_id)
    if create:
        home.ensure()
    return SqliteQueue(home.queue_db, create=create, clock=clock, message_id=message_id, host=host_name())


def host_name() -> str | None:
    """This host's name in claims when :data:`HOST_ENV` gives one, else None (the engines take the host name)."""
    return os.environ.get(HOST_ENV) or None


def open_postgresql(
    home: Home,
    url: str,
    *,
    create: bool = True,
    clock: Clock = time.time,
    message_id: Callable[[str], str] = new_message_id,
) -> PostgresQueue:
    """The PostgreSQL queue at ``url``, with the home's ``queue.password`` if the secret store holds one."""
    try:
        from opos_tui.services.queue.postgresql import PostgresQueue
    except ImportError as exc:
        raise QueueError(
            "a PostgreSQL queue needs psycopg, which is not installed: pip install 'opos-tui[postgresql]'",
            "eine PostgreSQL-Warteschlange braucht psycopg, das nicht installiert ist:"
            " pip install 'opos-tui[postgresql]'",
            str(exc),
        ) from None
    from opos_tui.services import secrets  # the secret store, only for a PostgreSQL queue

    password = secrets.open_store(home).get(secrets.QUEUE_PASSWORD)
    return PostgresQueue(url, password=password, create=create, clock=clock, message_id=message_id, host=host_name())
