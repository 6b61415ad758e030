"""Widgets shared by several screens."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, RadioButton, Static

from opos_tui.i18n import tr


class PageShown(Message):
    """The first page of a screen (the queue's first rows, a settings form) is painted: for the app, what can
    wait until then goes now."""


def once_painted(screen: Screen[Any], callback: Callable[[], object]) -> None:
    """Call ``callback`` once what the screen shows now is written to the terminal: after the refresh after the
    next one, as Textual runs what waits for a refresh before it writes that refresh's frame (and holds the
    app's first frame back until the app is mounted)."""
    screen.call_after_refresh(screen.call_after_refresh, callback)


class ConfirmScreen(ModalScreen[str | None]):
    """A question with a few answers as buttons; Esc answers None (cancel)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    ConfirmScreen .question { margin-bottom: 1; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: center; }
    ConfirmScreen Button { margin: 0 1; min-width: 12; }
    """

    def __init__(self, question: str, answers: dict[str, str]) -> None:
        super().__init__()
        self.question = question
        self.answers = answers

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="question")
            with Horizontal():
                for index, (answer, label) in enumerate(self.answers.items()):
                    yield Button(label, id=f"answer-{answer}", variant="primary" if index == 0 else "default")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("answer-"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class Choice(RadioButton):
    """A radio button whose state shows by its symbol too: colour alone is lost on some SSH terminals."""

    BUTTON_INNER = "○"

    def watch_value(self) -> None:
        self.BUTTON_INNER = "●" if self.value else "○"
        super().watch_value()


class Tick(Checkbox):
    """A checkbox that shows ✓ when ticked and nothing when not: an X in both states told them apart by colour
    only, which 16 colours lose."""

    BUTTON_INNER = " "

    def watch_value(self) -> None:
        self.BUTTON_INNER = "✓" if self.value else " "
        super().watch_value()


def set_bindings(node: DOMNode, bindings: Iterable[Binding]) -> None:
    """Give ``node`` these bindings, in place of any it has for the same keys.

    A class's BINDINGS are worded when its module is imported, before ``--lang`` is known; bindings set here
    are worded when the screen is made, and can change with its state (which keys the footer shows).
    """
    own = BindingsMap(bindings)
    node._bindings = BindingsMap.from_keys({**node._bindings.key_to_bindings, **own.key_to_bindings})


@dataclass(frozen=True)
class KeyHelp:
    """One action of a screen: its keys as shown to the user, its words, and the action and where it runs."""

    keys: tuple[str, ...]
    binding: Binding
    node: DOMNode
    action: str

    @property
    def title(self) -> str:
        """The long words (the palette's and help's); the footer's word is short."""
        return self.binding.tooltip or self.binding.description


def screen_keys(screen: Screen[Any]) -> list[KeyHelp]:
    """The keys a screen answers to right now, one entry per action, focused widget's first, then the screen's
    and the app's. A key counts when it has words: shown in the footer, or explained by a tooltip (Textual's
    own inner keys, such as an input field's cursor keys, have neither)."""
    found: dict[tuple[int, str], KeyHelp] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if not binding.description or not (binding.show or binding.tooltip):
            continue
        # A screen's "q" for app.quit and the app's own Ctrl+Q are one action with two keys.
        app_action = binding.action.startswith("app.")
        node, action = (screen.app, binding.action[4:]) if app_action else (active.node, binding.action)
        display = screen.app.get_key_display(binding)
        entry = found.get((id(node), action))
        keys = (*entry.keys, display) if entry else (display,)
        found[(id(node), action)] = KeyHelp(keys, entry.binding if entry else binding, node, action)
    return list(found.values())


class KeysScreen(ModalScreen[None]):
    """Every key of the screen below and what it does, built from that screen's bindings: a new screen has its
    help without writing one. Esc, q, ? or F1 close it."""

    DEFAULT_CSS = """
    KeysScreen { align: center middle; }
    KeysScreen > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 100%; border: thick $primary; background: $surface;
        padding: 0 1; border-title-style: bold; border-subtitle-color: $text-muted;
    }
    """

    def __init__(self, title: str, keys: Sequence[KeyHelp]) -> None:
        super().__init__()
        self.help_title = title
        self.keys = keys
        set_bindings(self, [Binding("escape,q,question_mark,f1", "close", tr("Close", "Schließen"), show=False)])

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()  # a long one wraps under itself, not under the keys
        for entry in self.keys:
            table.add_row(", ".join(entry.keys), entry.title)
        # Title and how to close it on the border: always in view, however long the list.
        with VerticalScroll(can_focus=True) as scroll:
            scroll.border_title = self.help_title
            scroll.border_subtitle = tr("↑ ↓ scroll · Esc closes", "↑ ↓ blättern · Esc schließt")
            yield Static(table, id="help-keys")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss()
