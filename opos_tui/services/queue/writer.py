"""The one writer of a send run: every queue write of the run's connections is made by one :class:`Writer`.

The connections of a run hand their writes (a mail's result and the claim of their next one, a hold, ...) to
one writer. It makes them on its own queue handle, and commits what arrived together in one transaction
(:meth:`~.engine.QueueEngine.together`: one flush for all of them). Where it makes them depends on the queue:

- A queue on this machine (SQLite, :attr:`~.engine.QueueEngine.local`): on the run's event loop, between its
  mails. The writes asked within a few turns of the loop are made and committed together. There they
  need nobody else's turn: on a thread of their own, each statement waited for the interpreter's lock while the
  event loop ran Python, and runs took longer for it (docs/PERFORMANCE.md).
- A queue on a server (PostgreSQL): on a thread of its own, so that the connections go on sending while a
  statement goes to the server and back. The writes that arrive while a batch is being made join it before
  its commit, and those that arrive during its commit go into the next.

A caller of :meth:`Writer.do` gets its result once its write is committed; a caller of :meth:`Writer.submit` (a
claim) gets it with a future for the commit, so that it may do what needs no commit meanwhile (an SMTP envelope,
the message data) and wait for it before what does (the end of the data). On a thread it gets the result as
soon as the write is made, before the commit.
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


TURNS_BEFORE_A_BATCH = 3
"""On the loop, a batch is made in the third turn of the loop after its first write was asked. A connection's
task takes a few turns from the server's reply to its next write: the connections whose replies came in at about
the same time hand theirs in meanwhile, and share the commit. Against a batch made in the next turn, a run of
four connections took 5% less time; a later turn gained no more (docs/PERFORMANCE.md)."""


class Writer:
    """One run's writer over ``queue`` (it opens a handle of its own with ``queue.another()``). Use it from one
    event loop; :meth:`close` it when the run is over. ``on_loop``: make the writes on the event loop (default:
    where the queue is :attr:`~.engine.QueueEngine.local`), else on a thread of their own."""

    def __init__(self, queue: QueueEngine, *, on_loop: bool | None = None) -> None:
        self._queue = queue.another()
        self._loop = asyncio.get_running_loop()
        self._waiting: list[_Request[Any]] = []
        """On the loop: what was asked since the last batch, made in the next one."""
        self._requests: SimpleQueue[_Request[Any] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        if not (queue.local if on_loop is None else on_loop):
            self._thread = threading.Thread(target=self._serve, name="opos-tui queue writer", daemon=True)
            self._thread.start()

    async def do(self, work: Work[T], abandoned: Callable[[T], None] | None = None) -> T:
        """``work`` done and committed, with what it returned (or raised). If the caller is cancelled meanwhile,
        the work is still done, and ``abandoned`` gets its result (on the event loop): e.g. to give back a claim
        nobody will send."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._ask(_Request(work, future, abandoned))
        return await future

    def submit(
        self, work: Work[T], abandoned: Callable[[T], None] | None = None, *, early: bool = True
    ) -> tuple[asyncio.Future[T], asyncio.Future[None]]:
        """Hand over ``work`` without waiting: a future for what it returns, and one that is done once it is
        committed (or holds why not). On a thread the first is told as soon as the work is done, before the
        commit. Cancel the first to abandon the work (``abandoned`` then gets its result, as for :meth:`do`).
        ``early=False``: the caller needs the result only with the commit, so both are told at once (each telling
        from the thread waits for the event loop's thread)."""
        future: asyncio.Future[T] = self._loop.create_future()
        committed: asyncio.Future[None] = self._loop.create_future()
        committed.add_done_callback(_seen)  # nobody may wait for it (a mail held back after its claim)
        self._ask(_Request(work, future, abandoned, committed, early))
        return future, committed

    async def close(self) -> None:
        """Finish what was asked, then end the thread (if any) and let go of the handle."""
        if self._thread is None:
            self._make_waiting()
        else:
            self._requests.put(None)
            await asyncio.to_thread(self._thread.join)  # the results delivered meanwhile are handed out first
        self._queue.close()

    def _ask(self, request: _Request[Any]) -> None:
        if self._thread is not None:
            self._requests.put(request)
            return
        if not self._waiting:  # the first since the last batch: a batch is made a few turns from now
            self._loop.call_soon(self._in_turns, TURNS_BEFORE_A_BATCH - 1)
        self._waiting.append(request)

    def _in_turns(self, turns: int) -> None:
        """Make the batch ``turns`` turns of the loop after this one."""
        if turns:
            self._loop.call_soon(self._in_turns, turns - 1)
        else:
            self._make_waiting()

    def _make_waiting(self) -> None:
        """On the loop: make and commit what was asked since the last batch, and tell each caller."""
        batch, self._waiting = self._waiting, []
        if batch:
            _finish_all(*self._make(batch))

    def _serve(self) -> None:
        """On the thread: make batches of what arrives, until :meth:`close`."""
        while (first := self._requests.get()) is not None:
            outcomes, failed = self._make([first], self._more, self._tell_early)
            self._loop.call_soon_threadsafe(_finish_all, outcomes, failed)

    def _make(
        self,
        batch: list[_Request[Any]],
        more: Callable[[list[_Request[Any]]], bool] = lambda batch: False,
        tell_early: Callable[[list[_Told]], None] | None = None,
    ) -> tuple[list[_Told], Exception | None]:
        """Make ``batch`` (with what ``more`` adds to it meanwhile) in one transaction, and commit it: each write
        with what it returned or raised, and why the commit failed (None if it did not). ``tell_early`` gets the
        claims' results before the commit."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._queue.together():
                while len(outcomes) < len(batch) or more(batch):
                    request = batch[len(outcomes)]
                    try:
                        outcome = (True, request.work(self._queue))
                    except Exception as exc:  # that request's own failure: the others are committed
                        outcome = (False, exc)
                    outcomes.append(outcome)
                if tell_early is not None:
                    early = [
                        (r, o) for r, o in zip(batch, outcomes, strict=True) if r.committed is not None and r.early
                    ]
                    if early:
                        tell_early(early)
        except Exception as exc:  # the commit failed: nothing of the batch happened
            return [(r, (False, exc)) for r in batch], exc
        return list(zip(batch, outcomes, strict=True)), None

    def _tell_early(self, early: list[_Told]) -> None:
        # One wake-up of the event loop for all of them, as each wake-up waits for the loop's thread to let go.
        self._loop.call_soon_threadsafe(_deliver_all, early)

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


_Told = tuple[_Request[Any], tuple[bool, Any]]
"""A write and what became of it: (True, what it returned) or (False, what it raised)."""


def _deliver_all(delivered: list[_Told]) -> None:
    for request, (ok, value) in delivered:
        _deliver(request, ok, value)


def _finish_all(batch: list[_Told], failed: Exception | None) -> None:
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
