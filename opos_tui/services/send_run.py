"""One send run, headless: what ``opos-tui send``, ``opos-tui run`` and the queue screen all drive.

A face makes a :class:`SendRun` over a queue connection and presents its events; it computes nothing of its
own. A run has two steps:

- :meth:`SendRun.plan` (the queue screen, before it asks the operator): which of the chosen items can be
  sent, the plausibility check of those not checked yet (:class:`Checking` events), which are flagged and to
  how many customers they go;
- :meth:`SendRun.run`: :class:`Started` once the settings are read, then claim -> check -> send -> record
  through the :class:`~.dispatcher.Dispatcher`, one :class:`~.dispatcher.Progress` event per mail claimed or
  finished, with the run's counts, rate and ETA; then :class:`Finished`.

:meth:`SendRun.stop` may be called from any thread (the screen's Esc, a signal handler): the run ends after
the mails on the wire, and everything else stays as it was.

When a transport needs a person to act (an OAuth token provider raises ``InteractionNeeded``), the run
pauses: it says :class:`Paused`, asks the face's ``on_interaction`` handler (a sign-in dialog), and if that
says go on, it says :class:`Resumed` and goes on where it stopped; the mail it held went back to pending and
is claimed again. One question at a time, however many connections hit the sign-in. Without a handler, or
when the handler says no or the run is stopped meanwhile, the run stops with everything left pending.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opos_tui.i18n import tr
from opos_tui.services import plausibility
from opos_tui.services.compose import default_sender
from opos_tui.services.dispatcher import Dispatcher, InteractionHandler, Progress, RunResult
from opos_tui.services.errors import InteractionNeeded, OposError
from opos_tui.services.home import Home
from opos_tui.services.queue import Queue, Status
from opos_tui.services.secrets import open_store
from opos_tui.services.settings import Settings, load
from opos_tui.services.transports.base import TokenProvider, Transport
from opos_tui.services.transports.registry import CONNECTIONS, build_transport


@dataclass(frozen=True)
class Checking:
    """The plausibility check before sending: ``done`` of ``total`` unchecked items checked."""

    done: int
    total: int


@dataclass(frozen=True)
class Started:
    """The run read its settings and starts sending."""

    may_ask: bool
    """The mail program (Simple MAPI, Outlook) may hold each mail for a security prompt in its own window."""


@dataclass(frozen=True)
class Paused:
    """The run waits for a person to act (sign in); the face's handler is being asked."""

    needed: InteractionNeeded


@dataclass(frozen=True)
class Resumed:
    """The person acted: the run goes on where it stopped."""


@dataclass(frozen=True)
class Finished:
    """The run ended. ``result`` says what it did and why it stopped early, if it did."""

    result: RunResult
    stop_requested: bool
    """Someone asked it to stop (:meth:`SendRun.stop`)."""
    error: OposError | None = None
    """The run could not go on for a reason that is no mail's (the queue or the settings unreadable);
    :meth:`SendRun.run` raises it after this event."""


RunEvent = Checking | Started | Progress | Paused | Resumed | Finished


def progress_text(p: Progress, sep: str) -> str:
    """The run's counts in one line, for a progress bar or a terminal: sent, failed, (held,) left, and the
    rate and ETA once the run has measured them."""
    en = [f"sent {p.sent:,}", f"failed {p.failed:,}"]
    de = [f"gesendet {p.sent:,}", f"fehlgeschl. {p.failed:,}"]
    if p.held:
        en.append(f"held {p.held:,}")
        de.append(f"angehalten {p.held:,}")
    en.append(f"left {p.left:,}")
    de.append(f"offen {p.left:,}")
    if p.rate is not None:  # none until measured over a few mails
        eta = f" ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}" if p.eta is not None else ""
        en.append(f"{p.rate * 60:.0f}/min{eta}")
        de.append(f"{p.rate * 60:.0f}/min{eta}")
    return tr(sep.join(en), sep.join(de))


@dataclass(frozen=True)
class Plan:
    """What a run of the chosen items would send, for the face to confirm."""

    ids: list[int]
    """The chosen items that can be sent (pending or deferred), in the order chosen; or every pending one."""
    flagged: list[int]
    """Those of them that fail the plausibility check."""
    customers: int
    """How many customers the mails go to."""


