"""The TUI when its files break under it: a config.toml broken while the queue screen is open is shown and
fixed in the settings form (never a crash), and a queue.db deleted or replaced under the running screen is
noticed and said, with the actions refused until a queue is there again. Real files, driven through Pilot."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from textual.widgets import Input

from opos_tui.app import OposApp
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.settings import FormField, SettingsScreen, widget_id
from opos_tui.screens.widgets import ConfirmScreen
from opos_tui.services import settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Status
from tests.test_queue_screen import (
    answer,
    configure,
    letter,
    queue_screen,
    settle,
    shown_ids,
    statuses,
    text_of,
    until,
)
from tests.test_settings_screen import type_into

# --- config.toml --------------------------------------------------------------------------------------


def settings_screen(app: OposApp) -> SettingsScreen:
    screen = app.screen
    assert isinstance(screen, SettingsScreen), screen
    return screen


async def test_c_with_invalid_values_shows_them_in_the_form_to_be_fixed(home: Home) -> None:
    configure(home)
    letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        queue_screen(app)
        await settle(pilot)
        # another admin breaks config.toml with an editor while the queue screen is open
        home.config_file.write_text(
            'connection = "mapi"\n\n[sender]\naddress = "buchhaltung@example.test"\n\n'
            '[smtp]\nhost = "mail.example.test"\nport = "many"\n\n[retry]\ngive_up_days = 0\n'
        )
        await pilot.press("c")
        await pilot.pause()
        assert app.is_running
        screen = settings_screen(app)
        banner = text_of(screen, "#file-problem")
        assert str(home.config_file) in banner
        assert "smtp.port (line 8): must be a whole number from 1 to 65535" in banner
        assert "retry.give_up_days (line 11)" in banner
        assert "connection (line 1): 'mapi'" in banner
        # each invalid value in its field, marked: the admin sees what the file says and corrects it
        port = screen.query_one("#smtp-port", Input)
        assert port.value == "many"
        assert screen.query_one("#field-smtp-port", FormField).has_class("-invalid")
        give_up = screen.query_one(f"#{widget_id('retry.give_up_days')}", Input)  # not on the form otherwise
        assert give_up.value == "0"
        assert screen.query_one("#field-connection", FormField).has_class("-invalid")
        assert screen.query_one("#smtp-host", Input).value == "mail.example.test"  # the valid rest is read

        await pilot.press("ctrl+s")  # refused while a field is invalid
        await pilot.pause()
        assert "many" in home.config_file.read_text()
        await type_into(pilot, screen, "smtp.port", "2525")
        await type_into(pilot, screen, "retry.give_up_days", "3")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.query_one("#file-problem").display
        assert not screen.query_one("#field-connection", FormField).has_class("-invalid")
        await pilot.press("escape")
        await pilot.pause()
        queue_screen(app)
    saved = settings.load(home)  # valid again
    assert (saved.connection, saved.smtp.port, saved.retry.give_up_days) == ("smtp", 2525, 3)
    assert (saved.smtp.host, saved.sender.address) == ("mail.example.test", "buchhaltung@example.test")


async def test_c_with_a_choice_that_is_no_text_shows_its_default_chosen(home: Home) -> None:
    """The form shows config.toml's values before the settings model checks them: a choice written as a list
    (or a number) is none of the choices, so the form shows the default chosen, and the banner names the key."""
    configure(home)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        queue_screen(app)
        await settle(pilot)
        home.config_file.write_text('connection = ["smtp"]\n\n[smtp]\nsecurity = 5\nhost = "mail.example.test"\n')
        await pilot.press("c")
        await pilot.pause()
        screen = settings_screen(app)
        assert screen.pressed("connection") == "smtp" and screen.pressed("smtp.security") == "StartTls"
        banner = text_of(screen, "#file-problem")
        assert "connection (line 1)" in banner and "smtp.security (line 4)" in banner
        assert screen.query_one("#smtp-host", Input).value == "mail.example.test"


async def test_c_with_a_file_that_is_not_toml_replaces_it_only_when_agreed(home: Home) -> None:
    configure(home)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        queue_screen(app)
        await settle(pilot)
        home.config_file.write_text("[smtp\nhost = 'mail.example.test'\n")
        await pilot.press("c")
        await pilot.pause()
        screen = settings_screen(app)
        banner = text_of(screen, "#file-problem")
        assert f"{home.config_file} is not valid TOML" in banner
        assert "(at line 1, column 6)" in banner
        await pilot.press("escape")  # nothing typed: leaves at once, the file as it was
        await pilot.pause()
        queue_screen(app)
        assert home.config_file.read_text() == "[smtp\nhost = 'mail.example.test'\n"

        await pilot.press("c")
        await pilot.pause()
        screen = settings_screen(app)
        await type_into(pilot, screen, "smtp.host", "mail.example.test")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "not valid TOML" in app.screen.question
        await answer(pilot, "cancel")
        assert home.config_file.read_text() == "[smtp\nhost = 'mail.example.test'\n"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await answer(pilot, "replace")
        assert app.screen is screen
        assert not screen.query_one("#file-problem").display
    assert tomllib.loads(home.config_file.read_text())["smtp"]["host"] == "mail.example.test"
    assert settings.load(home).smtp.host == "mail.example.test"


# --- queue.db -----------------------------------------------------------------------------------------


def other_queue(home: Home, tmp_path: Path, count: int) -> tuple[Path, list[int]]:
    """A queue file made elsewhere (a restored backup, another installation's) with ``count`` new letters."""
    other = Home(tmp_path / "other")
    configure(other)
    ids = [letter(other, n) for n in range(101, 101 + count)]
    return other.queue_db, ids


def notified(app: OposApp, text: str) -> bool:
    return any(text in str(n.message) for n in app._notifications)


async def test_a_queue_file_deleted_under_the_screen_is_said_and_nothing_acts(home: Home, tmp_path: Path) -> None:
    configure(home)
    first, second = letter(home, 1), letter(home, 2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await settle(pilot)
        assert shown_ids(screen) == [second, first]
        home.queue_db.unlink()
        await until(pilot, lambda: screen.lost is not None)
        assert shown_ids(screen) == []  # nothing stale
        hint = text_of(screen, "#empty-hint")
        assert f"the queue file {home.queue_db} was deleted while it was open" in hint
        assert "every action is off" in hint
        assert "the queue is gone" in text_of(screen, "#counts")
        for key in ("h", "d", "s", "S", "a", "enter"):
            await pilot.press(key)
        await settle(pilot)
        assert isinstance(app.screen, QueueScreen)  # no question, no detail: nothing to act on
        assert not home.queue_db.exists()  # and no new, empty queue made in its place
        assert not notified(app, "held") and not notified(app, "Nothing")

        # a queue file is put back (a restored backup): the screen reopens it and acts on it again
        restored, ids = other_queue(home, tmp_path, 2)
        os.replace(restored, home.queue_db)
        await until(pilot, lambda: screen.lost is None and shown_ids(screen) == ids[::-1], seconds=10)
        await pilot.press("h")
        await settle(pilot)
        await until(pilot, lambda: statuses(home)[ids[-1]] is Status.HELD)


async def test_a_queue_file_replaced_under_the_screen_shows_the_new_one_not_stale_items(
    home: Home, tmp_path: Path
) -> None:
    configure(home)
    first = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await settle(pilot)
        assert shown_ids(screen) == [first]
        junk = tmp_path / "junk.db"
        junk.write_bytes(b"not a queue\n" * 1000)
        os.replace(junk, home.queue_db)
        await until(pilot, lambda: screen.lost is not None)
        assert shown_ids(screen) == []
        # the file there is no queue: said, and the screen stays off
        await until(pilot, lambda: "The file there now is not opened" in text_of(screen, "#empty-hint"))
        hint = text_of(screen, "#empty-hint")
        assert f"the queue file {home.queue_db} was replaced by another file while it was open" in hint
        assert f"{home.queue_db} is not an opos-tui queue or is damaged (not an SQLite database)" in hint
        assert home.queue_db.read_bytes() == b"not a queue\n" * 1000  # untouched

        # a restored queue, put in place as SQLite needs it: without the old file's -wal and -shm (their
        # frames would be read as part of the new file)
        replacement, ids = other_queue(home, tmp_path, 3)
        for suffix in ("-wal", "-shm"):
            home.queue_db.with_name(home.queue_db.name + suffix).unlink(missing_ok=True)
        os.replace(replacement, home.queue_db)
        await until(pilot, lambda: shown_ids(screen) == ids[::-1], seconds=10)
        assert "3" in text_of(screen, "#counts")
