"""The Textual application: screens, global bindings, theme, command palette."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Literal

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from opos_tui.i18n import tr
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.settings import SettingsScreen
from opos_tui.screens.typeahead import TypeAheadApp
from opos_tui.screens.widgets import ConfirmScreen
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home

StartScreen = Literal["main", "settings"]


class OposApp(TypeAheadApp[None]):
    CSS_PATH = "app.tcss"
    TITLE = "opos-tui"
    # Textual's own palette key, named in the user's language in the footer.
    BINDINGS = [
        Binding(
            App.COMMAND_PALETTE_BINDING,
            "command_palette",
            tr("palette", "Befehle"),
            show=False,
            priority=True,
            tooltip=tr("Open the command palette", "Liste aller Befehle öffnen"),
        )
    ]

    def __init__(self, home: Home, start: StartScreen = "main") -> None:
        super().__init__()
        self.home = home
        self.start = start

    def on_mount(self) -> None:
        # In 16 colours the theme's orange accent becomes bright red, the colour of errors: app.tcss then
        # marks focus and headings in other colours.
        self.set_class(self.console.color_system in ("standard", "windows"), "-ansi16")
        if self.start == "settings":
            self.push_screen(SettingsScreen(self.home))
            return
        try:
            screen = QueueScreen(self.home)
        except OposError as exc:  # the queue file cannot be opened: say so plainly, no traceback
            self.exit(return_code=1, message=f"opos-tui: {exc}")
            return
        self.push_screen(screen)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        # Every key of the current screen is also a command: found by its name, run without knowing the key.
        seen: set[str] = set()
        for binding in screen.BINDINGS:
            if isinstance(binding, tuple) or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            if screen.check_action(binding.action.partition("(")[0], ()) is False:
                continue
            key = binding.key_display or binding.key.split(",")[0]
            title = binding.tooltip or binding.description  # the footer's word is short; the palette's is not
            yield SystemCommand(title, tr(f"key: {key}", f"Taste: {key}"), partial(screen.run_action, binding.action))

    async def action_quit(self) -> None:
        screen = self.screen
        if isinstance(screen, SettingsScreen) and screen.dirty:
            screen.action_leave()
            return
        sending = next((s for s in self.screen_stack if isinstance(s, QueueScreen) and s.sending), None)
        if sending is None:
            self.exit()
            return

        def decided(answer: str | None) -> None:
            if answer == "quit":
                sending.stop_and_quit()

        self.push_screen(
            ConfirmScreen(
                tr(
                    "Mails are being sent. Stop after the current mail and quit?",
                    "Es werden Mails gesendet. Nach der laufenden Mail anhalten und beenden?",
                ),
                {"cancel": tr("Keep sending", "Weiter senden"), "quit": tr("Stop and quit", "Anhalten und beenden")},
            ),
            decided,
        )
