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


_pause = Pilot.pause
"""Textual's own pause, taken before conftest makes every pause wait for the screens' workers too."""


async def glance(pilot: Pilot[None], delay: float | None = None) -> None:
    """Let the app process what is pending, without waiting for any screen's worker: a lock another process
    holds may keep one waiting for as long as the test likes."""
    await _pause(pilot, delay)


async def press_now(pilot: Pilot[None], *keys: str) -> None:
    """Press ``keys`` one after the other, each once what the one before set in motion on the event loop is done,
    but without waiting for any worker it started."""
    app = pilot.app
    assert isinstance(app, TypeAheadApp)
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else CHARACTERS.get(key)))
        await glance(pilot)
        while app.holding_keys:
            await glance(pilot)
        await glance(pilot)
