"""What every queue engine promises: the interface the rest of opos-tui sends, lists and acts through.

An engine stores items (:mod:`.model`) durably and lets several processes, on one host or many, work on the
same queue at once: the SQLite engine (:mod:`.sqlite`, one file in the home, the default) and the PostgreSQL
engine (:mod:`.postgresql`, one database for a farm of terminal servers). ``tests/test_queue_contract.py``
checks every engine against it.

The life of an item::

    enqueue ─> pending ──claim──> sending ──record_sent──────> sent
                 │  ^               │  │ └──record_deferred──> deferred ──claim (backoff over)──> sending
            hold │  │ release       │  └───record_failed─────> failed
                 v  │               ├──record_uncertain / recover_stale──> uncertain ──mark_sent──> sent
                 held               └──unclaim──> pending (this attempt does not count)

    retry: deferred / failed / uncertain -> pending     delete: anything unsent and not sending

The guarantees every engine gives:

- **Durable**: a method that returned has committed its change; it survives a crash or power loss (inside
  :meth:`QueueEngine.together`: once the block has ended).
- **Atomic**: each method changes all it says or nothing (``enqueue_many`` and the operator actions too).
- **One winner**: :meth:`QueueEngine.claim` hands an item to exactly one claimant however many processes
  and threads claim at once, and the item is ``sending`` (committed) before ``claim`` returns, so its data
  goes out only after the queue knows it may have gone.
- **Leases**: a claim carries a lease. A ``sending`` item whose lease ran out, or whose claimant an engine
  knows to be gone, is found by :meth:`QueueEngine.recover_stale` and becomes ``uncertain``: it may have
  arrived, so it is never resent without an operator.
- **Cheap listing**: paging, counting, searching, :meth:`QueueEngine.version` and claiming never read
  attachment bytes or a rendered mail; only :meth:`QueueEngine.attachments` and :meth:`QueueEngine.rendered` do.
- **One clock**: every time an engine records or compares (created, attempts, leases, backoff) comes from
  the ``clock`` it was opened with (``time.time`` unless a test gives another).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from opos_tui.services.queue.model import (
    ActionResult,
    Attachment,
    ItemRow,
    NewItem,
    QueueItem,
    Recipient,
    Rendered,
    Status,
)

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``."""

LEASE_SECONDS = 15 * 60
"""How long a claim counts as alive when its claimant cannot be asked. Longer than any single SMTP
transaction can take."""

StatusFilter = Iterable[Status] | Status | None
"""One status, several, or None for all."""


