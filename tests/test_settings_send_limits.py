"""The settings form's send limits: the Exchange Online hints, validation, saving; and the keys it does not
show (templates, retry) survive a save untouched."""

from __future__ import annotations

from textual.widgets import Input

from opos_tui.app import OposApp
from opos_tui.screens.settings import FormField, SettingsScreen
from opos_tui.services import settings
from opos_tui.services.home import Home
from tests.test_queue_screen import until


async def test_send_limits_on_the_form(home: Home) -> None:
    saved = settings.with_value(settings.Settings(), "dunning_2.subject", "Zweite Mahnung ${document_number}")
    settings.save(home, saved)
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the fields below the first screen follow its first paint
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        hints = {f.key: f.label for f in screen.query(FormField)}
        assert "Exchange Online: 30" in hints["smtp.max_per_minute"]
        assert "Exchange Online: 3" in hints["smtp.connections"]
        per_minute = screen.query_one("#smtp-max-per-minute", Input)
        connections = screen.query_one("#smtp-connections", Input)
        assert (per_minute.value, connections.value) == ("0", "1")
        # Each change reaches the form as a message: wait for its effect, not for a quiet moment (Pilot's
        # pause() takes a loaded machine's stall for one).
        per_minute.value = "-1"
        await until(pilot, lambda: screen.valid is None)
        per_minute.value = "30"
        connections.value = "3"
        await until(pilot, lambda: screen.valid is not None and screen.valid.smtp.connections == 3)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not screen.dirty)
    stored = settings.load(home)
    assert (stored.smtp.max_per_minute, stored.smtp.connections) == (30, 3)
    assert stored.dunning_2.subject == "Zweite Mahnung ${document_number}"
