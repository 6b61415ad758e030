"""What every queue engine does the same way: the operator actions and the outcomes of a send, each a named case
of the few writes an engine implements in its own SQL (``_transition``, ``_finish``, ``_unclaim``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

from opos_tui.services.queue.engine import StatusFilter
from opos_tui.services.queue.model import (
    HOLDABLE,
    RELEASABLE,
    RETRYABLE,
    ActionResult,
    NewItem,
    QueueItem,
    Status,
)


class EngineOperations(ABC):
    """The engine-independent part of :class:`~opos_tui.services.queue.engine.QueueEngine`."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def enqueue_many(self, items: Iterable[NewItem]) -> list[int]: ...

    @abstractmethod
    def get(self, item_id: int) -> QueueItem: ...

    @abstractmethod
    def ids(self, status: StatusFilter = None, search: str = "") -> list[int]: ...

    @abstractmethod
    def _transition(
        self, ids: Iterable[int], allowed: frozenset[Status], target: Status, note: str, clear_backoff: bool = False
    ) -> ActionResult:
        """Move those of ``ids`` whose status is in ``allowed`` to ``target`` (one transaction), noting it in their
        history; ``UnknownItems`` for ids not in the queue."""

    @abstractmethod
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
        """End a claim (only from ``sending``) with this status, and record the attempt's outcome."""

    @abstractmethod
    def _unclaim(self, item_id: int, status: Status, outcome: str, reason: str, *, error: str | None) -> None:
        """Give a claim back (only from ``sending``) without counting the attempt."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def enqueue(self, item: NewItem) -> QueueItem:
        (item_id,) = self.enqueue_many([item])
        return self.get(item_id)

    def hold(self, ids: Iterable[int]) -> ActionResult:
        return self._transition(ids, HOLDABLE, Status.HELD, "held")

    def release(self, ids: Iterable[int]) -> ActionResult:
        return self._transition(ids, RELEASABLE, Status.PENDING, "released")

    def retry(self, ids: Iterable[int] | None = None) -> ActionResult:
        if ids is None:
            ids = self.ids(RETRYABLE)
        return self._transition(ids, RETRYABLE, Status.PENDING, "retry", clear_backoff=True)

    def record_sent(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        self._finish(item_id, Status.SENT, "sent", reply, error=None, sent=True, refused=refused)

    def record_deferred(self, item_id: int, reply: str, retry_at: datetime) -> None:
        self._finish(item_id, Status.DEFERRED, "deferred", reply, error=reply, next_attempt_at=retry_at.timestamp())

    def record_failed(self, item_id: int, reply: str, refused: dict[str, str] | None = None) -> None:
        self._finish(item_id, Status.FAILED, "failed", reply, error=reply, refused=refused)

    def record_uncertain(self, item_id: int, reason: str) -> None:
        self._finish(item_id, Status.UNCERTAIN, "uncertain", reason, error=reason)

    def unclaim(self, item_id: int, reason: str) -> None:
        self._unclaim(item_id, Status.PENDING, "not-sent", reason, error=None)

    def record_held(self, item_id: int, reason: str) -> None:
        self._unclaim(item_id, Status.HELD, "held", reason, error=reason)
