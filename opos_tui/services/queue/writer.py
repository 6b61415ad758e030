"""The one writer of a send run: every queue write of the run's connections is made on a thread of its own.

The connections of a run hand their writes (a mail's result and the claim of their next one, a hold, ...) to
one :class:`Writer`. It makes them on its own queue handle, in a thread, so that the other connections go on
sending while a commit is flushed to disk; the writes that arrive while a commit is under way are committed
together in the next one (:meth:`~.engine.QueueEngine.together`: one flush for all of them), and so are those
that arrive while a batch is being made, before its commit. A caller of
:meth:`Writer.do` gets its result once its write is committed; a caller of :meth:`Writer.submit` (a claim) gets
it as soon as it is made, with a future for the commit, so that it may do what needs no commit meanwhile (an
SMTP envelope, the message data) and wait for it before what does (the end of the data).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

from opos_tui.services.queue.engine import QueueEngine

T = TypeVar("T")

Work = Callable[[QueueEngine], T]
"""Queue writes (and the reads that go with them) to make on the writer's handle."""


@dataclass
class _Request(Generic[T]):
    """One piece of work handed to the writer, and where its result goes."""

    work: Work[T]
    future: asyncio.Future[T]
    abandoned: Callable[[T], None] | None
    committed: asyncio.Future[None] | None = None
    """For :meth:`Writer.submit`: done once the work is committed, or with why it was not."""
    early: bool = True
    """For :meth:`Writer.submit`: its result is told as soon as the work is done, before the commit."""


class Writer:
    """One run's writer over ``queue`` (it opens a handle of its own with ``queue.another()``). Use it from one
    event loop; :meth:`close` it when the run is over."""

    def __init__(self, queue: QueueEngine) -> None:
        self._queue = queue.another()
        self._loop = asyncio.get_running_loop()
        self._requests: SimpleQueue[_Request[Any] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="opos-tui queue writer", daemon=True)
        self._thread.start()

    async def do(self, work: Work[T], abandoned: Callable[[T], None] | None = None) -> T:
        """``work`` done and committed, with what it returned (or raised). If the caller is cancelled meanwhile,
        the work is still done, and ``abandoned`` gets its result (on the event loop): e.g. to give back a claim
        nobody will send."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._requests.put(_Request(work, future, abandoned))
        return await future

    def submit(
        self, work: Work[T], abandoned: Callable[[T], None] | None = None, *, early: bool = True
    ) -> tuple[asyncio.Future[T], asyncio.Future[None]]:
        """Hand over ``work`` without waiting: a future for what it returns, told as soon as it is done, before it
        is committed, and one that is done once it is committed (or holds why not). Cancel the first to abandon
        the work (``abandoned`` then gets its result, as for :meth:`do`). ``early=False``: the caller needs the
        result only with the commit, so both are told at once (each telling waits for the event loop's thread)."""
        future: asyncio.Future[T] = self._loop.create_future()
        committed: asyncio.Future[None] = self._loop.create_future()
        committed.add_done_callback(_seen)  # nobody may wait for it (a mail held back after its claim)
        self._requests.put(_Request(work, future, abandoned, committed, early))
        return future, committed

    async def close(self) -> None:
        """Finish what was asked, then end the thread and let go of the handle."""
        self._requests.put(None)
        await asyncio.to_thread(self._thread.join)  # the results delivered meanwhile are handed out first
        self._queue.close()

    def _serve(self) -> None:
        while (first := self._requests.get()) is not None:
            batch = [first]
            outcomes: list[tuple[bool, Any]] = []
            failed: Exception | None = None
            try:
                with self._queue.together():
                    # What arrives while the batch is worked on joins it before its commit.
                    while len(outcomes) < len(batch) or self._more(batch):
                        request = batch[len(outcomes)]
                        try:
                            outcome = (True, request.work(self._queue))
                        except Exception as exc:  # that request's own failure: the others are committed
                            outcome = (False, exc)
                        outcomes.append(outcome)
                    # The claims are told before the commit (each awaits its commit apart): one wake-up of the
                    # event loop for all of them, as each wake-up waits for the loop's thread to let go.
                    early = [
                        (r, o) for r, o in zip(batch, outcomes, strict=True) if r.committed is not None and r.early
                    ]
                    if early:
                        self._loop.call_soon_threadsafe(_deliver_all, early)
            except Exception as exc:  # the commit failed: nothing of the batch happened
                failed = exc
                outcomes = [(False, exc)] * len(batch)
            self._loop.call_soon_threadsafe(_finish_all, list(zip(batch, outcomes, strict=True)), failed)

    def _more(self, batch: list[_Request[Any]]) -> bool:
        """Add to ``batch`` what was asked meanwhile; whether there was any (the end of the run ends it)."""
        added = False
        while not self._requests.empty():
            if (more := self._requests.get()) is None:
                self._requests.put(None)  # end after this batch
                break
            batch.append(more)
            added = True
        return added


def _deliver_all(delivered: list[tuple[_Request[Any], tuple[bool, Any]]]) -> None:
    for request, (ok, value) in delivered:
        _deliver(request, ok, value)


def _finish_all(batch: list[tuple[_Request[Any], tuple[bool, Any]]], failed: Exception | None) -> None:
    """A batch is committed (``failed`` None) or not: each write's caller gets its result, each claim its commit."""
    for request, (ok, value) in batch:
        if request.committed is None or not request.future.done():  # told only now, or it could not even begin
            _deliver(request, ok, value)
        if request.committed is not None:
            _settle(request.committed, failed)


def _deliver(request: _Request[Any], ok: bool, value: Any) -> None:
    if request.future.cancelled():
        if ok and request.abandoned is not None:
            request.abandoned(value)
    elif ok:
        request.future.set_result(value)
    else:
        request.future.set_exception(value)


def _settle(committed: asyncio.Future[None], failed: Exception | None) -> None:
    if committed.cancelled():
        return
    if failed is None:
        committed.set_result(None)
    else:
        committed.set_exception(failed)


def _seen(committed: asyncio.Future[None]) -> None:
    if not committed.cancelled():
        committed.exception()  # looked at: no warning that it was never retrieved
