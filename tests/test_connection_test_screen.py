"""The "Test connection" action on the settings form: live transcript, form stays usable, Esc cancels."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, RichLog
from textual.worker import WorkerCancelled

from opos_tui.app import OposApp
from opos_tui.screens.connection_test import ConnectionTestPanel
from opos_tui.screens.labels import name_fields
from opos_tui.screens.settings import SettingsScreen
from opos_tui.services import secrets
from opos_tui.services import settings as settings_module
from opos_tui.services.connection_test import ConnectionTestResult
from opos_tui.services.home import Home
from opos_tui.services.transports.base import HandshakeEvent
from opos_tui.services.transports.smtp.errors import CertificateNotTrusted
from tests.conftest import file_bytes
from tests.servers.smtp import PASSWORD, USER, free_port


def transcript(app: OposApp) -> str:
    return "\n".join(line.text for line in app.screen.query_one(RichLog).lines)


def status(app: OposApp) -> str:
    return str(app.screen.query_one("#test-status").render())


async def settle(app: OposApp) -> None:
    with contextlib.suppress(WorkerCancelled):
        await app.workers.wait_for_complete()


async def test_transcript_fills_from_a_real_server(home: Home, smtp_server: Any) -> None:
    server = smtp_server("starttls")
    settings_module.save(home, server.settings(auth__method="password", auth__profile=USER))
    secrets.open_store(home).set(secrets.PASSWORD, PASSWORD)
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+t")
        await settle(app)
        await pilot.pause()
        panel = app.screen.query_one(ConnectionTestPanel)
        assert panel.result is not None and panel.result.ok
        shown = transcript(app)
        for expected in ("✓ connect", "✓ tls     STARTTLS: TLSv1.", f"✓ auth    Logged in as {USER}", "✓ done"):
            assert expected in shown
        assert "C: AUTH PLAIN ***" in shown and PASSWORD not in shown
        assert "The connection works (encrypted)" in status(app)
        assert server.logins == [USER]


async def test_tests_the_settings_as_typed_without_saving(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    saved = replace(server.settings(), smtp=replace(server.settings().smtp, port=1))
    settings_module.save(home, saved)
    before = file_bytes(home.config_file)
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        port = app.screen.query_one("#smtp-port", Input)
        port.value = str(server.port)
        await pilot.press("ctrl+t")
        await settle(app)
        await pilot.pause()
        assert f"port {server.port}" in transcript(app)
        assert "The connection works (NOT encrypted)" in status(app)
    assert file_bytes(home.config_file) == before


async def test_invalid_form_is_not_tested(home: Home) -> None:
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#smtp-port", Input).value = "abc"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert not app.screen.query(ConnectionTestPanel)
        assert "must be valid first" in str(app.screen.query_one("#form-status").render())


async def test_settings_that_cannot_be_tested_say_why(home: Home) -> None:
    app = OposApp(home, "settings")  # no smtp.host yet
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+t")
        await settle(app)
        await pilot.pause()
        # named as the form names it; the command line says smtp.host
        assert "“Server (host name)” is not set" in transcript(app)
        assert "Not tested" in status(app)


async def test_form_stays_usable_and_esc_cancels(home: Home, smtp_server: Any) -> None:
    server = smtp_server("tls")
    # A plain client waits for a greeting an implicit-TLS server never sends: the test hangs until cancelled.
    settings_module.save(home, server.settings("None"))
    settings_module.set_value(home, "smtp.timeout", "60")
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+t")
        panel = app.screen.query_one(ConnectionTestPanel)
        assert panel.running and "Esc cancels" in status(app)
        app.screen.query_one("#sender-name", Input).focus()
        await pilot.press(*"Mahnwesen")
        assert app.screen.query_one("#sender-name", Input).value == "Mahnwesen"
        assert panel.running
        await pilot.press("escape")
        await settle(app)
        await pilot.pause()
        assert not panel.running and "Cancelled." in transcript(app)
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("escape")  # closes the panel, stays on the form
        await pilot.pause()
        assert not app.screen.query(ConnectionTestPanel)
        assert isinstance(app.screen, SettingsScreen)


async def test_command_palette_offers_the_test(home: Home) -> None:
    port = free_port()
    settings_module.set_value(home, "smtp.host", "127.0.0.1")
    settings_module.set_value(home, "smtp.port", str(port))
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p", *"test conn", "enter")
        await settle(app)
        await pilot.pause()
        shown = transcript(app)
        assert f"refused the connection on port {port}" in shown
        assert "Check “Port” (587 for StartTls" in shown and "smtp.port" not in shown


# --- looks --------------------------------------------------------------------------------------------

CANNED = [
    HandshakeEvent(
        "connect",
        "ok",
        "Connected to mail.example.com port 587 (192.0.2.25); security StartTls",
        ("S: 220 mail.example.com ESMTP",),
    ),
    HandshakeEvent(
        "ehlo",
        "ok",
        "EHLO accepted; offered: SIZE 36700160, 8BITMIME, STARTTLS",
        ("C: EHLO opos.example.com", "S: 250-mail.example.com", "S: 250-SIZE 36700160", "S: 250 STARTTLS"),
    ),
    HandshakeEvent(
        "tls",
        "ok",
        "STARTTLS: TLSv1.3, TLS_AES_256_GCM_SHA384 (256 bit); certificate 'CN=mail.example.com' for "
        "mail.example.com, issued by 'CN=R11,O=Let's Encrypt,C=US', valid until 2031-03-01",
        ("C: STARTTLS", "S: 220 2.0.0 Ready to start TLS"),
    ),
    HandshakeEvent("ehlo", "ok", "EHLO accepted; offered: SIZE 36700160, 8BITMIME, AUTH LOGIN PLAIN XOAUTH2"),
    HandshakeEvent(
        "auth",
        "failed",
        "Login as buchhaltung@example.com failed (535 5.7.8 Authentication credentials invalid): Profil "
        "(auth.profile) or Passwort is wrong.",
        ("C: AUTH PLAIN ***", "S: 535 5.7.8 Authentication credentials invalid"),
    ),
]


def test_transcript_snapshot(snap_compare: Any, home: Home) -> None:
    async def show_a_transcript(pilot: Pilot[None]) -> None:
        screen = pilot.app.screen
        panel = ConnectionTestPanel()
        await screen.mount(panel, after=screen.query_one("#form"))
        for event in CANNED:
            panel.show_event(event)
        panel.show_result(ConnectionTestResult(False, "auth", True, "login failed", CANNED))
        await pilot.pause()

    assert snap_compare(OposApp(home, "settings"), terminal_size=(80, 24), run_before=show_a_transcript)


def test_messages_name_the_form_labels_but_keep_command_lines() -> None:
    text = name_fields(CertificateNotTrusted("mail", "CN=mail", "CN=Corp CA", "unable to get issuer").message("en"))
    assert "set “Extra CA file (PEM)” to it" in text
    assert "(opos-tui config set smtp.ca_file /path/ca.pem)" in text