class SendRun:
    """One send run over ``queue`` for the installation in ``home``.

    ``settings``: the settings to send with; read from ``home`` when the run starts if not given (in the
    thread that runs it, never on a screen's). ``on_event`` gets every :data:`RunEvent`, in the thread that
    runs the step. ``on_interaction`` asks a person to act when a sign-in is needed; ``token_provider``
    supplies the transports' OAuth 2.0 access tokens (by default the installation's sign-in,
    ``services.signin``).
    """

    def __init__(
        self,
        queue: Queue,
        home: Home,
        *,
        settings: Settings | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        on_interaction: InteractionHandler | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.queue = queue
        self.home = home
        self.settings = settings
        self.on_event = on_event
        self.on_interaction = on_interaction
        self.token_provider = token_provider
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def result(self) -> RunResult:
        """What the run did so far; complete once :meth:`run` returned or was interrupted."""
        return self._dispatcher.result if self._dispatcher is not None else RunResult()

    def emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def stop(self) -> None:
        """End the run after the mails on the wire; from any thread. Before :meth:`run`, it sends nothing."""
        self._stop.set()
        loop, dispatcher = self._loop, self._dispatcher
        if loop is not None and dispatcher is not None:
            loop.call_soon_threadsafe(dispatcher.request_stop)

    def plan(self, ids: Sequence[int] | None = None) -> Plan:
        """Which of ``ids`` (None: every pending item) can be sent, checked for plausibility first
        (:class:`Checking` events; a stop ends the check early)."""
        if ids is None:
            wanted = self.queue.ids(Status.PENDING)
        else:
            sendable = set(self.queue.ids([Status.PENDING, Status.DEFERRED]))
            wanted = [i for i in ids if i in sendable]
        plausibility.check_unchecked(
            self.queue,
            wanted,
            keep_going=lambda: not self._stop.is_set(),
            on_batch=lambda done, total: self.emit(Checking(done, total)),
        )
        return Plan(wanted, self.queue.flagged(wanted), self.queue.customers(wanted))

    async def run(self, ids: Sequence[int] | None = None, skip_check: Iterable[int] = ()) -> RunResult:
        """Send every sendable item (``ids=None``), or the given ones, each at most once. ``skip_check``:
        items the operator confirmed although they fail the plausibility check; unknown ones are refused
        (``UnknownItems``) before anything is sent."""
        confirmed = list(skip_check)
        try:
            if confirmed:
                self.queue.statuses(confirmed)
            current = self.settings if self.settings is not None else load(self.home)

            def transport() -> Transport:
                # The secret store only when a mail is to go: finding the system keyring costs more than a
                # run with nothing due does.
                effective, tokens = current, self.token_provider
                if tokens is None and current.uses_oauth():
                    from opos_tui.services import signin  # requests and msal only where OAuth is used

                    effective, tokens = signin.for_transport(current, self.home)  # OAuth: SignInRequired if none
                return build_transport(effective, open_store(self.home), token_provider=tokens)

            self._dispatcher = Dispatcher(
                self.queue,
                transport,
                retry=current.retry,
                connections=current.smtp.connections,
                max_per_minute=current.smtp.max_per_minute,
                on_progress=self.emit,
                on_interaction=self._ask if self.on_interaction is not None else None,
                sender=default_sender(current),
            )
            self._loop = asyncio.get_running_loop()
            if self._stop.is_set():
                self._dispatcher.request_stop()
            self.emit(Started(may_ask=CONNECTIONS[current.connection].may_ask))
            result = await self._dispatcher.run(ids, skip_check=confirmed)
        except OposError as exc:
            self.emit(Finished(self.result, self.stop_requested, exc))
            raise
        finally:
            self._loop = None
        self.emit(Finished(result, self.stop_requested))
        return result

    async def _ask(self, needed: InteractionNeeded) -> bool:
        """Pause for the face's handler; True to go on. A stop meanwhile ends the question."""
        assert self.on_interaction is not None and self._dispatcher is not None
        self.emit(Paused(needed))
        asked = asyncio.ensure_future(self.on_interaction(needed))
        stopped = asyncio.ensure_future(self._dispatcher.stop_requested.wait())
        done, _ = await asyncio.wait({asked, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (asked, stopped):
            task.cancel()
        await asyncio.gather(asked, stopped, return_exceptions=True)
        go_on = asked in done and asked.result() and not self._stop.is_set()
        if go_on:
            self.emit(Resumed())
        return go_on
