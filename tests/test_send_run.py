"""The one send run every face drives (services/send_run.py), against real aiosmtpd servers: the pause for a
sign-in and its resumption, and the command line and the queue screen presenting the same run's events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opos_tui.app import OposApp
from opos_tui.services import settings
from opos_tui.services.dispatcher import Progress
from opos_tui.services.errors import InteractionNeeded
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.send_run import Checking, Finished, Paused, RunEvent, SendRun
from tests.conftest import Cli
from tests.servers.smtp import TOKEN, USER, SmtpServer, StartServer
from tests.test_queue_screen import configure, confirm_sending, letter, queue_screen, settle, statuses


class SignIn:
    """A token provider that needs a person once: it raises InteractionNeeded until :meth:`done` is called."""

    def __init__(self) -> None:
        self.signed_in = False
        self.refused = 0
        """Logins refused for want of a sign-in."""
        self.all_refused = asyncio.Event()
        self.expected = 1

    def done(self) -> None:
        self.signed_in = True

    async def token(self) -> str:
        if not self.signed_in:
            self.refused += 1
            if self.refused >= self.expected:
                self.all_refused.set()
            raise InteractionNeeded("sign in to send", "zum Senden anmelden")
        return TOKEN


def oauth_home(home: Home, server: SmtpServer, connections: int = 1) -> None:
    home.ensure()
    current = server.settings(
        auth__method="oauth-dialog", auth__profile=USER, smtp__connections=connections, sender__name="Buchhaltung"
    )
    settings.save(home, current)


async def test_a_run_pauses_once_for_a_sign_in_and_resumes_where_it_stopped(
    home: Home, smtp_server: StartServer
) -> None:
    server = smtp_server("starttls")
    oauth_home(home, server, connections=3)
    ids = [letter(home, n) for n in (1, 2, 3, 4)]
    sign_in = SignIn()
    sign_in.expected = 3  # every connection is refused before the person answers
    asked: list[str] = []
    events: list[RunEvent] = []

    async def ask(needed: InteractionNeeded) -> bool:
        asked.append(needed.en)
        await sign_in.all_refused.wait()
        sign_in.done()
        return True

    with open_queue(home) as queue:
        run = SendRun(queue, home, on_event=events.append, on_interaction=ask, token_provider=sign_in.token)
        result = await run.run()

    assert asked == ["sign in to send"]  # one question for three connections
    assert sign_in.refused == 3
    assert result.all_went and sorted(result.sent) == ids
    assert sorted(r.rcpt_tos[0] for r in server.received) == [f"kunde{n}@example.test" for n in (1, 2, 3, 4)]
    assert {r.user for r in server.received} == {USER}
    kinds = [type(e).__name__ for e in events if not isinstance(e, Progress)]
    assert kinds == ["Started", "Paused", "Resumed", "Finished"]
    paused = next(i for i, e in enumerate(events) if isinstance(e, Paused))
    assert not any(isinstance(e, Progress) and e.outcome == "sent" for e in events[:paused])
    with open_queue(home) as queue:
        # The mails held when the sign-in was needed went back to pending untouched: one try each.
        assert [queue.get(i).attempts for i in ids] == [1, 1, 1, 1]


@pytest.mark.parametrize("how", ["declined", "stopped-while-asking", "no-one-to-ask"])
async def test_a_run_without_a_sign_in_stops_and_leaves_everything_pending(
    home: Home, smtp_server: StartServer, how: str
) -> None:
    server = smtp_server("starttls")
    oauth_home(home, server)
    ids = [letter(home, n) for n in (1, 2)]
    sign_in = SignIn()
    events: list[RunEvent] = []
    never = asyncio.Event()

    async def ask(needed: InteractionNeeded) -> bool:
        if how == "declined":
            return False
        await never.wait()  # the person does not answer; the operator stops the run instead
        return True

    def on_event(event: RunEvent) -> None:
        events.append(event)
        if isinstance(event, Paused) and how == "stopped-while-asking":
            run.stop()  # the screen's Esc while its sign-in question is open

    with open_queue(home) as queue:
        run = SendRun(
            queue,
            home,
            on_event=on_event,
            on_interaction=None if how == "no-one-to-ask" else ask,
            token_provider=sign_in.token,
        )
        result = await run.run()

    assert isinstance(result.stopped, InteractionNeeded) and result.sent == [] and result.failed == []
    assert result.left == 2
    assert server.received == []
    assert statuses(home) == dict.fromkeys(ids, Status.PENDING)
    kinds = [type(e).__name__ for e in events if not isinstance(e, Progress)]
    assert kinds == (["Started", "Finished"] if how == "no-one-to-ask" else ["Started", "Paused", "Finished"])
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.stop_requested is (how == "stopped-while-asking")


async def test_stopped_before_it_starts_a_run_sends_nothing(home: Home, smtp_server: StartServer) -> None:
    server = smtp_server("plain")
    configure(home, server)
    item = letter(home, 1)
    with open_queue(home) as queue:
        run = SendRun(queue, home)
        run.stop()
        result = await run.run()
    assert result.sent == [] and result.left == 1
    assert statuses(home) == {item: Status.PENDING} and server.received == []


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RunEvent]:
    """Every event any SendRun emits from now on, whichever face made it."""
    seen: list[RunEvent] = []
    emit: Callable[[SendRun, RunEvent], None] = SendRun.emit

    def spy(self: SendRun, event: RunEvent) -> None:
        seen.append(event)
        emit(self, event)

    monkeypatch.setattr(SendRun, "emit", spy)
    return seen


def comparable(events: list[RunEvent]) -> list[tuple[Any, ...]]:
    """What a face is told, without the plan's check (only the screen asks for a plan)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, Progress):
            out.append(("progress", e.outcome, e.item_id, e.recipient, e.reply, e.sent, e.failed, e.held, e.left))
        elif isinstance(e, Finished):
            r = e.result
            out.append(("finished", r.sent, r.failed, r.deferred, r.uncertain, r.held, r.left, e.error))
        elif not isinstance(e, Checking):
            out.append((type(e).__name__,))
    return out


def test_the_command_line_and_the_queue_screen_present_the_same_run(
    cli: Cli, home: Home, tmp_path: Path, smtp_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server("plain")
    screen_home = Home(tmp_path / "screen-home")
    for each in (home, screen_home):
        configure(each, server)
        letter(each, 1)
        letter(each, 2, to="unknown@example.test")  # 550 at RCPT: failed
    events = recorded(monkeypatch)

    result = cli("send", "--json")
    assert result.code == 1, result.err
    by_cli = comparable(events)
    events.clear()

    async def send_all_on_the_screen() -> None:
        app = OposApp(screen_home)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = queue_screen(app)
            await pilot.press("S")
            await confirm_sending(pilot, mails=2, customers=2)
            await settle(pilot)
            assert not screen.sending

    asyncio.run(send_all_on_the_screen())
    by_screen = comparable(events)

    assert by_cli == by_screen
    assert [e[0] for e in by_cli] == ["Started", *["progress"] * 4, "finished"]
    assert by_cli[-1][1:3] == ([1], [2])  # sent, failed
    assert statuses(home) == statuses(screen_home) == {1: Status.SENT, 2: Status.FAILED}
    assert {r.rcpt_tos[0] for r in server.received} == {"kunde1@example.test"}
