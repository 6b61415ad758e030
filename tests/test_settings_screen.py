"""The settings form, driven by keyboard through Pilot against a real config.toml and secret file."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, RadioSet, Static

from opos_tui.app import OposApp
from opos_tui.screens.settings import FormField, SettingsScreen, widget_id
from opos_tui.screens.widgets import Choice, ConfirmScreen
from opos_tui.services import secrets, settings
from opos_tui.services.home import Home
from tests.colours import in_sixteen_colours
from tests.conftest import file_bytes
from tests.keys import burst
from tests.test_queue_screen import until


def shown(screen: SettingsScreen, selector: str) -> bool:
    """Whether a part of the form is displayed: it and all its containers."""
    node = screen.query_one(selector)
    while node is not None and node is not screen:
        if not node.display:
            return False
        node = node.parent  # type: ignore[assignment]
    return True


def pick(screen: SettingsScreen, key: str, value: str) -> None:
    screen.query_one(f"#{widget_id(key)}-{value}", Choice).value = True


async def opened(pilot: Pilot[None]) -> SettingsScreen:
    """The form, once config.toml is checked, the fields below the first screen are there and the secret store
    is open (all three follow its first paint, the first and the last in threads)."""
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SettingsScreen)
    await until(pilot, lambda: screen.completed and screen.checked and not screen.store_reading)
    await pilot.pause()
    return screen


async def choose(pilot: Pilot[None], screen: SettingsScreen, key: str, value: str, effect: Callable[[], bool]) -> None:
    """Press a choice, wait until the form shows ``effect``, then until the choice's messages are through.

    Waiting for the effect, not for a quiet moment: Pilot's pause() takes a loaded machine's stall for one.
    Then draining: while a radio set's message still travels up to the app, Textual holds back every radio
    button's message, so a choice pressed in that moment would be lost."""
    pick(screen, key, value)
    await until(pilot, effect)
    await pilot.pause()


async def type_into(pilot: Pilot[None], screen: SettingsScreen, key: str, text: str) -> None:
    field = screen.query_one(f"#{widget_id(key)}", Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text) if text else None
    await pilot.pause()


