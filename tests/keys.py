"""Keys as a paste or a laggy SSH link delivers them: all at once."""

from __future__ import annotations

from textual import events
from textual.pilot import Pilot

from opos_tui.screens.typeahead import TypeAheadApp

CHARACTERS = {"tab": "\t", "enter": "\r", "space": " ", "backspace": "\x08", "escape": "\x1b"}


async def burst(pilot: Pilot[None], *keys: str) -> None:
    """Post every key to the app in one go, without waiting in between, then wait until all took effect."""
    app = pilot.app
    assert isinstance(app, TypeAheadApp)
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else CHARACTERS.get(key)))
    await pilot.pause()
    while app.holding_keys:
        await pilot.pause()
    await pilot.pause()
