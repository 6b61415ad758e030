"""The demo: its own mail server (real aiosmtpd, STARTTLS, login), its home, its queue, sent end to end."""

from __future__ import annotations

import asyncio
import io
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from textual.pilot import Pilot

from opos_tui.demo_app import DemoApp, ReceivedScreen
from opos_tui.services import demo, settings
from opos_tui.services.errors import ConfigError
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.secrets import PASSWORD, FileSecretStore
from opos_tui.services.send_run import SendRun
from tests.conftest import Cli
from tests.test_queue_screen import answer, checked, queue_screen, settle, until

DOCUMENTS = [letter.document for letter in demo.LETTERS]
SWAPPED = next(n for n, letter in enumerate(demo.LETTERS) if letter.pdf_of is not None)


def send_all(home: Home) -> None:
    with open_queue(home) as queue:
        asyncio.run(SendRun(queue, home).run())


def by_document(home: Home) -> dict[str, tuple[Status, str | None]]:
    with open_queue(home) as queue:
        return {r.document_number: (r.status, r.error) for r in queue.page(limit=100)}


def pdf_text(mail: EmailMessage) -> str:
    (attachment,) = list(mail.iter_attachments())
    data = attachment.get_content()
    assert isinstance(data, bytes)
    return PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_the_demo_sends_everything_and_its_server_received_what_it_accepted(home: Home) -> None:
    with demo.start(home) as running:
        assert running.queued == len(demo.LETTERS) == 12
        current = settings.load(home)
        assert (current.smtp.host, current.smtp.port, current.smtp.security) == (
            "127.0.0.1",
            running.server.port,
            "StartTls",
        )
        assert current.auth.method == "password"
        send_all(home)

    states = by_document(home)
    document_to = {letter.customer.email: letter.document for letter in demo.LETTERS}
    deferred, failed = document_to[demo.GREYLISTED], document_to[demo.UNKNOWN_USER]
    assert states.pop(deferred) == (Status.DEFERRED, demo.REFUSALS[demo.GREYLISTED])
    assert states.pop(failed) == (Status.FAILED, demo.REFUSALS[demo.UNKNOWN_USER])
    swapped = demo.LETTERS[SWAPPED].document
    status, why = states.pop(swapped)  # the plausibility check holds the swapped PDF back: it never went out
    assert status is Status.HELD and why is not None and "plausibility check" in why
    assert set(states.values()) == {(Status.SENT, None)}

    events = list(demo.received(home))
    refused = {e.recipients[0]: e.reply for e in events if not e.accepted}
    assert refused == {
        demo.GREYLISTED: demo.REFUSALS[demo.GREYLISTED],
        demo.UNKNOWN_USER: demo.REFUSALS[demo.UNKNOWN_USER],
    }
    accepted = [e for e in events if e.accepted]
    assert len(accepted) == 9
    assert all(e.tls and e.user == demo.USER for e in accepted)
    files = sorted(demo.received_dir(home).glob("*.eml"))
    assert [f.name for f in files] == [e.file for e in accepted]
    mails = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert {m["Subject"].split()[-1] for m in mails} == set(states)
    for mail in mails:
        assert isinstance(mail, EmailMessage)
        document = str(mail["Subject"]).split()[-1]
        letter = demo.LETTERS[DOCUMENTS.index(document)]
        assert mail["Delivered-To"] == letter.customer.email
        text = pdf_text(mail)
        assert letter.pdf_of is None and letter.document in text and letter.customer.number in text

    # The password is in this home's secret file, nowhere else.
    password = FileSecretStore(home.secrets_file).get(PASSWORD)
    assert password
    assert password not in home.config_file.read_text()
    assert all(password not in f.read_text(errors="replace") for f in demo.demo_dir(home).rglob("*") if f.is_file())


def test_the_swapped_pdf_is_flagged_by_the_plausibility_check(home: Home) -> None:
    from opos_tui.services import plausibility

    with demo.start(home), open_queue(home) as queue:
        plausibility.check_unchecked(queue)
        flagged = [queue.get(i).document_number for i in queue.flagged(queue.ids())]
    assert flagged == [demo.LETTERS[SWAPPED].document]