async def test_three_connection_types_and_only_what_applies(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        labels = [str(b.label) for b in screen.query_one("#connection", RadioSet).query("Choice")]
        # All of the original dialog's types, and on Unix the local mail program.
        assert labels == [
            "Windows-Standard (Simple MAPI)",
            "Outlook (Extended MAPI)",
            "SMTP",
            "sendmail (Unix)",
        ]
        # SMTP, no login: SMTP data shown, no OAuth, no profile or password
        assert shown(screen, "#section-smtp")
        assert not shown(screen, "#section-oauth")
        assert not shown(screen, "#field-auth-profile")
        assert not shown(screen, "#field-auth-password")

        await choose(pilot, screen, "connection", "windows", lambda: not shown(screen, "#section-auth"))
        assert not shown(screen, "#section-smtp")
        assert shown(screen, "#section-sender")

        await choose(pilot, screen, "connection", "outlook", lambda: shown(screen, "#section-auth"))
        assert not shown(screen, "#section-smtp")
        visible_methods = [b.name for b in screen.query_one("#auth-method", RadioSet).query("Choice") if b.display]
        assert visible_methods == ["none", "password"]
        await choose(pilot, screen, "auth.method", "password", lambda: shown(screen, "#field-auth-profile"))
        assert shown(screen, "#field-auth-password")

        await choose(pilot, screen, "connection", "smtp", lambda: shown(screen, "#section-smtp"))
        await choose(pilot, screen, "auth.method", "oauth-dialog", lambda: shown(screen, "#section-oauth"))
        assert not shown(screen, "#field-auth-password")
        assert shown(screen, "#field-oauth-tenant-id")
        assert not shown(screen, "#field-oauth-client-secret")
        await choose(pilot, screen, "oauth.provider", "google", lambda: shown(screen, "#field-oauth-client-secret"))
        assert not shown(screen, "#field-oauth-tenant-id")

        # Switching to Outlook with OAuth chosen falls back visibly to "no login"
        await choose(pilot, screen, "connection", "outlook", lambda: screen.pressed("auth.method") == "none")
        assert not shown(screen, "#section-oauth")


async def test_keyboard_only_choice_of_connection(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        assert app.focused is screen.query_one("#connection")
        await pilot.press("up", "enter")  # the cursor starts on the saved choice, SMTP; up = Outlook
        assert screen.pressed("connection") == "outlook"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert settings.load(home).connection == "outlook"


@pytest.mark.parametrize("config", ["none", "saved"])
async def test_the_checks_are_made_ready_in_a_worker_not_at_the_first_change(
    home: Home, config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the checks imports pydantic (about 0.1 s): the form does it in its worker, whether config.toml
    needs checking or not (none yet), never on the thread that takes the keys."""
    import threading

    if config == "saved":
        settings.set_value(home, "smtp.host", "mail.example.com")
    made = settings._adapter
    built_on: list[bool] = []

    def adapter() -> object:
        if made.cache_info().currsize == 0:
            built_on.append(threading.current_thread() is threading.main_thread())
        return made()

    made.cache_clear()
    monkeypatch.setattr(settings, "_adapter", adapter)
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.port", "70000")
        assert screen.query_one("#field-smtp-port", FormField).has_class("-invalid")
    assert built_on == [False]


async def test_invalid_value_shown_inline_and_save_refused(home: Home) -> None:
    settings.set_value(home, "smtp.host", "mail.example.com")
    before = file_bytes(home.config_file)
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.port", "70000")
        port_field = screen.query_one("#field-smtp-port", FormField)
        assert port_field.has_class("-invalid")
        assert "1 to 65535" in str(port_field.query_one(".field-error").render())
        await type_into(pilot, screen, "sender.address", "nobody")
        assert screen.query_one("#field-sender-address", FormField).has_class("-invalid")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert file_bytes(home.config_file) == before
        # fixing the value clears the mark, and then save goes through
        await type_into(pilot, screen, "smtp.port", "2525")
        await type_into(pilot, screen, "sender.address", "opos@example.com")
        assert not port_field.has_class("-invalid")
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = settings.load(home)
    assert (saved.smtp.port, saved.sender.address) == (2525, "opos@example.com")


async def test_windows_types_say_windows_only_and_sendmail_asks_for_its_program(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        note = screen.query_one("#connection-note", Static)
        assert not shown(screen, "#connection-note")  # SMTP: nothing to say
        assert not shown(screen, "#section-sendmail")
        await choose(pilot, screen, "connection", "windows", lambda: shown(screen, "#connection-note"))
        assert "works on Windows only" in str(note.render())
        await choose(pilot, screen, "connection", "outlook", lambda: shown(screen, "#section-auth"))
        assert shown(screen, "#connection-note")
        assert "works on Windows only" in str(note.render())
        await choose(pilot, screen, "connection", "sendmail", lambda: shown(screen, "#section-sendmail"))
        assert not shown(screen, "#connection-note")
        assert not shown(screen, "#section-auth") and not shown(screen, "#section-smtp")
        await type_into(pilot, screen, "sendmail.path", "/usr/local/sbin/sendmail")
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = settings.load(home)
    assert (saved.connection, saved.sendmail.path) == ("sendmail", "/usr/local/sbin/sendmail")


async def test_every_key_round_trips_through_the_form(home: Home, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    values = {
        "connection": "smtp",
        "auth.method": "oauth",
        "auth.profile": "opos@contoso.com",
        "oauth.provider": "microsoft",
        "oauth.client_id": "client-123",
        "oauth.tenant_id": "contoso.onmicrosoft.com",
        "smtp.host": "smtp.office365.com",
        "smtp.port": "465",
        "smtp.security": "SslOnConnect",
        "smtp.timeout": "45",
        "smtp.ca_file": str(ca),
        "smtp.allow_plain_auth": "true",
        "sender.address": "buchhaltung@müller.de",
        "sender.name": "Müller GmbH",
        "sender.reply_to": "opos@example.com",
        "sender.bcc": "archiv@example.com",
        "smtp.max_message_mb": "20",
        "smtp.connections": "3",
        "smtp.max_per_minute": "30",
        "sendmail.path": "/usr/local/sbin/sendmail",
        # Not on this form: kept as saved when the form saves.
        "oauth.authority_url": "https://login.microsoftonline.us",
        "oauth.google_auth_url": "https://accounts.example.com/auth",
        "oauth.google_token_url": "https://oauth2.example.com/token",
        "oauth.ca_file": str(ca),
        "oauth.proxy": "http://proxy.example.com:3128",
        "retry.backoff_minutes": "10",
        "retry.max_backoff_minutes": "120",
        "retry.give_up_days": "3",
        "queue.url": "postgresql://opos@db.example.test/opos",
        "letters.language": "en",
        "letters.subject": "Ihr Beleg ${document_number}",
        "letters.body": "Guten Tag,\n\nanbei ${document_number}.",
        "letters.signature": "Müller GmbH",
        "letters.attachment_name": "Beleg_${document_number}.pdf",
        "letters.max_recipients": "3",
        **{
            f"{section}.{name}": f"{section} {name} ${{document_number}}"
            for section in ["payment_advice"] + [f"dunning_{level}" for level in range(1, 10)]
            for name in ("subject", "body")
        },
    }
    assert set(values) == set(settings.KEYS)
    for key, value in values.items():
        settings.set_value(home, key, value)
    before = settings.load(home)
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        assert settings.check(screen.draft()) == before
        assert not screen.dirty
        # change every text key through the form, then save
        await type_into(pilot, screen, "smtp.host", "mail.example.org")
        await type_into(pilot, screen, "oauth.client_id", "other-client")
        await choose(
            pilot,
            screen,
            "smtp.security",
            "StartTlsWhenAvailable",
            lambda: screen.valid is not None and screen.valid.smtp.security.value == "StartTlsWhenAvailable",
        )
        assert screen.dirty
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.dirty
    after = tomllib.loads(home.config_file.read_text("utf-8"))
    assert after["smtp"]["host"] == "mail.example.org"
    assert after["oauth"]["client_id"] == "other-client"
    assert after["smtp"]["security"] == "StartTlsWhenAvailable"
    assert after["sender"]["address"] == "buchhaltung@müller.de"
    assert after["smtp"]["max_per_minute"] == 30
    assert after["dunning_7"]["body"] == "dunning_7 body ${document_number}"
    assert after["letters"]["body"] == "Guten Tag,\n\nanbei ${document_number}."
    assert after["queue"]["url"] == "postgresql://opos@db.example.test/opos"


async def test_password_goes_to_the_secret_store_only(home: Home) -> None:
    password = "Geheim-123!"
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await choose(pilot, screen, "auth.method", "password", lambda: shown(screen, "#field-auth-profile"))
        await type_into(pilot, screen, "auth.profile", "buchhalter7")
        await type_into(pilot, screen, secrets.PASSWORD, password)
        screenshot = app.export_screenshot()
        assert "buchhalter7" in screenshot  # typed text does show up in a screenshot ...
        assert password not in screenshot  # ... but the password is masked
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.query_one("#auth-password", Input).value == ""
    assert secrets.open_store(home).get(secrets.PASSWORD) == password
    assert password not in home.config_file.read_text("utf-8")
    assert settings.load(home).auth.method == "password"


async def test_leaving_with_unsaved_changes_asks(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.host", "mail.example.com")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")  # cancel: back on the form, nothing lost
        await pilot.pause()
        assert app.screen is screen
        assert screen.query_one("#smtp-host", Input).value == "mail.example.com"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.click("#answer-save")
        await pilot.pause()
    assert app.return_code == 0
    assert settings.load(home).smtp.host == "mail.example.com"


async def test_discard_leaves_the_file_alone(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.host", "mail.example.com")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("right", "enter")  # Save | [Discard] | Cancel
        await pilot.pause()
    assert not home.config_file.exists()


async def test_german_labels(home: Home) -> None:
    from opos_tui.i18n import set_lang

    set_lang("de")
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        labels = [str(label.render()) for label in screen.query(".field-label")]
        assert "Verbindungsart" in labels
        assert "Anmelden" in labels
        assert "Sicherheit" in labels


def test_settings_form_snapshot(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    settings.set_value(home, "smtp.host", "mail.example.com")
    settings.set_value(home, "auth.method", "password")
    settings.set_value(home, "auth.profile", "opos@example.com")

    async def run_before(pilot: Pilot[None]) -> None:
        await opened(pilot)  # what follows the first paint done, so that nothing moves afterwards

    assert snap_compare(OposApp(home, start="settings"), terminal_size=(80, 24), run_before=run_before)


def test_settings_form_invalid_port_snapshot(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    home = Home(tmp_path / "home")

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await opened(pilot)  # what follows the first paint done, so that nothing moves afterwards
        await type_into(pilot, screen, "smtp.host", "mail.example.com")
        await type_into(pilot, screen, "smtp.port", "0")

    assert snap_compare(OposApp(home, start="settings"), terminal_size=(80, 24), run_before=run_before)


async def test_a_change_saved_elsewhere_meanwhile_is_kept(home: Home) -> None:
    settings.set_value(home, "smtp.host", "old.example.com")
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.host", "mail.example.com")
        # another admin, meanwhile, on the same installation:
        settings.set_value(home, "sender.address", "opos@example.com")
        settings.set_value(home, "smtp.security", "SslOnConnect")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)  # nothing to decide: different keys
        await pilot.pause()
        assert screen.query_one("#sender-address", Input).value == "opos@example.com"
        assert screen.pressed("smtp.security") == "SslOnConnect"
        assert not screen.dirty
    saved = settings.load(home)
    assert (saved.smtp.host, saved.sender.address, saved.smtp.security.value) == (
        "mail.example.com",
        "opos@example.com",
        "SslOnConnect",
    )


@pytest.mark.parametrize("answer", ["mine", "cancel"])
async def test_the_same_key_changed_elsewhere_asks_first(home: Home, answer: str) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.host", "mine.example.com")
        settings.set_value(home, "smtp.host", "theirs.example.com")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "“Server (host name)”" in app.screen.question  # the form's label, not the key
        await pilot.click(f"#answer-{answer}")
        await pilot.pause()
    expected = "mine.example.com" if answer == "mine" else "theirs.example.com"
    assert settings.load(home).smtp.host == expected


def test_merge_keeps_both_sides_and_names_the_clashes() -> None:
    base = settings.Settings()
    mine = settings.with_value(settings.with_value(base, "smtp.host", "a.example.com"), "smtp.port", "465")
    theirs = settings.with_value(settings.with_value(base, "smtp.host", "b.example.com"), "sender.name", "Müller")
    same = settings.with_value(theirs, "smtp.port", "465")
    data, both = settings.merge(base, mine, same)
    merged = settings.check(data)
    assert (merged.smtp.host, merged.smtp.port, merged.sender.name) == ("a.example.com", 465, "Müller")
    assert both == ["smtp.host"]  # the port was changed to the same value on both sides: no clash


# --- typed ahead: keys that arrive in one burst (a paste, a laggy SSH link) ---------------------------


def value(screen: SettingsScreen, key: str) -> str:
    return screen.query_one(f"#{widget_id(key)}", Input).value


async def test_burst_typed_profile_and_password_land_in_their_own_fields(home: Home) -> None:
    settings.set_value(home, "auth.method", "password")
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        screen.query_one("#auth-profile", Input).focus()
        await pilot.pause()
        await burst(pilot, *"buchhaltung", "tab", *"geheim123")
        assert value(screen, "auth.profile") == "buchhaltung"
        assert value(screen, secrets.PASSWORD) == "geheim123"
        assert "geheim123" not in app.export_screenshot()


async def test_burst_typed_host_and_port_land_in_their_own_fields(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        screen.query_one("#smtp-host", Input).focus()
        await pilot.pause()
        await burst(pilot, *"localhost", "tab", *"2526", "shift+tab", "end", *".lan")
        assert (value(screen, "smtp.host"), value(screen, "smtp.port")) == ("localhost.lan", "2526")


async def test_burst_right_after_choosing_password_login(home: Home) -> None:
    # The choice shows Profil and Passwort: the Tab right after it must already find them.
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await burst(pilot, "tab", "down", "enter", "tab", *"buchhaltung", "tab", *"geheim123", "tab", *"localhost")
        assert screen.pressed("auth.method") == "password"
        assert value(screen, "auth.profile") == "buchhaltung"
        assert value(screen, secrets.PASSWORD) == "geheim123"
        assert value(screen, "smtp.host") == "localhost"


async def test_burst_typed_as_the_app_starts_lands_in_the_form(home: Home) -> None:
    # The form is built once the app runs: keys that arrive before it is there wait for it.
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await burst(pilot, "tab", "down", "enter", "tab", *"buchhaltung", "tab", *"geheim123")
        screen = await opened(pilot)
        assert screen.pressed("auth.method") == "password"
        assert value(screen, "auth.profile") == "buchhaltung"
        assert value(screen, secrets.PASSWORD) == "geheim123"


def test_settings_form_in_sixteen_colours_snapshot(
    snap_compare: Callable[..., bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Red only for errors: the focused field's label and the footer keys are not red, the invalid port is,
    # the warning is yellow, and the ticked checkbox says so by its mark.
    home = Home(tmp_path / "home")
    settings.set_value(home, "auth.method", "password")
    settings.set_value(home, "smtp.allow_plain_auth", "true")
    app = in_sixteen_colours(monkeypatch, lambda: OposApp(home, start="settings"))

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await opened(pilot)  # what follows the first paint done, so that nothing moves afterwards
        await type_into(pilot, screen, "smtp.port", "0")
        await pilot.wait_for_animation()  # the field's focus scrolls it into view, animated
        # The port's line at the top, on a whole line: a scroll stopped half-way draws the scroll bar otherwise.
        form = screen.query_one("#form")
        form.scroll_to_widget(screen.query_one("#field-smtp-port"), top=True, animate=False, immediate=True)
        await pilot.pause()
        form.scroll_to(y=round(form.scroll_y), animate=False, immediate=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


# --- at 80x24: what the cursor is on stays in view ----------------------------------------------------


def in_view(screen: SettingsScreen, selector: str) -> bool:
    """Whether a widget is on screen inside the scrolling form, not scrolled away or covered by something."""
    widget = screen.query_one(selector)
    region = widget.region
    if not region or not screen.query_one("#form").region.contains_region(region):
        return False
    return all(screen.get_widget_at(x, region.y)[0] is widget for x in range(region.x, region.right))


async def test_refused_save_takes_the_cursor_to_the_first_field_marked(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.max_per_minute", "many")
        await type_into(pilot, screen, "sender.bcc", "archiv@")
        screen.query_one("#connection").focus()  # top of the form: both fields scrolled out of view
        await pilot.pause()
        assert not in_view(screen, "#smtp-max-per-minute")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.focused is screen.query_one("#smtp-max-per-minute")
        assert in_view(screen, "#smtp-max-per-minute")
        assert in_view(screen, "#field-smtp-max-per-minute > .field-error")
        assert "Not saved: fix the fields marked ⚠ first" in str(screen.query_one("#form-status").render())
        # what it says covers none of the form: no label hidden under it
        for label in screen.query(".field-label"):
            if label.region and screen.query_one("#form").region.contains_region(label.region):
                assert in_view(screen, f"#{label.parent.id} > .field-label")  # type: ignore[union-attr]
        await type_into(pilot, screen, "smtp.max_per_minute", "30")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.focused is screen.query_one("#sender-bcc")
        await type_into(pilot, screen, "sender.bcc", "archiv@example.com")
        assert not screen.query_one("#form-status").display  # fixed: the refusal is gone


async def test_refused_save_shows_the_error_of_the_field_the_cursor_is_in(home: Home) -> None:
    # The cursor is in the bad field already, at the bottom of the form: the line saying "not saved" takes a
    # line from the form, and must not push the field's error out of view.
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await pilot.press("tab", "down", "enter")  # password login
        await pilot.pause()
        await pilot.press("tab", *"buchhaltung", "tab", *"geheim123", "tab", "tab", "ctrl+u", "0")
        await pilot.pause()
        assert app.focused is screen.query_one("#smtp-port")
        assert in_view(screen, "#field-smtp-port > .field-error")  # on the form's last line
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.query_one("#form-status").display
        assert app.focused is screen.query_one("#smtp-port")
        assert in_view(screen, "#field-smtp-port > .field-error")


async def test_tab_from_the_last_field_goes_to_the_first(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        screen.query_one("#sender-bcc").focus()
        await pilot.press("tab")
        assert app.focused is screen.query_one("#connection")
        await pilot.press("shift+tab")
        assert app.focused is screen.query_one("#sender-bcc")


async def test_the_test_panel_does_not_hide_the_field_being_edited(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        screen.query_one("#sender-bcc").focus()  # the last field, at the bottom of the screen
        # The field scrolls into view after the next refresh: on a busy machine later than one pause.
        await until(pilot, lambda: in_view(screen, "#sender-bcc"))
        await pilot.press("ctrl+t")  # no host yet: the panel opens and says so
        await until(pilot, lambda: screen.query_one("#connection-test").region.height == 12)
        assert app.focused is screen.query_one("#sender-bcc")
        await until(pilot, lambda: in_view(screen, "#sender-bcc"))


async def test_saved_is_said_until_the_next_change(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await type_into(pilot, screen, "smtp.host", "mail.example.com")
        await pilot.press("ctrl+s")
        await pilot.pause()
        status = screen.query_one("#form-status")
        assert status.display and "Saved to" in str(status.render())
        await type_into(pilot, screen, "smtp.host", "mail.example.org")
        assert not status.display


SIGN_IN_PROBE = """
import asyncio, sys
from pathlib import Path
from textual.widgets import Static
from opos_tui.app import OposApp
from opos_tui.services.home import Home

async def main() -> None:
    app = OposApp(Home(Path(sys.argv[1])), "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#oauth-signed-in", Static)

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("opos_tui.services.signin", "requests", "msal"))))
"""


@pytest.mark.parametrize(("method", "imported"), [("password", False), ("oauth", True)])
def test_the_settings_form_imports_the_sign_in_package_only_for_oauth(home: Home, method: str, imported: bool) -> None:
    """The sign-in package and its HTTP client cost the form's first paint a fifth of its time: only a
    form whose settings use OAuth asks who is signed in."""
    import subprocess
    import sys

    settings.save(home, settings.validate({"smtp": {"host": "127.0.0.1"}, "auth": {"method": method}}))
    env = {"OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    shown = subprocess.run(
        [sys.executable, "-c", SIGN_IN_PROBE, str(home.root)], capture_output=True, text=True, env=env, check=True
    )
    assert ("opos_tui.services.signin" in shown.stdout) is imported
    assert ("requests" in shown.stdout) is imported
