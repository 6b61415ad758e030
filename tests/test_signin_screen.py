"""The TUI's sign-in modal (auth.method = oauth-dialog) against the local HTTPS authority and the XOAUTH2
mail server: the device code shown inline, the run going on after the sign-in, Esc cancelling with nothing
failed, the connection test signing in first, and the modal at 80x24."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from opos_tui.app import OposApp
from opos_tui.screens.connection_test import ConnectionTestPanel
from opos_tui.screens.signin import SignInScreen
from opos_tui.services.home import Home
from opos_tui.services.queue import Status
from opos_tui.services.signin import DeviceCode, Token
from tests.clock import HandClock
from tests.servers.oauth import ACCOUNT, Authority
from tests.servers.smtp import SmtpServer
from tests.test_oauth import configure, queue_mails, statuses
from tests.test_oauth_google import browser_ends_on, google
from tests.test_queue_screen import answer, queue_screen, text_of, until

__all__ = ["google"]  # the fixture: Google set up against the local authority


async def code_shown(pilot: Pilot[None]) -> str:
    """Wait for the modal and its device code; the code as shown."""
    await until(pilot, lambda: isinstance(pilot.app.screen, SignInScreen), 30)
    screen = pilot.app.screen
    await until(pilot, lambda: text_of(screen, "#signin-code") != "…", 30)
    return text_of(screen, "#signin-code")


async def test_send_run_pauses_for_the_sign_in_and_goes_on(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    ids = queue_mails(home, tmp_path, 2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await until(pilot, lambda: not isinstance(app.screen, type(screen)), 30)
        await answer(pilot, "all")
        user_code = await code_shown(pilot)
        modal = app.screen
        assert text_of(modal, "#signin-address") == f"{oauth_authority.url}/devicelogin"
        assert "Time left: 14:" in text_of(modal, "#signin-left")
        assert oauth_smtp.received == []  # the run waits for the person
        oauth_authority.approve(user_code)
        await until(pilot, lambda: app.screen is screen, 30)
        await until(pilot, lambda: not screen.sending, 30)
        assert "Done: sent 2 · failed 0" in text_of(screen, "#progress-label")
    assert statuses(home, ids) == {Status.SENT}
    assert len(oauth_smtp.received) == 2
    assert oauth_smtp.logins == [ACCOUNT]


async def test_esc_cancels_the_sign_in_and_nothing_failed(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    ids = queue_mails(home, tmp_path, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await code_shown(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen and not screen.sending, 30)
        assert "sign-in required" in text_of(screen, "#progress-label")
        assert "failed 0" in text_of(screen, "#progress-label")
    assert statuses(home, ids) == {Status.PENDING}
    assert oauth_smtp.received == []


async def test_oauth_mode_never_shows_the_modal(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth")
    ids = queue_mails(home, tmp_path, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await until(pilot, lambda: not screen.sending, 30)
        assert "sign-in required" in text_of(screen, "#progress-label")
        assert not isinstance(app.screen, SignInScreen)
    assert statuses(home, ids) == {Status.PENDING}
    assert oauth_authority.device_codes_requested == 0


async def test_connection_test_signs_in_first_then_tests(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        await pilot.press("ctrl+t")
        oauth_authority.approve(await code_shown(pilot))
        await until(pilot, lambda: app.screen is form, 30)
        panel = form.query_one(ConnectionTestPanel)
        await until(pilot, lambda: panel.result is not None, 30)
        assert panel.result is not None and panel.result.ok
    assert oauth_smtp.logins == [ACCOUNT]


class FixedSignIn:
    """A sign-in that hands out one fixed code and never completes: the modal's looks, for the snapshot."""

    provider = "microsoft"

    def __init__(self, clock: HandClock) -> None:
        self.clock = clock
        self.waiting = threading.Event()

    def start(self) -> DeviceCode:
        return DeviceCode("https://microsoft.com/devicelogin", "K7QX2M9PL", self.clock.now + 900, 1, {})

    def poll(self, code: DeviceCode) -> Token | None:
        return None


def test_sign_in_modal_snapshot(snap_compare: Any, home: Home) -> None:
    clock = HandClock()
    signin: Any = FixedSignIn(HandClock())
    clock.advance(75)  # 1:15 after the code came: 13:45 left

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(SignInScreen(signin, lambda _ok: None, clock))
        await until(pilot, lambda: text_of(pilot.app.screen, "#signin-code") != "…")
        await pilot.pause()

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


async def test_settings_form_shows_who_is_signed_in_and_signs_in_and_out(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        await pilot.pause()  # who is signed in is looked up in a worker
        assert text_of(form, "#oauth-signed-in") == "Not signed in · Ctrl+O signs in"
        await pilot.press("ctrl+o")
        oauth_authority.approve(await code_shown(pilot))
        await until(pilot, lambda: app.screen is form and "Signed in as" in text_of(form, "#oauth-signed-in"), 30)
        assert text_of(form, "#oauth-signed-in") == f"Signed in as {ACCOUNT} · Ctrl+G signs out"
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert text_of(form, "#oauth-signed-in") == "Not signed in · Ctrl+O signs in"
    assert "microsoft" not in (home.root / "oauth-tokens.json").read_text("utf-8")


async def test_settings_form_before_any_app_registration_names_what_to_register(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog", oauth__client_id="")
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = text_of(app.screen, "#oauth-signed-in")
        assert "oauth.client_id is empty" in shown and "Allow public client flows" in shown
        assert text_of(app.screen, "#oauth-cache").startswith("Tokens kept in: ")


async def test_google_modal_takes_the_pasted_address(home: Home, google: Authority) -> None:
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        await pilot.pause()  # who is signed in is looked up in a worker
        assert text_of(form, "#oauth-signed-in") == "Not signed in · Ctrl+O signs in"
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SignInScreen), 30)
        modal = app.screen
        await until(pilot, lambda: text_of(modal, "#signin-address").startswith("https://"), 30)
        url = text_of(modal, "#signin-address")
        assert "code_challenge=" in url and "access_type=offline" in url
        pasted = modal.query_one("#signin-pasted", Input)
        assert pasted.has_focus
        pasted.value = browser_ends_on(google, url)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is form, 30)
        await until(pilot, lambda: "Signed in as" in text_of(form, "#oauth-signed-in"), 30)
        assert text_of(form, "#oauth-signed-in") == f"Signed in as {ACCOUNT} · Ctrl+G signs out"
