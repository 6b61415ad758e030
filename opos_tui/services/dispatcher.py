"""The send engine: claim -> send -> record, for the command line and the TUI alike.

Each connection is one worker: it claims an item (committed as ``sending`` before its data goes out), builds
the message from the queue's own copy, sends it over a reused transport session and records what the server
said. What happens after a failure depends on the error's category only, never on the transport in use:

- transient (4xx, connection lost before the data went out): ``deferred`` with the server's reply and a
  backoff like Postfix's (5 min, doubling, at most 1 h; ``failed`` after 5 days);
- permanent (5xx, every recipient refused): ``failed`` with the server's reply;
- configuration (login refused, TLS impossible) or interaction needed (an OAuth sign-in): the run stops, the
  claimed item goes back to ``pending`` and so does everything else: nothing is burnt through as failed.
  With an ``on_interaction`` callback the run pauses instead, and goes on if the callback says so;
- the data went out but no reply came (``DeliveryUncertain``, or the run was cancelled mid-mail):
  ``uncertain``, never resent by itself.

Progress is reported as small :class:`Progress` events through a plain callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from opos_tui.services.addresses import parse_mailbox
from opos_tui.services.compose import NoSender, build_message, default_sender
from opos_tui.services.errors import Category, InteractionNeeded, OposError
from opos_tui.services.home import Home
from opos_tui.services.queue import Queue, QueueItem, Status
from opos_tui.services.secrets import open_store
from opos_tui.services.transports.base import DeliveryUncertain, Envelope, Transport
from opos_tui.settings import RetrySettings, Settings

TransportFactory = Callable[[], Transport]
InteractionHandler = Callable[[InteractionNeeded], Awaitable[bool]]


class Outcome(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
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
    """Failed, deferred and uncertain in this run: everything that did not go."""
    left: int
    """Items still waiting to be sent by this run."""
    rate: float
    """Mails finished per second so far in this run."""
    eta: float | None
    """Seconds until ``left`` reaches 0 at the current rate; None before the first mail is done."""


@dataclass
class RunResult:
    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    not_sendable: list[int] = field(default_factory=list)
    """Requested ids that were not pending or deferred (held, sent, ...)."""
    stopped: OposError | None = None
    """Why the run stopped early (configuration fault, sign-in needed, server unreachable), else None."""

    @property
    def all_went(self) -> bool:
        return not (self.deferred or self.failed or self.uncertain or self.not_sendable or self.stopped)


def server_reply(exc: OposError) -> str:
    """The server's reply (code and text) if the error is one, else the error's own message."""
    reply = getattr(exc, "reply", None)
    return reply if isinstance(reply, str) and reply else exc.en


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
        self._result = RunResult()
        self._ids: list[int] | None = None
        self._started = 0.0
        self._counted = self._finished_at_count = 0
        self._counted_at = -1e9

    @classmethod
    def for_installation(
        cls,
        queue: Queue,
        home: Home,
        current: Settings,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_interaction: InteractionHandler | None = None,
    ) -> Dispatcher:
        """The dispatcher as this installation is configured: its transport, retry policy, connections, rate
        limit and sender. The command line's ``send`` and the queue screen both start here."""
        # aiosmtplib is imported only once something is sent.
        from opos_tui.services.transports.factory import build_transport

        store = open_store(home)
        return cls(
            queue,
            lambda: build_transport(current, store),
            retry=current.retry,
            connections=current.smtp.connections,
            max_per_minute=current.smtp.max_per_minute,
            on_progress=on_progress,
            on_interaction=on_interaction,
            sender=default_sender(current),
        )

    def request_stop(self) -> None:
        """Stop after the mails now on the wire (the TUI's Esc)."""
        self.stop_requested.set()

    async def run(self, ids: Sequence[int] | None = None) -> RunResult:
        """Send every sendable item (``ids=None``), or just the given ones. Returns what happened."""
        self._result = RunResult()
        self._started = time.monotonic()
        self._counted_at = -1e9
        self.queue.recover_stale()
        if ids is not None:
            self._ids = list(dict.fromkeys(ids))
            statuses = self.queue.statuses(self._ids)
            self._result.not_sendable = [i for i, s in statuses.items() if s not in (Status.PENDING, Status.DEFERRED)]
        else:
            self._ids = None
        if self._left() == 0:
            return self._result
        workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        try:
            done = await asyncio.gather(*workers, return_exceptions=True)
        except asyncio.CancelledError:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        for outcome in done:
            if isinstance(outcome, BaseException) and not isinstance(outcome, _Stop):
                raise outcome
        return self._result

    def _left(self) -> int:
        # Counting is a query over the whole queue: at most once a second, estimated in between.
        now = time.monotonic()
        finished = self._finished()
        if now - self._counted_at >= 1.0:
            self._counted, self._counted_at, self._finished_at_count = (
                self.queue.sendable_count(self._ids),
                now,
                finished,
            )
        return max(self._counted - (finished - self._finished_at_count), 0)

    def _finished(self) -> int:
        r = self._result
        return len(r.sent) + len(r.failed) + len(r.deferred) + len(r.uncertain)

    def _emit(self, outcome: Outcome, item: QueueItem | None, reply: str) -> None:
        if self.on_progress is None:
            return
        r = self._result
        finished = self._finished()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = finished / elapsed
        left = self._left()
        self.on_progress(
            Progress(
                outcome=outcome,
                item_id=item.id if item else None,
                recipient=item.to[0] if item and item.to else "",
                reply=reply,
                sent=len(r.sent),
                failed=finished - len(r.sent),
                left=left,
                rate=rate,
                eta=left / rate if rate > 0 else None,
            )
        )

    def _stop(self, error: OposError) -> None:
        if self._result.stopped is None:
            self._result.stopped = error
            self._emit(Outcome.STOPPED, None, error.en)
        self.stop_requested.set()
        raise _Stop

    async def _worker(self) -> None:
        transport: Transport | None = None
        try:
            while not self.stop_requested.is_set():
                await self.rate_limit.wait()
                if self.stop_requested.is_set():
                    break
                item = self.queue.claim(self._ids)
                if item is None:
                    break
                if not item.sender:
                    if not self.sender:
                        self.queue.unclaim(item.id, NoSender().en)
                        self._stop(NoSender())
                    item = replace(item, sender=self.sender)
                if transport is None:
                    transport = await self._connect(item)
                    if transport is None:
                        continue  # sign-in done: claim again
                self._emit(Outcome.SENDING, item, "")
                if not await self._send(transport, item):
                    await self._close(transport)
                    transport = None
        finally:
            if transport is not None:
                await self._close(transport)

    async def _connect(self, item: QueueItem) -> Transport | None:
        transport: Transport | None = None
        try:
            transport = self.transport_factory()
            await transport.connect()
        except InteractionNeeded as exc:
            self.queue.unclaim(item.id, exc.en)
            await self._close(transport)
            if self.on_interaction is not None and await self.on_interaction(exc):
                return None
            self._stop(exc)
        except OposError as exc:
            # Cannot connect or log in: not this mail's fault. Stop; everything stays pending.
            self.queue.unclaim(item.id, exc.en)
            await self._close(transport)
            self._stop(exc)
        except BaseException:
            self.queue.unclaim(item.id, "the run was interrupted before this mail was sent")
            await self._close(transport)
            raise
        return transport

    async def _close(self, transport: Transport | None) -> None:
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def _send(self, transport: Transport, item: QueueItem) -> bool:
        """Send one claimed item and record the outcome; False if the session should be renewed."""
        message = build_message(item, self.queue.attachments(item.id))
        envelope = Envelope(sender=parse_mailbox(item.sender).addr_spec, recipients=item.envelope_recipients)
        try:
            result = await transport.send(message, envelope)
        except DeliveryUncertain as exc:
            self.queue.record_uncertain(item.id, exc.en)
            self._result.uncertain.append(item.id)
            self._emit(Outcome.UNCERTAIN, item, exc.en)
            return False
        except OposError as exc:
            self._record_failure(item, exc)
            return False
        except asyncio.CancelledError:
            # Interrupted mid-mail (Ctrl+C, the TUI closing): the data may be out. Say so honestly.
            self.queue.record_uncertain(item.id, "interrupted while this mail was being sent: it may have arrived")
            raise
        except Exception as exc:
            self.queue.record_uncertain(item.id, f"unexpected error while sending: {exc!r}")
            self._result.uncertain.append(item.id)
            raise
        self.queue.record_sent(item.id, result.reply, result.refused)
        self._result.sent.append(item.id)
        self._emit(Outcome.SENT, item, result.reply)
        return True

    def _record_failure(self, item: QueueItem, exc: OposError) -> None:
        reply = server_reply(exc)
        refused = getattr(exc, "refused", None)
        refused = refused if isinstance(refused, dict) else None
        if exc.category is Category.TRANSIENT:
            first = item.first_attempt_at or datetime.now(UTC)
            if datetime.now(UTC) - first >= timedelta(days=self.retry.give_up_days):
                reply = f"{reply} (gave up after {self.retry.give_up_days} days)"
                self.queue.record_failed(item.id, reply, refused)
                self._result.failed.append(item.id)
                self._emit(Outcome.FAILED, item, reply)
                return
            retry_at = datetime.now(UTC) + backoff(self.retry, item.attempts)
            self.queue.record_deferred(item.id, reply, retry_at)
            if self._ids is not None:
                # A named deferred item is claimable at once: without this, one run would try it again and again.
                self._ids.remove(item.id)
            self._result.deferred.append(item.id)
            self._emit(Outcome.DEFERRED, item, reply)
        elif exc.category is Category.PERMANENT:
            self.queue.record_failed(item.id, reply, refused)
            self._result.failed.append(item.id)
            self._emit(Outcome.FAILED, item, reply)
        else:
            # Configuration or sign-in trouble surfacing mid-session: not this mail's fault.
            self.queue.unclaim(item.id, exc.en)
            self._stop(exc)
