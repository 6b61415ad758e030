"""The Textual application: screens, global bindings, theme, command palette."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from typing import Any, Literal

from rich.terminal_theme import TerminalTheme
from textual import events, work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widgets import Input

from opos_tui.i18n import tr
from opos_tui.screens.typeahead import TypeAheadApp
from opos_tui.screens.widgets import ConfirmScreen, KeysScreen, screen_keys, set_bindings
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.home import Home

StartScreen = Literal["main", "settings", "letters", "reports"]

ANSI_COLOURS = TerminalTheme(
    (12, 12, 12),
    (217, 217, 217),
    [
        (26, 26, 26),
        (244, 0, 95),
        (152, 224, 36),
        (253, 151, 31),
        (157, 101, 255),
        (214, 112, 214),
        (88, 209, 235),
        (196, 197, 181),
    ],
    [
        (98, 94, 76),
        (244, 0, 95),
        (152, 224, 36),
        (224, 213, 97),
        (157, 101, 255),
        (214, 112, 214),
        (88, 209, 235),
        (246, 246, 239),
    ],
)
"""How the terminal's 16 colours look in 256 or more: Textual's Monokai, except that its magenta is the same red
as its red, which made an uncertain mail look failed."""

ANSI_THEME = "ansi-dark"
"""The theme for terminals of 16 colours: the terminal's own colours. Textual's default theme, brought down to
16 colours, turns its orange warning and accent colours, and yellow, into red: the colour of errors."""


def app_keys() -> list[Binding]:
    """The keys of every screen."""
    return [
        Binding(
            "f1,question_mark",
            "help",
            tr("Help", "Hilfe"),
            show=False,
            tooltip=tr("Every key of this screen", "Alle Tasten dieses Bildschirms"),
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            tr("palette", "Befehle"),  # the word Textual's footer shows
            show=False,
            priority=True,
            tooltip=tr("Find a command by its name", "Einen Befehl über seinen Namen finden"),
        ),
        Binding("ctrl+q", "quit", tr("Quit", "Beenden"), show=False, priority=True, tooltip=tr("Quit", "Beenden")),
    ]


def key_names() -> dict[str, str]:
    """Key names as the keyboard labels them, in German on a German one (Textual's are lower case English)."""
    return {
        "space": tr("Space", "Leertaste"),
        "delete": tr("Del", "Entf"),
        "pageup": tr("PgUp", "Bild↑"),
        "pagedown": tr("PgDn", "Bild↓"),
        "home": tr("Home", "Pos1"),
        "end": tr("End", "Ende"),
        "enter": "Enter",
    }


class OposApp(TypeAheadApp[None]):
    CSS_PATH = "app.tcss"
    TITLE = "opos-tui"

    ansi_theme_dark = Reactive(ANSI_COLOURS, init=False)
    """Set as the default, not in __init__: set there, it made Textual parse all of the app's CSS once more at
    the start (about 5 ms)."""

    cursor_blink = True
    """Whether the text cursor blinks in every field of every screen. The tests turn it off: a screenshot
    must never catch the cursor in its "off" half."""

    def __init__(self, home: Home, start: StartScreen = "main", check_config: bool = False) -> None:
        """``check_config``: validate config.toml once the first page (the queue, a settings form) is on the
        screen, and end with its :class:`ConfigError` (in :attr:`config_error`) if it is broken."""
        super().__init__()
        self.home = home
        self.start = start
        self.config_pending = check_config
        self.config_error: ConfigError | None = None
        set_bindings(self, app_keys())

    def on_mount(self) -> None:
        # Also the legacy Windows console, which has 16 colours too.
        if self.console.color_system in ("standard", "windows") and "TEXTUAL_THEME" not in os.environ:
            self.theme = ANSI_THEME

    def get_default_screen(self) -> Screen[Any]:
        """The first page (the queue, a settings form): the bottom of the screen stack, built once the app is
        mounted. Pushed from on_mount, it was laid out and drawn while Textual still held the app's first frame
        back, and that frame was thrown away: the first frame written lacked all that had not changed since, and
        the whole page came a refresh later. Keys typed before it is built wait in its queue until it is."""
        # Each screen is imported when it is first shown: the start pays only for the one it shows.
        if self.start == "settings":
            from opos_tui.screens.settings import SettingsScreen

            return SettingsScreen(self.home)
        if self.start in ("letters", "reports"):
            from opos_tui.screens.letters import LettersScreen, page_of

            return LettersScreen(self.home, page_of(self.start))
        from opos_tui.screens.queue import QueueScreen

        try:
            return QueueScreen(self.home)
        except OposError as exc:  # the queue file cannot be opened: say so plainly, no traceback
            self.call_later(self.exit, return_code=1, message=f"opos-tui: {exc}")
            return Screen()

    def on_page_shown(self) -> None:
        if self.config_pending:
            self.config_pending = False
            self.check_config()

    @work(thread=True, exit_on_error=False)
    def check_config(self) -> None:
        # Checking config.toml (pydantic, unless it is as last accepted) costs as much as the rest of the start: the
        # first page is painted first.
        from opos_tui.services import settings

        try:
            settings.load(self.home)
        except ConfigError as exc:
            self.config_error = exc
            self.call_from_thread(self.exit, return_code=1)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # A cursor blinks only while its field has the focus, so this reaches every field, on any screen.
        if not self.cursor_blink:
            # Only the tests turn the blinking off: the text area's module (about 5 ms) is not imported at the start.
            from textual.widgets import TextArea

            if isinstance(event.widget, Input | TextArea):
                event.widget.cursor_blink = False

    def get_key_display(self, binding: Binding) -> str:
        if binding.key_display:
            return binding.key_display
        modifiers, key = binding.parse_key()
        if key in key_names() and not modifiers:
            return key_names()[key]
        return super().get_key_display(binding)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        # Textual's own commands (theme, screenshot, its keys panel) speak English only: help and quit here.
        yield SystemCommand(
            tr("Keys: help", "Tasten: Hilfe"),
            tr("Every key of this screen", "Alle Tasten dieses Bildschirms"),
            self.action_help,
        )
        yield SystemCommand(tr("Quit", "Beenden"), tr("Quit opos-tui", "opos-tui beenden"), self.action_quit)
        # Every key of the current screen is also a command: found by its name, run without knowing the key.
        for entry in screen_keys(screen):
            if entry.node is self:  # help, the palette itself, quit: above
                continue
            keys = ", ".join(entry.keys)
            yield SystemCommand(
                entry.title, tr(f"key: {keys}", f"Taste: {keys}"), partial(self.run_action, entry.action, entry.node)
            )

    def action_command_palette(self) -> None:
        if not isinstance(self.screen, CommandPalette):
            self.push_screen(
                CommandPalette(placeholder=tr("Search for a command…", "Befehl suchen…"), id="--command-palette")
            )

    def action_help(self) -> None:
        screen = self.screen
        title = tr(f"Keys: {screen.sub_title or screen.title}", f"Tasten: {screen.sub_title or screen.title}")
        self.push_screen(KeysScreen(title, screen_keys(screen)))

    async def action_quit(self) -> None:
        from opos_tui.screens.form import SettingsForm
        from opos_tui.screens.queue import QueueScreen

        screen = self.screen
        if isinstance(screen, SettingsForm) and screen.dirty:
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