class QueueEngine(Protocol):
    """The send queue. One handle may be used from several threads; :meth:`another` gives a worker
    thread a handle of its own so that its long work never makes another thread wait.

    Raises :class:`~.model.QueueError` when the queue cannot be used (locked for too long, read-only, not a
    queue) and :class:`~.model.UnknownItems` for item numbers it does not hold.
    """

    # --- the handle ---------------------------------------------------------------------------------

    clock: Clock
    """Where this handle's times come from. A caller that hands the queue a time (a run's start, ``since``)
    reads it here, so that both speak of the same clock."""

    local: bool
    """Whether a write is work on this machine (a file), not a round trip to a server: a send run's writer then
    makes its writes on the run's own thread, between its mails (:mod:`.writer`)."""

    def another(self) -> QueueEngine:
        """A new, independent handle on the same queue (with the same clock), for another thread.
        :class:`~.model.QueueGone` if the queue this handle uses is no longer the installation's (never a new,
        empty queue in its place)."""
        ...

    def close(self) -> None:
        """Let go of the queue; the handle is unusable afterwards."""
        ...

    def quick_check(self) -> list[str]:
        """A check of the storage's own integrity (SQLite: ``PRAGMA quick_check``): ``["ok"]`` when sound,
        else the problems found, never an exception for a damaged store."""
        ...

    def together(self) -> AbstractContextManager[None]:
        """Commit every write made in the block (by this handle, in this thread) as one transaction when the
        block ends: one flush to disk for all of them. Each write is still all or nothing on its own (one that
        raises leaves the others be); none is durable, nor seen by others, before the block ends. Not nested."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Closes the handle."""
        ...

    # --- adding -------------------------------------------------------------------------------------

    def enqueue(self, item: NewItem) -> QueueItem:
        """Queue one mail as ``pending``; it gets its id and Message-ID now. Its ``rendered`` mail, if it has
        one, is stored apart from the item (see :meth:`rendered`).

        ``DuplicateImport`` (with the earlier item's id) if its ``source_key`` was queued before."""
        ...

    def enqueue_many(self, items: Iterable[NewItem]) -> list[int]:
        """Queue many mails in one transaction, all or none; returns their ids in order. Ids grow: a later
        item has a higher id. ``DuplicateImport`` for a known ``source_key`` and nothing is queued."""
        ...

    # --- reading ------------------------------------------------------------------------------------

    def version(self) -> int:
        """A number that changes whenever any process changed the queue (any successful write). Poll it;
        re-read when it moves. Cheap.

        :class:`~.model.QueueGone` once the store was deleted or replaced under this handle (SQLite: another
        file put at ``queue.db``'s place): nothing read from it is current then."""
        ...

    def wait_for_change(self, seen: int, timeout: float) -> bool:
        """Wait until :meth:`version` is no longer ``seen`` (True, at once if it moved already) or ``timeout``
        seconds passed without a change (False). How a screen follows other processes: SQLite looks at the
        version now and then; PostgreSQL is woken by the server (``LISTEN``/``NOTIFY``), on a connection of its
        own, so the wait never holds up the handle's other work."""
        ...

    def page(self, status: StatusFilter = None, search: str = "", offset: int = 0, limit: int = 100) -> list[ItemRow]:
        """Rows newest first (highest id first), filtered by status(es) and by search words: every word must
        occur, case-insensitively, in the recipient names and addresses, customer name and number, document
        number or subject."""
        ...

    def count(self, status: StatusFilter = None, search: str = "") -> int:
        """How many rows :meth:`page` would page through with the same filter."""
        ...

    def counts(self) -> dict[Status, int]:
        """Items per status, every status present (zeros included)."""
        ...

    def customers(self, ids: Sequence[int]) -> int:
        """How many customers ``ids`` (any number) go to: told apart by customer number, else name, else first
        To address. Unknown ids count for nothing."""
        ...

    def ids(self, status: StatusFilter = None, search: str = "") -> list[int]:
        """All ids matching a filter, newest first ("select all" on a screen)."""
        ...

    def position(self, item_id: int, status: StatusFilter = None, search: str = "") -> int:
        """Where ``item_id`` stands (or would stand) in :meth:`page`'s order with the same filter: how many
        matching items are newer. Keeps a screen's cursor on its item when items come and go above it."""
        ...

    def statuses(self, ids: Sequence[int]) -> dict[int, Status]:
        """The status of each of ``ids`` in one read, however many; ``UnknownItems`` naming every number not
        in the queue."""
        ...

    def message_ids(self, ids: Sequence[int]) -> dict[int, str]:
        """The Message-ID of each of ``ids`` that is in the queue, in one read however many: what a bulk
        enqueue reports for the mails it queued."""
        ...

    def get(self, item_id: int) -> QueueItem:
        """One item with recipients, attachment infos (no bytes) and its history in order;
        ``UnknownItems`` if there is none."""
        ...

    def attachments(self, item_id: int) -> list[Attachment]:
        """The attachment bytes exactly as queued, in order; empty for an unknown item."""
        ...

    def rendered(self, item_id: int) -> Rendered | None:
        """The item's mail as written once (at enqueue, or at its first claim), or None while it has none (queued
        by an older version, or its recipients changed since)."""
        ...

    def store_rendered(self, item_id: int, rendered: Rendered) -> None:
        """Keep ``rendered`` as the item's written mail, replacing any earlier one; nothing for an item deleted
        meanwhile."""
        ...

    def sendable_count(self, ids: Sequence[int] | None = None, since: float | None = None) -> int:
        """How many items :meth:`claim` would still hand out with the same ``ids`` (any number of them) and
        ``since``."""
        ...

    # --- plausibility results (computed by services.plausibility, stored so each PDF is read once) -------

    def unchecked(self, ids: Sequence[int] | None = None, limit: int = 100) -> list[int]:
        """Unsent items without a plausibility result, newest first; with ``ids`` (any number), only among
        those."""
        ...

    def record_checks(self, results: Iterable[tuple[int, bool, str]]) -> None:
        """Store (item id, ok, detail) results, replacing earlier ones; items deleted meanwhile are skipped.
        A deleted item takes its result with it."""
        ...

    def check_detail(self, item_id: int) -> str | None:
        """The stored detail of an item's plausibility result, or None while it is not checked."""
        ...

    def flagged(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` (any number) whose plausibility check failed, newest first."""
        ...

    # --- operator actions: each atomic; an unknown id raises UnknownItems and changes nothing -----------
    # Every action returns which items it changed and which it skipped with their status; each change is
    # written to the item's history.

    def hold(self, ids: Iterable[int]) -> ActionResult:
        """``pending``/``deferred`` -> ``held`` (history: ``held``)."""
        ...

    def release(self, ids: Iterable[int]) -> ActionResult:
        """``held`` -> ``pending`` (history: ``released``)."""
        ...

    def retry(self, ids: Iterable[int] | None = None) -> ActionResult:
        """``deferred``/``failed``/``uncertain`` -> ``pending`` at once, backoff cleared (history: ``retry``).
        ``None``: every such item."""
        ...

    def mark_sent(self, ids: Iterable[int]) -> ActionResult:
        """``uncertain`` -> ``sent``: the operator confirmed that it arrived (history: ``marked-sent``)."""
        ...

    def delete(self, ids: Iterable[int]) -> ActionResult:
        """Remove unsent items (never ``sent`` or ``sending`` ones) with their attachments, history and
        plausibility result."""
        ...

    def set_recipients(self, item_id: int, recipients: Sequence[Recipient]) -> None:
        """Replace an unsent item's recipients (already validated by the caller); search follows them and its
        rendered mail is dropped (written again when it is claimed). ``QueueError`` if its status no longer
        allows it (sent, sending)."""
        ...

    # --- sending ------------------------------------------------------------------------------------

    def claim(
        self,
        ids: Sequence[int] | None = None,
        lease: float = LEASE_SECONDS,
        since: float | None = None,
        exclude: Collection[int] = (),
    ) -> QueueItem | None:
        """Take the oldest (lowest id) sendable item for this handle, or None when there is none; never one of
        ``exclude`` (the items the caller's run has peeked at to send next, see :meth:`peek`).

        Sendable: ``pending``, or ``deferred`` whose backoff is over. With ``ids`` (any number; numbers not
        in the queue are passed over), only those items, and a ``deferred`` one even before its backoff is
        over (the operator asked for it). ``since`` is when the caller's run began, by this handle's
        :attr:`clock` (default: now): an item deferred since then (by this run or by another sender) is not
        handed out again, whatever its backoff, so that a run tries each mail once.

        Atomic with exactly one winner: of any number of concurrent claimants (threads, processes, hosts)
        exactly one gets a given item. Before it returns, the item is committed as ``sending`` with
        ``attempts`` one higher, a lease of ``lease`` seconds, its first attempt time and its Date header
        (both fixed at the first claim, kept on later ones). The returned item shows that state.
        """
        ...

    def peek(
        self, ids: Sequence[int] | None = None, since: float | None = None, exclude: Collection[int] = ()
    ) -> tuple[QueueItem, Rendered | None] | None:
        """The item :meth:`claim` with the same arguments would take now, without taking it, and its rendered mail
        (as :meth:`rendered`): a send run looks at the mail it will send next while the current one is on the wire.
        Nothing is written."""
        ...

    def claim_peeked(self, item: QueueItem, date: str, lease: float = LEASE_SECONDS) -> QueueItem | None:
        """Take ``item`` as :meth:`peek` returned it, its message written from its rendered mail with ``date`` as
        its Date header: as :meth:`claim` would, but only if it is still sendable and nothing about it changed
        since (no claim, the same recipients, a rendered mail); None if it did. An item without a Date header
        gets ``date``."""
        ...

    def record_sent(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        """``sending`` -> ``sent``: the server accepted the data. ``refused`` recipients (address -> reply) are
        recorded one by one.

        Like every ``record_*``: the status changes only from ``sending``, and the claim ends. The attempt and
        the refusals are written to the history even when the item is no longer ``sending`` (another process
        found the claim stale meanwhile): a late reply is what the operator needs to decide."""
        ...

    def record_deferred(self, item_id: int, reply: str, retry_at: datetime) -> None:
        """``sending`` -> ``deferred``: a temporary failure; claimable again from ``retry_at`` on."""
        ...

    def record_failed(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        """``sending`` -> ``failed``: a permanent failure, with the server's reply (code and text)."""
        ...

    def record_uncertain(self, item_id: int, reason: str) -> None:
        """``sending`` -> ``uncertain``: the data went out but no final reply came; never resent without an
        operator."""
        ...

    def unclaim(self, item_id: int, reason: str) -> None:
        """``sending`` -> ``pending``: give a claimed item back untouched (the run stopped before its data
        went out); this attempt does not count (``attempts`` one lower) and the history says why."""
        ...

    def record_held(self, item_id: int, reason: str) -> None:
        """``sending`` -> ``held``: hold a claimed item back before its data went out (it failed the
        plausibility check), with the reason as its error and in its history (``held``); this attempt does
        not count."""
        ...

    def recover_stale(self) -> list[int]:
        """Turn ``sending`` items whose claimant is gone into ``uncertain``; returns their ids.

        A claim is gone when its lease has run out by this handle's clock; an engine may also know it sooner
        (SQLite: the claiming process on this host has ended). This handle's own claims are never stale.
        """
        ...


Queue = QueueEngine
"""The name the rest of opos-tui types the queue by."""