def test_a_kept_demo_home_starts_again_without_queueing_twice(home: Home) -> None:
    with demo.start(home) as first:
        first_port = first.server.port
    with demo.start(home) as second:
        assert second.queued == 0
        assert settings.load(home).smtp.port == second.server.port != first_port
        send_all(home)  # new certificate, new password: still trusted and accepted
    with open_queue(home) as queue:
        assert queue.count() == 12
        assert queue.counts()[Status.SENT] == 9  # the swapped PDF is held back


def test_the_demo_refuses_a_folder_that_holds_a_real_installation(home: Home, cli: Cli) -> None:
    settings.set_value(home, "smtp.host", "mail.firma.example")
    before = home.config_file.read_bytes()
    with pytest.raises(ConfigError, match="not a demo home"):
        demo.start(home)
    result = cli("demo", "--home", str(home.root))
    assert result.code == 2
    assert "not a demo home" in result.err
    assert home.config_file.read_bytes() == before
    assert not demo.demo_dir(home).exists()


def test_demo_received_lists_what_a_kept_demo_received(home: Home, cli: Cli, tmp_path: Path) -> None:
    with demo.start(home):
        send_all(home)
    result = cli("demo", "--home", str(home.root), "--received")
    assert result.code == 0, result.err
    assert "accepted 9 mails and refused 2" in result.out
    assert demo.REFUSALS[demo.UNKNOWN_USER] in result.out
    assert str(demo.received_dir(home) / "0001.eml") in result.out
    assert cli("demo", "--received").code == 2
    assert cli("demo", "--home", str(tmp_path / "nothing"), "--received").code == 2


async def test_sending_in_the_demo_tui_and_viewing_what_arrived(home: Home) -> None:
    with demo.start(home):
        app = DemoApp(home)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = queue_screen(app)
            await pilot.press("S")
            await until(pilot, lambda: isinstance(app.screen, ReceivedScreen) or app.screen is not screen)
            await answer(pilot, "all")  # the swapped PDF is flagged: send it too, as the test above does
            await until(pilot, lambda: not screen.sending, seconds=20)
            await settle(pilot)
            await pilot.press("v")
            received = app.screen
            assert isinstance(received, ReceivedScreen)
            await until(pilot, lambda: len(received.events) == 12)
            assert "accepted 10 mails and refused 2" in str(received.query_one("#received-summary").render())
            await pilot.press("escape")
            assert app.screen is screen
    assert by_document(home)[demo.LETTERS[SWAPPED].document][0] is Status.SENT


def test_the_demo_command_runs_the_tui_on_a_throw_away_home(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``opos-tui demo`` end to end, the TUI driven headless: it sends, and the throw-away home is gone after."""
    monkeypatch.setenv("OPOS_TUI_SECRETS", "keyring")  # the demo must switch to its own file store
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    homes: list[Home] = []

    async def drive(app: DemoApp) -> None:
        homes.append(app.home)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = queue_screen(app)
            await pilot.press("S")
            await until(pilot, lambda: app.screen is not screen)
            await answer(pilot, "skip")
            await until(pilot, lambda: not screen.sending, seconds=20)
            await settle(pilot)
            await pilot.press("q")

    monkeypatch.setattr(DemoApp, "run", lambda self, *a, **k: asyncio.run(drive(self)))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    result = cli("demo")
    assert result.code == 0, result.err
    assert "accepted 9 mails and refused 2" in result.out
    (home,) = homes
    assert home.root.is_relative_to(tmp_path)
    assert not home.root.exists()


def test_demo_snapshot(snap_compare: Any, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a newcomer sees first: the queue of demo letters, the swapped PDF flagged, the hint."""
    monkeypatch.setattr(DemoApp, "HINT_SECONDS", 3600.0)
    running = demo.start(home)

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)

    try:
        assert snap_compare(DemoApp(home), terminal_size=(80, 24), run_before=run_before)
    finally:
        running.close()
