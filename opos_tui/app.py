"""The Textual application: screens, global bindings, theme."""

from __future__ import annotations

from typing import Literal

from textual.app import App

from opos_tui.screens.settings import SettingsScreen
from opos_tui.services.home import Home

StartScreen = Literal["main", "settings"]


class OposApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "opos-tui"

    def __init__(self, home: Home, start: StartScreen = "main") -> None:
        super().__init__()
        self.home = home
        self.start = start

    def on_mount(self) -> None:
        # Until the queue screen exists, the settings form is the main screen too.
        self.push_screen(SettingsScreen(self.home))

    async def action_quit(self) -> None:
        screen = self.screen
        if isinstance(screen, SettingsScreen) and screen.dirty:
            screen.action_leave()
            return
        self.exit()
