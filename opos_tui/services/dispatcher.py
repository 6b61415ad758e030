"""The send engine of a run (``services.send_run``, which every face drives): claim -> send -> record.

Each connection is one worker: it claims an item (committed as ``sending`` before its data is complete; its
envelope and data may go while the claim is committed, the end of the data only after), takes
the mail as it was written once when it was queued (written now and kept, for an item that has none yet), puts
in its Date and Message-ID, sends it over a reused transport session and records what the server
said. Each claim also looks at the mail the connection will send next: a transport that can (SMTP with
PIPELINING) announces that one with the end of the current one's data, and it is claimed, if it is still as
it was, in the transaction that records the current one, while its data already goes (if another sender took it
meanwhile, the session is dropped, and the run announces no more). What happens after a failure depends on the
error's category only, never on the transport in use:

- transient (4xx, connection lost before the data went out): ``deferred`` with the server's reply and a
  backoff like Postfix's (5 min, doubling, at most 1 h; ``failed`` after 5 days);
- permanent (5xx, every recipient refused): ``failed`` with the server's reply;
- configuration (login refused, TLS impossible) or interaction needed (an OAuth sign-in): the run stops, the
  claimed item goes back to ``pending`` and so does everything else: nothing is burnt through as failed.
  With an ``on_interaction`` callback the run pauses for a sign-in instead (one question at a time, however
  many connections need it), and goes on if the callback says so;
- uncertain (the data went out but no reply came), or the run was cancelled mid-mail: ``uncertain``, never
  resent by itself.

Before anything goes out, each claimed item must pass the plausibility check (``services.plausibility``): one
that fails it is ``held`` with the reason, unless the operator confirmed it (``skip_check``). An item that
cannot even be written as a mail is ``failed`` with the reason: nothing went out, so it is never
``uncertain``, and the run goes on with the others.

A run tries each mail once: one deferred by this run (or by another sender meanwhile) waits for its backoff
and the next run, even if the run was asked for it by number.

Progress is reported as small :class:`Progress` events through a plain callback.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

from opos_tui.services import plausibility
from opos_tui.services.addresses import parse_mailbox
from opos_tui.services.compose import NoSender, render, wire_message
from opos_tui.services.errors import Category, InteractionNeeded, OposError
from opos_tui.services.queue import Queue, QueueError, QueueItem, Rendered, Status
from opos_tui.services.queue.headers import date_header
from opos_tui.services.queue.writer import Writer
from opos_tui.services.run_result import RunResult as RunResult
from opos_tui.services.settings import RetrySettings
from opos_tui.services.transports.base import Envelope, SendResult, Transport, Upcoming

TransportFactory = Callable[[], Transport]
InteractionHandler = Callable[[InteractionNeeded], Awaitable[bool]]
Record = Callable[[Queue], None]
"""How a mail's result is written to the queue: with the claim of its connection's next mail, in one
transaction (alone when there is none)."""

MEASURED_AFTER = 3
"""Mails a run must have finished before it states a rate and an ETA: one or two are no measure."""


class Outcome(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    HELD = "held"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Progress:
    """One step of a run, for a progress bar and a transcript."""

    outcome: Outcome
    """What just happened: ``sending`` (an item was claimed), its result, or ``stopped`` (the run ended early)."""
    item_id: int | None
    recipient: str
    """The item's first To address, for "sending #12 to kunde@example.com"."""
    reply: str
    """The server's reply or the reason, e.g. ``250 2.0.0 Ok`` or ``451 4.3.0 try again later``."""
    sent: int
    failed: int
    """Failed, deferred and uncertain in this run: everything that did not go, except ``held``."""
    held: int
    """Held back by the plausibility check in this run."""
    left: int
    """Items still waiting to be sent by this run, the ones on the wire included: never negative."""
    rate: float | None
    """Mails finished per second so far in this run, never more than ``max_per_minute`` allows; None until
    :data:`MEASURED_AFTER` mails are finished."""
    eta: float | None
    """Seconds until ``left`` reaches 0 at that rate; None while the rate is."""


