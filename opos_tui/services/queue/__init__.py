"""The durable send queue: every mail from enqueue to sent. Nothing is lost and nothing is sent twice.

Where to look:

- :mod:`.model`: what the queue holds (items, statuses, letter types, results of operator actions, errors).
- :mod:`.engine`: :class:`QueueEngine` (also named ``Queue``), the interface everyone else uses, with the
  guarantees every engine gives: atomic claims with exactly one winner, leases, durable records.
- :mod:`.sqlite`: the engine there is, one SQLite file shared by every process of an installation.
- :mod:`.liveness`, :mod:`.headers`, :mod:`.search`: the small things the engine needs that are not storage
  (is a claimant still running, the Message-ID and Date it fixes, what search looks through).

Open an installation's queue with :func:`open_queue`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
    Status,
    UnknownItems,
    iso,
)
from opos_tui.services.queue.sqlite import BUSY_TIMEOUT_MS, SCHEMA_VERSION, SqliteQueue, not_a_queue, queue_error

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DELETABLE",
    "EDITABLE",
    "HOLDABLE",
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
    "SqliteQueue",
    "Status",
    "UnknownItems",
    "iso",
    "not_a_queue",
    "open_queue",
    "pid_alive",
    "queue_error",
]


def open_queue(
    home: Home,
    *,
    create: bool = True,
    clock: Clock = time.time,
    message_id: Callable[[str], str] = new_message_id,
) -> QueueEngine:
    """The queue of an installation (``queue.db`` in its home folder), created on first use; with
    ``create=False`` only one that is there (nothing is made, ``QueueError`` otherwise).

    ``clock`` is where every time the queue records comes from, ``message_id`` makes the Message-ID of a new
    item from its sender: the defaults are the real ones; tests give fixed ones."""
    if create:
        home.ensure()
    return SqliteQueue(home.queue_db, create=create, clock=clock, message_id=message_id)