def backoff(retry: RetrySettings, attempts: int) -> timedelta:
    """Wait before the next try after ``attempts`` tries: ``backoff_minutes`` doubling up to the maximum."""
    minutes = retry.backoff_minutes * 2 ** max(attempts - 1, 0)
    return timedelta(minutes=min(minutes, max(retry.max_backoff_minutes, retry.backoff_minutes)))


class RateLimit:
    """At most ``per_minute`` mails per minute over all connections, evenly spaced; 0 = unlimited."""

    def __init__(self, per_minute: int) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


class _Stop(Exception):
    """Internal: end every worker of the run."""


class _Taken(Exception):
    """Internal: a mail announced to the transport could not be claimed (another sender has it, it changed, or
    the run stops): the end of its data must not go."""


class Dispatcher:
    """Sends queued items through transports made by ``transport_factory`` (one per connection)."""

    def __init__(
        self,
        queue: Queue,
        transport_factory: TransportFactory,
        *,
        retry: RetrySettings | None = None,
        connections: int = 1,
        max_per_minute: int = 0,
        on_progress: Callable[[Progress], None] | None = None,
        on_interaction: InteractionHandler | None = None,
        sender: str = "",
    ) -> None:
        self.queue = queue
        self.sender = sender
        """From for items queued before a sender was configured (``compose.default_sender``)."""
        self.transport_factory = transport_factory
        self.retry = retry or RetrySettings()
        self.connections = max(1, connections)
        self.rate_limit = RateLimit(max_per_minute)
        self.on_progress = on_progress
        self.on_interaction = on_interaction
        self.stop_requested = asyncio.Event()
        self._asking = asyncio.Lock()
        self._signed_in = 0
        """Sign-ins done in this run: a connection that waited for another's question goes on with it."""
        self.result = RunResult()
        """What the current (or last) run did so far; complete when :meth:`run` returns or is interrupted."""
        self._wanted: list[int] | None = None
        """The named items this run may still claim, in order (None: every sendable item)."""
        self._writer: Writer | None = None
        self._skip_check: frozenset[int] = frozenset()
        self._since = 0.0
        self._started = 0.0
        self._on_hand: set[int] = set()
        self._looking_ahead = True
        """Whether claims look at the next mail (no mail announced was taken by another sender in this run)."""
        self._asked_ahead = False
        """Whether a transport of this run asked for the mail after the one it sent (it can announce it)."""
        self._oldest_claims = 0
        """Claims of the oldest sendable mail in this run (every connection's first claim is one)."""
        self._peeked: set[int] = set()
        """Items a connection looked at to send next (:class:`_Next`): no other connection of the run claims them.
        Changed by the writer while it claims (on its thread, where it has one), and by the event loop when one is
        given up."""
        self._counted = self._finished_at_count = 0
        self._counted_at = -1e9

    def request_stop(self) -> None:
        """Stop after the mails now on the wire (the TUI's Esc)."""
        self.stop_requested.set()

    async def run(self, ids: Sequence[int] | None = None, skip_check: Iterable[int] = ()) -> RunResult:
        """Send every sendable item (``ids=None``), or just the given ones, oldest first, each at most once.
        ``skip_check``: items the operator confirmed although they fail the plausibility check."""
        self.result = RunResult()
        self._since = self.queue.clock()  # deferrals after this are this run's
        self._started = time.monotonic()
        self._counted_at = -1e9
        self._on_hand = set()
        self._peeked = set()
        self._looking_ahead = True
        self._asked_ahead = False
        self._oldest_claims = 0
        self._skip_check = frozenset(skip_check)
        self.queue.recover_stale()
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            statuses = self.queue.statuses(wanted)
            sendable = (Status.PENDING, Status.DEFERRED)
            self.result.not_sendable = [i for i in wanted if statuses[i] not in sendable]
            self._wanted = sorted(i for i in wanted if statuses[i] in sendable)
        else:
            self._wanted = None
        if self._left() == 0:
            return self.result
        self._writer = Writer(self.queue)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        try:
            done = await asyncio.gather(*workers, return_exceptions=True)
        except asyncio.CancelledError:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._writer.close()
            self.result.left = self._count_left()
            raise
        await self._writer.close()
        for outcome in done:
            if isinstance(outcome, BaseException) and not isinstance(outcome, _Stop):
                raise outcome
        self.result.left = self._count_left()
        return self.result

    async def _write(self, work: Record) -> None:
        assert self._writer is not None
        await self._writer.do(work)

    async def _claim(self, finished: _Finished | None, following: _Next | None) -> _Claimed | None:
        """Record ``finished`` (the connection's last mail) and claim its next item, in one transaction: the one it
        looked at to send next (``following``) if that is still as it was, else the oldest sendable one. The item
        with its rendered mail, the commit to wait for before its data is complete, and the item it will send
        after this one if it may send that one as it is now; None when there is none."""
        request, committed = self._request(finished, following, only_following=False)
        return await self._claimed(request, committed, finished, following)

    def _request(
        self, finished: _Finished | None, following: _Next | None, *, only_following: bool
    ) -> tuple[asyncio.Future[_Claim], asyncio.Future[None]]:
        """Hand the writer what :meth:`_claim` does, without waiting for it; ``only_following``: claim
        ``following`` or nothing (None if it changed or was taken meanwhile)."""
        assert self._writer is not None
        wanted, since, peeked = self._wanted, self._since, self._peeked

        def claim(queue: Queue) -> _Claim:
            if finished is not None:
                finished.record(queue)
            if following is not None:
                peeked.discard(following.item.id)
            if self.stop_requested.is_set():  # asked to stop meanwhile: claim nothing more
                return None
            item = None if following is None else queue.claim_peeked(following.item, following.date)
            if item is not None:
                assert following is not None
                rendered: Rendered | None = following.rendered
            elif only_following:
                return None
            else:
                self._oldest_claims += 1
                item = queue.claim(wanted, since=since, exclude=frozenset(peeked))
                if item is None:
                    return None
                rendered = queue.rendered(item.id)
            return item, rendered, self._look_ahead(queue, wanted, since)

        def abandoned(claimed: _Claim) -> None:
            self._finished(finished)
            if claimed is not None:  # the connection was cancelled meanwhile: nothing of it went out
                self.queue.unclaim(claimed[0].id, "the run was interrupted before this mail was sent")
                self._give_up(claimed[2])

        # A mail announced ahead needs its claim only with the commit (the end of its data waits for both).
        return self._writer.submit(claim, abandoned, early=not only_following)

    async def _claimed(
        self,
        request: asyncio.Future[_Claim],
        committed: asyncio.Future[None],
        finished: _Finished | None,
        following: _Next | None,
    ) -> _Claimed | None:
        """What a claim handed to the writer (:meth:`_request`) claimed, once it is made (its commit may still be
        under way, with ``finished``'s record, which is counted now); None if nothing."""
        claimed = await request
        if claimed is None:
            await committed
        self._finished(finished)  # recorded; its commit (with this claim's) is under way while the envelope goes
        if claimed is None:
            return None
        item, rendered, after = claimed
        self._on_hand.add(item.id)
        if self._wanted is not None:  # the ones before it were passed over (sent, held, taken by another)
            self._wanted = self._wanted[bisect.bisect_right(self._wanted, item.id) :]
        upcoming = following.upcoming if following is not None and following.item.id == item.id else None
        return _Claimed(item, rendered, committed, upcoming, after)

    def _look_ahead(self, queue: Queue, wanted: list[int] | None, since: float) -> _Next | None:
        """In the writer, while it claims: the item a connection will send after the one it claims, if it
        may go as it is (it did not fail the plausibility check, unless confirmed, and is written as a mail
        already); None if there is none or it must go the long way (it is claimed then as any other)."""
        if self.rate_limit.interval or not self._looking_ahead:
            return None  # its envelope would wait at the server for the next slot; another sender is at work
        if self._oldest_claims < self.connections:
            return None  # a connection yet to claim its first mail might find none left but the ones looked at
        if self.result.sent and not self._asked_ahead:
            return None  # the transports announce nothing (no PIPELINING): looking would be for nothing
        peeked = queue.peek(wanted, since=since, exclude=frozenset(self._peeked))
        if peeked is None:
            return None
        item, rendered = peeked
        if rendered is None or (item.plausible is False and item.id not in self._skip_check):
            return None
        if not (item.sender or self.sender):
            return None
        self._peeked.add(item.id)
        return _Next(item, rendered, item.date or date_header(queue.clock()))

    def _upcoming(self, following: _Next | None) -> Upcoming | None:
        """The mail a connection's transport may announce after the current one: ``following`` as it would go
        out, once it passed the plausibility check (checked now if it never was), unless the run is stopping."""
        self._asked_ahead = True
        if following is None or self.stop_requested.is_set():
            return None
        if following.upcoming is None:
            item = following.item
            try:
                if not item.plausible and item.id not in self._skip_check:
                    if not plausibility.verdict(self.queue, item.id).ok:
                        return None  # held back when it is claimed the long way
                    following.item = item = replace(item, plausible=True)
                sender = parse_mailbox(item.sender or self.sender).addr_spec
                message = wire_message(item, following.rendered, self.sender, date=following.date)
            except Exception:  # it fails when it is claimed the long way, which says why
                return None
            following.upcoming = Upcoming(message, Envelope(sender=sender, recipients=item.envelope_recipients))
        return following.upcoming

    def _give_up(self, following: _Next | None) -> None:
        """A connection will not send the item it looked at to send next: another may claim it."""
        if following is not None:
            self._peeked.discard(following.item.id)
            self._want_again(following.item.id)

    def _finished(self, finished: _Finished | None) -> None:
        if finished is not None:
            self._done(finished.item, finished.outcome, finished.reply, finished.bucket)

    def _count_left(self) -> int:
        """Items this run would still hand out (a query over the queue)."""
        return self.queue.sendable_count(self._wanted, since=self._since)

    def _left(self) -> int:
        # Counting is a query over the whole queue: at most once a second, estimated in between.
        now = time.monotonic()
        finished = self.result.finished
        if now - self._counted_at >= 1.0:
            self._counted = self._count_left() + len(self._on_hand)
            self._counted_at, self._finished_at_count = now, finished
        return max(self._counted - (finished - self._finished_at_count), 0)

    def _rate(self) -> float | None:
        """Mails per second, once measured, and never more than the rate limit lets through."""
        finished = self.result.finished
        if finished < MEASURED_AFTER:
            return None
        rate = finished / max(time.monotonic() - self._started, 1e-9)
        return min(rate, 1 / self.rate_limit.interval) if self.rate_limit.interval else rate

    def _emit(self, outcome: Outcome, item: QueueItem | None, reply: str) -> None:
        if self.on_progress is None:
            return
        r = self.result
        left = self._left()
        rate = self._rate()
        self.on_progress(
            Progress(
                outcome=outcome,
                item_id=item.id if item else None,
                recipient=item.to[0] if item and item.to else "",
                reply=reply,
                sent=len(r.sent),
                failed=len(r.deferred) + len(r.failed) + len(r.uncertain),
                held=len(r.held),
                left=left,
                rate=rate,
                eta=left / rate if rate else None,
            )
        )

    def _done(self, item: QueueItem, outcome: Outcome, reply: str, bucket: list[int]) -> None:
        """An item is finished for this run (already recorded in the queue): count it and say so."""
        self._on_hand.discard(item.id)
        bucket.append(item.id)
        self._emit(outcome, item, reply)

    async def _unclaim(self, item: QueueItem, reason: str) -> None:
        """Give a claimed item back untouched: this run claims it again (after a sign-in) or leaves it pending."""
        await self._write(lambda queue: queue.unclaim(item.id, reason))
        self._given_back(item)

    def _given_back(self, item: QueueItem) -> None:
        self._on_hand.discard(item.id)
        self._want_again(item.id)

    def _want_again(self, item_id: int) -> None:
        """A named item that was passed over is one this run may claim again."""
        if self._wanted is not None and item_id not in self._wanted:
            bisect.insort(self._wanted, item_id)

    def _stop(self, error: OposError) -> NoReturn:
        if self.result.stopped is None:
            self.result.stopped = error
            self._emit(Outcome.STOPPED, None, error.en)
        self.stop_requested.set()
        raise _Stop

    async def _worker(self) -> None:
        transport: Transport | None = None
        session = 0
        finished: _Finished | None = None
        following: _Next | None = None
        try:
            while not self.stop_requested.is_set():
                await self.rate_limit.wait()
                if self.stop_requested.is_set():
                    break
                if transport is not None and following is not None and following.upcoming is not None:
                    # Announced with the end of the last mail's data: it goes while it is claimed.
                    finished, keep, following = await self._send_following(transport, finished, following, session)
                    if not keep:
                        await self._close(transport)
                        transport = None
                    continue
                ready = await self._next_ready(finished, following)
                finished = following = None
                if ready is None:
                    break
                claimed, message, envelope = ready
                item, following = claimed.item, claimed.following
                if transport is None:
                    session = self._signed_in  # the sign-ins this session's login may know of
                    transport = await self._connect(item, session)
                    if transport is None:
                        continue  # sign-in done: claim again
                self._emit(Outcome.SENDING, item, "")
                finished, keep = await self._send(transport, claimed, message, envelope, session)
                if not keep:
                    await self._close(transport)
                    transport = None
        finally:
            self._give_up(following)
            if finished is not None:  # no next mail to record it with: recorded alone
                finished.record(self.queue)
                self._finished(finished)
            if transport is not None:
                await self._close(transport)

    async def _next_ready(
        self, finished: _Finished | None, following: _Next | None
    ) -> tuple[_Claimed, bytes, Envelope] | None:
        """Record ``finished`` and claim items (``following`` first, if it is still as it was) until one is ready
        to go out: it passes the plausibility check (or the operator confirmed it) and is written as a mail. The
        others are held or failed on the way. None: no more."""
        while (claimed := await self._claim(finished, following)) is not None:
            finished = following = None
            item, rendered = claimed.item, claimed.rendered
            if self.stop_requested.is_set():  # asked to stop while it was being claimed: it stays as it was
                self._give_up(claimed.following)
                await self._unclaim(item, "the run was stopped before this mail was sent")
                return None
            if claimed.upcoming is not None:  # looked at before: it passed, and its mail is written
                upcoming = claimed.upcoming
                return claimed, upcoming.message, upcoming.envelope
            if not item.sender and not self.sender:
                self._give_up(claimed.following)
                await self._unclaim(item, NoSender().en)
                self._stop(NoSender())
            if item.id not in self._skip_check and await self._held_back(item):
                following = claimed.following
                continue
            attachments = self.queue.attachments(item.id) if rendered is None else []
            try:
                if rendered is None:  # queued by an older version, or its recipients changed: written once now
                    rendered = render(item, attachments)
                message = wire_message(item, rendered, self.sender)
                sender = parse_mailbox(item.sender or self.sender).addr_spec
            except Exception as exc:  # whatever the renderer raises: nothing went out, so this one failed
                why = exc.en if isinstance(exc, OposError) else str(exc)
                reason = f"nothing was sent: {why}"
                await self._write(_failed(item.id, reason))
                self._done(item, Outcome.FAILED, reason, self.result.failed)
                following = claimed.following
                continue
            if attachments:
                await self._write(_kept(item.id, rendered))
            return claimed, message, Envelope(sender=sender, recipients=item.envelope_recipients)
        return None

    async def _held_back(self, item: QueueItem) -> bool:
        """Hold the item if it fails the plausibility check; True if it was held."""
        if item.plausible:  # checked and passed before (its claim read that): nothing more to read
            return False
        verdict = plausibility.verdict(self.queue, item.id)
        if verdict.ok:
            return False
        reason = "held back by the plausibility check: " + "; ".join(f.texts()[0] for f in verdict.findings)
        await self._write(lambda queue: queue.record_held(item.id, reason))
        self._done(item, Outcome.HELD, reason, self.result.held)
        return True

    async def _connect(self, item: QueueItem, session: int) -> Transport | None:
        transport: Transport | None = None
        try:
            transport = self.transport_factory()
            await transport.connect()
        except InteractionNeeded as exc:
            await self._unclaim(item, exc.en)
            await self._close(transport)
            await self._interaction(exc, session)
            return None
        except OposError as exc:
            # Cannot connect or log in: not this mail's fault. Stop; everything stays pending.
            await self._unclaim(item, exc.en)
            await self._close(transport)
            self._stop(exc)
        except BaseException:
            self.queue.unclaim(item.id, "the run was interrupted before this mail was sent")
            self._given_back(item)
            await self._close(transport)
            raise
        return transport

    async def _interaction(self, needed: InteractionNeeded, session: int) -> None:
        """Pause for a sign-in (``on_interaction``), one question at a time however many connections need it;
        stop the run if there is no one to ask or the answer is no. The item at hand is pending again.
        ``session``: the sign-ins done when the failed login began."""
        async with self._asking:
            if self.stop_requested.is_set():
                self._stop(needed)
            if self._signed_in != session:
                return  # another connection's sign-in was done meanwhile: try again with it
            if self.on_interaction is None or not await self.on_interaction(needed):
                self._stop(needed)
            self._signed_in += 1

    async def _close(self, transport: Transport | None) -> None:
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def _send(
        self, transport: Transport, claimed: _Claimed, message: bytes, envelope: Envelope, session: int
    ) -> tuple[_Finished | None, bool]:
        """Send one claimed item, the end of its data once its claim is committed; its result (recorded with the
        connection's next claim), and False if the session should be renewed."""
        try:
            result = await transport.send(
                message, envelope, ready=claimed.committed, then=lambda: self._upcoming(claimed.following)
            )
        except BaseException as exc:
            return await self._not_sent(claimed.item, exc, session)
        return self._sent(claimed.item, result), True

    async def _send_following(
        self, transport: Transport, finished: _Finished | None, following: _Next, session: int
    ) -> tuple[_Finished | None, bool, _Next | None]:
        """Send ``following``, which ``transport`` announced with the end of the last mail's data, while it is
        claimed (with ``finished``'s record): its data goes at once, the end of it once the claim is committed.
        Its result, False if the session should be renewed, and the item to send after it. If it was taken or
        changed meanwhile (or the run is stopping), nothing of it is complete, and the session is renewed."""
        assert following.upcoming is not None
        upcoming = following.upcoming
        request, committed = self._request(finished, following, only_following=True)
        request.add_done_callback(lambda made: self._claim_made(made, finished))

        def then() -> Upcoming | None:
            claimed = request.result()  # done: the end of the data waited for it
            return self._upcoming(claimed[2] if claimed is not None else None)

        try:
            result = await transport.send(
                upcoming.message, upcoming.envelope, ready=_Ready(request, committed), then=then
            )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and not request.done():
                request.cancel()  # given back once the writer is done with it
            claimed = await self._claimed(request, committed, None, following)
            if claimed is None:  # taken meanwhile, or the run stops: it is not this run's to record
                if not isinstance(exc, Exception):
                    raise
                # Another sender works on the same mails: each mail it takes from under an announcement costs a
                # session, so this run announces none from now on.
                self._looking_ahead = False
                return None, False, None
            outcome, keep = await self._not_sent(claimed.item, exc, session)
            return outcome, keep, claimed.following
        claimed = await self._claimed(request, committed, None, following)
        assert claimed is not None  # its data was complete, so its claim was made
        return self._sent(claimed.item, result), True, claimed.following

    def _claim_made(self, made: asyncio.Future[_Claim], finished: _Finished | None) -> None:
        """An announced mail's claim is made and committed, with ``finished``'s record: that one is counted, and the
        announced one is sending (its data is on the way already)."""
        if made.cancelled() or made.exception() is not None:
            return  # given back (``finished`` counted there), or the queue failed and the run with it
        self._finished(finished)
        claimed = made.result()
        if claimed is not None:
            self._emit(Outcome.SENDING, claimed[0], "")

    def _sent(self, item: QueueItem, result: SendResult) -> _Finished:
        return _Finished(
            item,
            Outcome.SENT,
            result.reply,
            self.result.sent,
            lambda q: q.record_sent(item.id, result.reply, result.refused),
        )

    async def _not_sent(self, item: QueueItem, exc: BaseException, session: int) -> tuple[_Finished | None, bool]:
        """What became of a claimed item whose transport raised ``exc``: its result (recorded with the connection's
        next claim), False: the session is renewed. Raises ``exc`` again where the run cannot go on."""
        if isinstance(exc, QueueError):  # its claim could not be committed: nothing of it is complete
            self._on_hand.discard(item.id)
            raise exc
        if isinstance(exc, InteractionNeeded):  # a sign-in expired mid-session: nothing went out
            await self._unclaim(item, exc.en)
            await self._interaction(exc, session)
            return None, False
        if isinstance(exc, OposError):
            return await self._failure(item, exc), False
        if isinstance(exc, asyncio.CancelledError):
            # Interrupted mid-mail (Ctrl+C, SIGTERM, the TUI closing): the data may be out. Say so honestly.
            reason = "interrupted while this mail was being sent: it may have arrived"
        elif isinstance(exc, Exception):
            reason = f"unexpected error while sending: {exc!r}"
        else:
            raise exc
        self.queue.record_uncertain(item.id, reason)
        self._on_hand.discard(item.id)
        self.result.uncertain.append(item.id)
        raise exc

    async def _failure(self, item: QueueItem, exc: OposError) -> _Finished:
        """A failed mail's result by the error's category; a configuration fault stops the run."""
        reply = exc.reply or exc.en  # the server's reply (code and text) if the error is one
        refused = dict(exc.refused) or None
        r = self.result
        if exc.category is Category.TRANSIENT:
            first = item.first_attempt_at or datetime.now(UTC)
            if datetime.now(UTC) - first >= timedelta(days=self.retry.give_up_days):
                given_up = f"{reply} (gave up after {self.retry.give_up_days} days)"
                return _Finished(
                    item, Outcome.FAILED, given_up, r.failed, lambda q: q.record_failed(item.id, given_up, refused)
                )
            retry_at = datetime.now(UTC) + backoff(self.retry, item.attempts)
            return _Finished(
                item, Outcome.DEFERRED, reply, r.deferred, lambda q: q.record_deferred(item.id, reply, retry_at)
            )
        if exc.category is Category.PERMANENT:
            return _Finished(item, Outcome.FAILED, reply, r.failed, lambda q: q.record_failed(item.id, reply, refused))
        if exc.category is Category.UNCERTAIN:
            return _Finished(item, Outcome.UNCERTAIN, reply, r.uncertain, lambda q: q.record_uncertain(item.id, reply))
        # Configuration trouble surfacing mid-session: not this mail's fault.
        await self._unclaim(item, exc.en)
        self._stop(exc)


_Claim = tuple[QueueItem, Rendered | None, "_Next | None"] | None
"""What a claim made by the writer returns: the item, its rendered mail, the item to send after it."""


@dataclass
class _Next:
    """An item a connection looked at to send after its current one, as it was then: claimed with
    ``Queue.claim_peeked`` when its turn comes, if nothing about it changed."""

    item: QueueItem
    """As it was looked at."""
    rendered: Rendered
    date: str
    """The Date its message is written with: the item's own, or the one its first claim will give it."""
    upcoming: Upcoming | None = None
    """Its message and envelope, once written (on the event loop): the transport may announce them."""


@dataclass(frozen=True)
class _Claimed:
    """A mail claimed for one connection, with what is known of it and of the one after it."""

    item: QueueItem
    rendered: Rendered | None
    committed: asyncio.Future[None]
    """Done once the claim is committed: the end of the item's data waits for it (its envelope need not)."""
    upcoming: Upcoming | None
    """Its message and envelope as announced to the transport, when it was looked at before."""
    following: _Next | None
    """The item to send after it, if it may go as it is."""


@dataclass(frozen=True)
class _Ready:
    """Awaited before the end of an announced mail's data: its claim was made (else :class:`_Taken`) and is
    committed. Nothing is started unless it is awaited (the envelope may fail first)."""

    request: asyncio.Future[_Claim]
    committed: asyncio.Future[None]

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        if await asyncio.shield(self.request) is None:
            raise _Taken
        await self.committed


@dataclass(frozen=True)
class _Finished:
    """A mail's result: recorded in one transaction with the claim of its connection's next mail (alone when
    there is none), and counted once that is committed."""

    item: QueueItem
    outcome: Outcome
    reply: str
    bucket: list[int]
    record: Record


def _failed(item_id: int, reason: str) -> Record:
    return lambda queue: queue.record_failed(item_id, reason)


def _kept(item_id: int, rendered: Rendered) -> Record:
    return lambda queue: queue.store_rendered(item_id, rendered)
