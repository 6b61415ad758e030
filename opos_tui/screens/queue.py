"""The send queue: operators review, check and send the pending mails.

The queue may hold 100,000 items after a month-end dunning run. A DataTable measures every cell on the event
loop, so the table only ever holds the rows that fit on the screen: the cursor's position is an index into
the filtered queue, and moving it reads the window around it from SQL (``Queue.page``). Filtering and search
are SQL too.

The event loop never touches the queue: another operator's transaction may hold it locked, and the screen must
keep taking keys meanwhile. Reads run in a worker, one at a time (the screen says it is reading, and after a
moment that it waits for the queue); operator actions look their targets up and apply themselves in workers.
A :class:`~opos_tui.screens.follow.QueueFollower` thread waits for other processes' changes (PostgreSQL wakes
it through LISTEN/NOTIFY) and the screen re-reads the window, keeping the cursor on its item and the selection
as it was. It also notices when queue.db was deleted or replaced: the screen then shows nothing stale, refuses
every action, and reopens the queue once a complete queue file is at its place again.

Sending runs in a thread with its own event loop and its own queue connection, so neither the SMTP dialogue
nor SQLite's fsyncs ever block the screen; it reports back with messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from email.utils import parseaddr
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, ProgressBar, Static

from opos_tui.i18n import tr
from opos_tui.screens.follow import QueueChanged, QueueFailed, QueueFollower, close_later, tell
from opos_tui.screens.status import POLL_SECONDS, STATUS_SYMBOL, arrive_twice, status_text, status_word, type_label
from opos_tui.screens.widgets import ConfirmScreen, PageShown, once_painted, set_bindings
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.services.queue import (
    DELETABLE,
    HOLDABLE,
    RELEASABLE,
    RETRYABLE,
    ActionResult,
    ItemRow,
    LetterType,
    Queue,
    QueueError,
    QueueGone,
    Status,
    UnknownItems,
    open_queue,
)

if TYPE_CHECKING:  # sending, the plausibility check and the transcript's log are imported when first used
    from textual.widgets import RichLog

    from opos_tui.services.dispatcher import Progress
    from opos_tui.services.send_run import Checking, Finished, Plan, RunEvent, SendRun, Started


def check_text(plausible: bool | None) -> Text:
    """The plausibility flag: ⚠ mismatch, ✓ checked, · not checked yet."""
    if plausible is None:
        return Text("·", style="dim")
    return Text("✓", style="green") if plausible else Text("⚠", style="bold red")


def addresses(row: ItemRow) -> str:
    """The To addresses (the names are in the customer column and the detail), the first ones in full."""
    return ", ".join(parseaddr(to)[1] or to for to in row.to)


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# Which rows each filter key shows; None = all.
FILTERS: dict[str, Status | None] = {
    "1": Status.PENDING,
    "2": Status.HELD,
    "3": Status.FAILED,
    "4": Status.DEFERRED,
    "5": Status.UNCERTAIN,
    "6": Status.SENT,
    "0": None,
}


def filter_word(status: Status | None) -> str:
    return status_word(status) if status is not None else tr("all", "alle")


# --- what the operator actions apply to, and how they are told ---------------------------------------------

ACTIONS: dict[str, frozenset[Status]] = {
    "hold": HOLDABLE,
    "release": RELEASABLE,
    "retry": RETRYABLE,
    "delete": DELETABLE,
}
"""The statuses each operator action of the list can change."""


def done_word(action: str) -> str:
    return {
        "hold": tr("held", "angehalten"),
        "release": tr("released", "freigegeben"),
        "retry": tr("back to pending", "wieder wartend"),
        "delete": tr("deleted", "gelöscht"),
    }[action]


def nothing_to(action: str) -> str:
    return {
        "hold": tr("Nothing to hold", "Nichts anzuhalten"),
        "release": tr("Nothing to release", "Nichts freizugeben"),
        "retry": tr("Nothing to retry", "Nichts zu wiederholen"),
        "delete": tr("Nothing to delete", "Nichts zu löschen"),
    }[action]


def summary(statuses: Mapping[int, Status]) -> str:
    """What the items are: ``#33 sent`` for one, ``3 sent, 2 held`` for more."""
    if len(statuses) == 1:
        ((item, status),) = statuses.items()
        return f"#{item} {status_word(status)}"
    return ", ".join(f"{n:,} {status_word(s)}" for s, n in Counter(statuses.values()).items())


# --- messages from the worker threads ---------------------------------------------------------------------


BUSY_AFTER_SECONDS = 0.3
"""A read that takes longer than this is shown as waiting for the queue (another operator holds a lock)."""


@dataclass(frozen=True)
class Want:
    """What the screen asks the queue for: the window of ``window`` rows around row ``cursor`` of a filter,
    scrolled as little as possible from ``top``; around ``item`` instead, wherever it stands now, if given."""

    status: Status | None
    search: str
    cursor: int
    top: int
    window: int
    item: int | None = None
    counts: bool = False
    """The items per status too (for the line above the table)."""


@dataclass(frozen=True)
class Window:
    """What a read brought back."""

    version: int
    """The queue's change probe before the read: what was read is at least this new."""
    total: int
    cursor: int
    top: int
    rows: list[ItemRow]
    counts: dict[Status, int] | None


def scrolled(cursor: int, top: int, window: int, total: int) -> tuple[int, int]:
    """The cursor kept inside the ``total`` rows, and the first row of a ``window`` that shows it, moved from
    ``top`` as little as possible."""
    cursor = max(0, min(cursor, total - 1))
    if cursor < top:
        top = cursor
    elif cursor >= top + window:
        top = cursor - window + 1
    return cursor, max(0, min(top, total - window))


def read_window(queue: Queue, want: Want) -> Window:
    """Read what ``want`` asks for (in a worker thread)."""
    version = queue.version()
    total = queue.count(want.status, want.search)
    cursor = want.cursor if want.item is None else queue.position(want.item, want.status, want.search)
    cursor, top = scrolled(cursor, want.top, want.window, total)
    rows = queue.page(want.status, want.search, offset=top, limit=want.window)
    return Window(version, total, cursor, top, rows, queue.counts() if want.counts else None)


def statuses_of(queue: Queue, ids: list[int]) -> dict[int, Status]:
    """The status of each of ``ids`` still in the queue: another operator may have deleted some meanwhile."""
    while ids:
        try:
            return queue.statuses(ids)
        except UnknownItems as exc:
            gone = set(exc.ids)
            ids = [i for i in ids if i not in gone]
    return {}


@dataclass
class Examined(Message):
    """The statuses of an action's targets are read."""

    action: str
    ids: list[int]
    found: dict[int, Status]


@dataclass
class Acted(Message):
    """An action is done: what it changed, what it skipped, and which targets were deleted meanwhile."""

    action: str
    result: ActionResult
    gone: set[int]


@dataclass
class ActionFailed(Message):
    """An action on the selected mails (hold, retry, delete, ...) failed, and why."""

    error: OposError


@dataclass
class Matching(Message):
    """The ids of every mail the filter and search show (select all)."""

    ids: list[int]


@dataclass
class WindowRead(Message):
    """The rows a worker read for the table, or why it could not."""

    want: Want
    window: Window | None
    error: QueueError | None


@dataclass
class QueueUnopenable(Message):
    """While lost: the file now at the queue's path cannot be opened, and why."""

    why: str


@dataclass
class QueueFound(Message):
    """While lost: a complete queue file is at the queue's path again, opened."""

    queue: Queue


@dataclass
class SendPlan(Message):
    """The items to send are checked; some may be flagged."""

    plan: Plan
    everything: bool
    """Every pending mail was asked for (S), not chosen ones."""


@dataclass
class RunUpdate(Message):
    """An event of the screen's send run, from the worker that runs it."""

    event: RunEvent


# --- the table ----------------------------------------------------------------------------------------


def table_keys() -> list[Binding]:
    """The keys that move through the queue: the table's own, worded for the help screen."""

    def key(keys: str, action: str, title: str) -> Binding:
        return Binding(keys, action, title, show=False, tooltip=title)

    return [
        key("up", "cursor_up", tr("Previous mail", "Vorige Mail")),
        key("down", "cursor_down", tr("Next mail", "Nächste Mail")),
        key("pageup", "page_up", tr("One page up", "Eine Seite zurück")),
        key("pagedown", "page_down", tr("One page down", "Eine Seite vor")),
        key("home,ctrl+home", "scroll_home", tr("First mail", "Erste Mail")),
        key("end,ctrl+end", "scroll_end", tr("Last mail", "Letzte Mail")),
        key("left", "cursor_left", tr("Scroll the columns left", "Spalten nach links schieben")),
        key("right", "cursor_right", tr("Scroll the columns right", "Spalten nach rechts schieben")),
    ]


class QueueTable(DataTable[Text | str], inherit_bindings=False):
    """Shows one window of the queue; the keys that move its cursor move the screen's cursor through the whole
    filtered queue instead. Enter (open the mail) is the screen's key."""

    def __init__(self, move: Callable[[str], None], resized: Callable[[], None], classes: str = "") -> None:
        super().__init__(id="queue-table", classes=classes, cursor_type="row", zebra_stripes=False)
        self.move = move
        self.resized = resized
        set_bindings(self, table_keys())

    def on_resize(self) -> None:
        # The terminal changed, or the progress or transcript panel took or gave back room: a new window size.
        self.call_after_refresh(self.resized)

    def action_cursor_up(self) -> None:
        self.move("up")

    def action_cursor_down(self) -> None:
        self.move("down")

    def action_page_up(self) -> None:
        self.move("pageup")

    def action_page_down(self) -> None:
        self.move("pagedown")

    def action_scroll_home(self) -> None:
        self.move("home")

    def action_scroll_end(self) -> None:
        self.move("end")


@dataclass(frozen=True)
class Column:
    """One column of the table: what it shows, its heading and its width."""

    key: str
    label: str
    width: int


FIXED_COLUMNS = 3
"""Selection mark, number and status stay at the left when the columns scroll."""


def columns(width: int, number_width: int) -> list[Column]:
    """The table's columns for a terminal ``width`` cells wide, most important first. Number and status (what
    the dialogs and the counts name) come first; the recipient's address gets the most of the remaining room;
    customer, subject and last error grow with the terminal (the last error of the mail under the cursor
    always shows in the line under the table)."""
    fixed = [
        Column("sel", " ", 1),
        Column("number", "#", number_width),
        Column("status", tr("Status", "Status"), max(status_text(s).cell_len for s in Status)),
        Column("check", "✓", 1),
        Column("type", tr("Type", "Art"), max(len(type_label(t, 9)) for t in LetterType)),
    ]
    padding = 2  # DataTable's cell padding, one each side
    scrollbar = 2
    room = width - scrollbar - sum(c.width + padding for c in fixed) - 4 * padding
    customer = max(12, min(room * 3 // 10, 30))
    to = max(20, min(room // 2, 48))
    subject = max(20, min(room - customer - to, 60))
    error = max(30, min(room - customer - to - subject, 80))
    return [
        *fixed,
        Column("customer", tr("Customer", "Kunde"), customer),
        Column("to", tr("Recipient", "Empfänger"), to),
        Column("subject", tr("Subject", "Betreff"), subject),
        Column("error", tr("Last error", "Letzter Fehler"), error),
        Column("att", "📎", 2),
        Column("tries", tr("Tries", "Vers."), 5),
    ]


class ProgressPanel(Vertical):
    """The sending progress: what the run is doing, and a bar."""

    def __init__(self) -> None:
        self.label = Static("", id="progress-label")
        self.bar = ProgressBar(id="progress-bar", show_eta=False)
        super().__init__(self.label, self.bar, id="progress")


class SearchInput(Input):
    """The incremental search: Enter goes back to the table keeping the search, Esc clears it."""

    def __init__(self) -> None:
        super().__init__(
            placeholder=tr(
                "/ search recipient, customer, document, subject", "/ Suche: Empfänger, Kunde, Beleg, Betreff"
            ),
            id="search",
            compact=True,
        )
        set_bindings(
            self,
            [
                Binding(
                    "enter",
                    "submit",
                    tr("List", "Liste"),
                    tooltip=tr("Back to the list, keeping the search", "Zurück zur Liste, Suche bleibt"),
                ),
                Binding(
                    "escape",
                    "clear",
                    tr("Clear", "Leeren"),
                    tooltip=tr("Clear the search, back to the list", "Suche leeren, zurück zur Liste"),
                ),
            ],
        )

    def action_clear(self) -> None:
        self.value = ""
        self.screen.query_one(QueueTable).focus()


def queue_keys(shown: Collection[str] = ()) -> list[Binding]:
    """The keys of the queue screen, the actions in ``shown`` in the footer: its word is short, the title
    (help screen, command palette) says what it does."""

    def key(keys: str, action: str, word: str, title: str, id: str | None = None) -> Binding:
        return Binding(keys, action, word, show=action in shown, id=id or f"queue.{action}", tooltip=title)

    return [
        key("enter", "open", tr("Open", "Öffnen"), tr("Open the mail", "Mail öffnen")),
        key(
            "escape",
            "stop",
            tr("Stop", "Stopp"),
            tr("Stop sending after the current mail", "Senden nach der laufenden Mail anhalten"),
        ),
        key(
            "t",
            "transcript",
            tr("Log", "Protokoll"),
            tr("Show or hide the sending transcript", "Sendeprotokoll zeigen oder verbergen"),
        ),
        key(
            "space",
            "toggle_select",
            tr("Select", "Wählen"),
            tr("Select or unselect the mail", "Mail aus- oder abwählen"),
        ),
        key(
            "a",
            "select_all",
            tr("All", "Alle"),
            tr("Select all shown mails (again: none)", "Alle gezeigten Mails wählen (nochmal: keine)"),
        ),
        key("s", "send_selected", tr("Send", "Senden"), tr("Send the selected mails", "Gewählte Mails senden")),
        key(
            "S", "send_all", tr("Send all", "Alle senden"), tr("Send all pending mails", "Alle wartenden Mails senden")
        ),
        key("h", "hold", tr("Hold", "Anhalten"), tr("Hold the selected mails", "Gewählte Mails anhalten")),
        key(
            "u",
            "release",
            tr("Release", "Freigeben"),
            tr("Release the selected held mails", "Gewählte angehaltene Mails freigeben"),
        ),
        key(
            "r",
            "retry",
            tr("Retry", "Wiederholen"),
            tr(
                "Retry the selected failed, deferred or uncertain mails",
                "Gewählte fehlerhafte, verschobene oder unsichere Mails wieder einreihen",
            ),
        ),
        key(
            "d,delete",
            "delete",
            tr("Delete", "Löschen"),
            tr("Delete the selected unsent mails", "Gewählte ungesendete Mails löschen"),
        ),
        key(
            "slash",
            "search",
            tr("Search", "Suchen"),
            tr("Search recipient, customer, document, subject", "Suchen in Empfänger, Kunde, Beleg, Betreff"),
        ),
        *(
            key(
                k,
                f"filter('{k}')",
                filter_word(s),
                tr(f"Show only {filter_word(s)} mails", f"Nur Mails mit Status „{filter_word(s)}“ zeigen")
                if s is not None
                else tr("Show all mails and clear the search", "Alle Mails zeigen und die Suche leeren"),
                id=f"queue.filter.{s.value if s else 'all'}",
            )
            for k, s in FILTERS.items()
        ),
        key("c", "settings", tr("Settings", "Einstellungen"), tr("E-mail settings", "E-Mail-Einstellungen")),
        key(
            "l",
            "letters",
            tr("Letters", "Briefe"),
            tr(
                "Letter reports: texts per report, preview, retry and send limits",
                "Brief-Reports: Texte je Report, Vorschau, Wiederholung und Sendegrenzen",
            ),
        ),
        key(
            "question_mark",
            "app.help",
            tr("Help", "Hilfe"),
            tr("Every key of this screen", "Alle Tasten dieses Bildschirms"),
        ),
        key("q", "app.quit", tr("Quit", "Beenden"), tr("Quit", "Beenden")),
    ]


FOOTER_IDLE = (
    "open",
    "send_selected",
    "send_all",
    "app.help",
    "app.quit",
    "toggle_select",
    "search",
    "retry",
    "delete",
    "hold",
    "release",
    "settings",
    "select_all",
    "transcript",
)
"""The keys the footer shows while nothing is being sent, most important first: as many as fit the width."""

FOOTER_SENDING = (
    "stop",
    "transcript",
    "app.help",
    "app.quit",
    "open",
    "toggle_select",
    "search",
    "hold",
    "settings",
)
"""While sending: stop and the transcript first; sending again is not possible meanwhile."""


def footer_fit(widths: Sequence[tuple[str, int]], room: int) -> list[str]:
    """The actions, in their order of importance, whose footer entries (key, word and a gap) fit ``room``
    cells; one that does not fit leaves room for a shorter one after it."""
    shown: list[str] = []
    for action, width in widths:
        if width + 1 <= room:
            shown.append(action)
            room -= width + 1
    return shown


class QueueScreen(Screen[None]):
    """The send queue: table, filters, search, selection, actions and the sending progress."""

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home
        self.queue = open_queue(home)
        self.status_filter: Status | None = None
        self.search = ""
        self.total = 0
        self.top = 0
        self.cursor = 0
        self.cursor_id: int | None = None
        self.rows: list[ItemRow] = []
        self.selected: set[int] = set()
        self.status_counts: dict[Status, int] = dict.fromkeys(Status, 0)
        self.loaded = False
        """Whether the first read came back: until then the screen says it is reading, not that it is empty."""
        self.reading = False
        """Whether a read of the queue is under way (one at a time)."""
        self.moved_to: int | None = None
        """Where a key moved the cursor while the rows there are still being read."""
        self.wanted: Want | None = None
        """What to read as soon as the read under way is back; None when nothing more is wanted."""
        self._busy_timer: Timer | None = None
        self.slow = False
        """Whether the read under way takes long: the screen says it waits for the queue."""
        self.follower: QueueFollower | None = None
        """Follows other processes' changes; started by the first read that succeeds."""
        self.leaving = threading.Event()
        """Set when the screen goes: the threads it started end."""
        self.acting: str | None = None
        """The list action (hold, release, retry, delete, select all) under way until its outcome is shown:
        pressing its key again meanwhile does nothing."""
        self.sending = False
        self.quit_when_done = False
        self._stop = threading.Event()
        """Esc while sending: told to the run, or to the next one if the worker has not made it yet."""
        self._run: SendRun | None = None
        """The run a worker is driving (its plan or its sending), None in between."""
        self._checking = False
        self.painted = False
        """Whether the first rows are on the screen. What can wait (the app's check of config.toml, the plausibility
        check of the rows shown, both heavy imports and work in threads that share the interpreter with this one)
        goes only then, so as not to hold up their paint."""
        self.lost: str | None = None
        """Why the queue cannot be shown (its file was deleted or replaced); None while it can."""
        self.unopenable: str | None = None
        """Why the file now at the queue's path cannot be opened instead, while lost."""
        self.ask_hint = ""
        """While sending through a mail program that may prompt: saying so; else empty."""
        self.table_layout: tuple[int, int] | None = None
        """The terminal width and number width the table's columns were made for."""
        self.widths: dict[str, int] = {}
        self.progress_panel: ProgressPanel | None = None
        """The sending progress, once a run started (progress())."""
        set_bindings(self, queue_keys())
        # The first read goes at once, while the screen is built: its rows are back for the first paint.
        self.reload(keep_item=False)

    # --- building -----------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="counts")
        with Horizontal(id="search-bar"):
            yield SearchInput()
            yield Static("", id="position")
        # Empty until the first read is back: styled so as they are mounted, not restyled at once by on_mount.
        yield QueueTable(self.move, self.reload, classes="-empty")
        yield Static("", id="current", classes="-empty")
        yield Static("", id="empty-hint", classes="-empty")
        # The sending progress is made when a run first starts (progress()), the sending transcript when first
        # written or shown (transcript()).
        yield Footer(compact=True, show_command_palette=False)  # ^p is in the help (?); 80 columns are few

    def on_mount(self) -> None:
        self.title = "opos-tui"
        self.sub_title = tr("Send queue", "Sendewarteschlange")
        self.table.fixed_columns = FIXED_COLUMNS
        self.table.focus()
        self.update_keys()
        self.update_position()

    def on_resize(self) -> None:
        self.update_keys()

    def update_keys(self) -> None:
        """Which keys the footer shows: the most important ones of this state that fit the terminal's width."""
        every = {b.action: b for b in queue_keys()}
        widths = []
        for action in FOOTER_SENDING if self.sending else FOOTER_IDLE:
            binding = every[action]
            shown_key = self.app.get_key_display(replace(binding, key=binding.key.split(",")[0]))
            widths.append((action, cell_len(shown_key) + 1 + cell_len(binding.description)))
        set_bindings(self, queue_keys(footer_fit(widths, self.app.size.width)))
        self.refresh_bindings()

    # --- reading the queue --------------------------------------------------------------------------------
    # Every read runs in a worker (a lock another operator holds must never freeze the screen), one at a time:
    # what is asked for meanwhile waits, the latest wish replacing earlier ones, and goes once the read is back.

    @property
    def table(self) -> QueueTable:
        return self.query_one(QueueTable)

    @property
    def working(self) -> bool:
        """Whether a read or an action this screen started is still under way (not a send run), or the first
        read is still to come."""
        return self.reading or self.acting is not None or (not self.loaded and self.lost is None)

    def window(self) -> int:
        """How many rows fit: the table's height without its header (and horizontal scrollbar); 20 until the
        table is laid out (the first read starts as the screen is made, and the table reads again once it has its
        size)."""
        tables = self.query(QueueTable)
        height = tables.first().scrollable_content_region.height - 1 if tables else 0
        return height if height > 0 else 20

    def reload(self, keep_item: bool = True) -> None:
        """Re-read counts and the window around the cursor; the cursor stays on its item if it still shows (or
        goes where a key moved it, if that read is not back yet)."""
        if not keep_item:
            self.moved_to = None
        elif self.moved_to is not None:
            self.read(self.moved_to, counts=True)
            return
        keep = keep_item and self.cursor_id is not None
        self.read(self.cursor if keep else 0, item=self.cursor_id if keep else None, counts=True)

    def read(self, cursor: int, item: int | None = None, counts: bool = False) -> None:
        """Ask for the window around row ``cursor`` (or around ``item``, wherever it stands now)."""
        if self.lost is not None:
            return
        want = Want(self.status_filter, self.search, cursor, self.top, self.window(), item, counts)
        if self.wanted is not None and self.wanted.counts:
            want = replace(want, counts=True)
        self.wanted = want
        if not self.reading:
            self.read_next()

    def read_next(self) -> None:
        want, self.wanted = self.wanted, None
        if want is None:
            return
        self.reading = True
        self._busy_timer = self.set_timer(BUSY_AFTER_SECONDS, self.show_busy)
        self.read_window(want)

    @work(thread=True, group="queue-read", exit_on_error=False)
    def read_window(self, want: Want) -> None:
        try:
            tell(self, WindowRead(want, read_window(self.queue, want), None))
        except QueueError as exc:
            tell(self, WindowRead(want, None, exc))

    @on(WindowRead)
    def window_read(self, message: WindowRead) -> None:
        self.reading = self.slow = False
        self.loaded = True  # or failed: the screen says why
        if self._busy_timer is not None:
            self._busy_timer.stop()
            self._busy_timer = None
        if self.lost is not None:
            return
        if message.error is not None:
            self.cannot_read(message.error)
        elif message.window is not None and (message.want.status, message.want.search) == (
            self.status_filter,
            self.search,
        ):
            if message.want.item is None and message.want.cursor == self.moved_to:
                self.moved_to = None  # the cursor is where the key moved it
            self.show_window(message.window)
        self.read_next()

    def cannot_read(self, error: QueueError) -> None:
        if isinstance(error, QueueGone):
            self.lose(error)
            return
        self.notify(str(error), severity="error")
        self.update_position()

    def show_window(self, shown: Window) -> None:
        self.total, self.top, self.rows = shown.total, shown.top, shown.rows
        if shown.counts is not None:
            self.status_counts = shown.counts
        self.fill()
        self.place(shown.cursor)
        self.update_counts()
        if self.follower is None:
            self.follower = QueueFollower(self, self.queue, shown.version)
        if not self.painted:
            once_painted(self, self.page_painted)

    def page_painted(self) -> None:
        if not self.painted:
            self.painted = True
            self.post_message(PageShown())
            self.check_visible()

    def show_busy(self) -> None:
        """A read takes long (another operator holds the queue locked): say so where the position shows."""
        self._busy_timer = None
        self.slow = True
        self.update_position()

    @on(QueueChanged)
    def queue_changed(self) -> None:
        self.reload()

    @on(QueueFailed)
    def queue_failed(self, message: QueueFailed) -> None:
        if self.follower is not None:
            self.follower.stop()
            self.follower = None  # a new one starts with the next read that succeeds
        self.cannot_read(message.error)

    def on_unmount(self) -> None:
        self.leaving.set()
        if self.follower is not None:
            self.follower.stop()
        close_later(self.queue)

    def lose(self, why: QueueError) -> None:
        """The queue file was deleted or replaced: show nothing stale, and refuse every action until it is back."""
        if self.lost is not None:
            return
        self.lost = str(why)
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        close_later(self.queue)
        self.rows, self.selected = [], set()
        self.total = self.top = self.cursor = 0
        self.cursor_id = self.moved_to = None
        self.table.clear()
        self.query_one("#empty-hint").add_class("-lost")
        self.query_one("#counts", Static).update(
            Text(tr("⚠ the queue is gone", "⚠ die Warteschlange ist weg"), style="bold red")
        )
        self.update_position()
        self.refresh_bindings()
        self.notify(self.lost, severity="error")
        threading.Thread(target=self.watch_for_queue, name="queue-reopen", daemon=True).start()

    def watch_for_queue(self) -> None:
        """In a thread of its own while lost: open the queue file now at the path once it is complete (there, not
        empty, unchanged since the last look). Never makes a new queue."""
        seen: tuple[int, int, int] | None = None
        unopenable: str | None = None
        while not self.leaving.wait(POLL_SECONDS):
            try:
                stat = os.stat(self.home.queue_db)
            except OSError:
                seen = None
                continue
            found = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if stat.st_size == 0 or found != seen:
                seen = found
                continue
            try:
                queue = open_queue(self.home, create=False)
            except QueueError as exc:
                if str(exc) != unopenable:
                    unopenable = str(exc)
                    tell(self, QueueUnopenable(unopenable))
                continue
            tell(self, QueueFound(queue))
            return

    @on(QueueUnopenable)
    def queue_unopenable(self, message: QueueUnopenable) -> None:
        self.unopenable = message.why
        self.show_empty_hint()

    @on(QueueFound)
    def queue_found(self, message: QueueFound) -> None:
        self.queue, self.lost, self.unopenable = message.queue, None, None
        self.query_one("#empty-hint").remove_class("-lost")
        self.refresh_bindings()
        self.notify(
            tr(f"Reopened the queue {self.home.queue_db}.", f"Warteschlange {self.home.queue_db} wieder geöffnet.")
        )
        self.reload(keep_item=False)

    def place(self, cursor: int) -> None:
        """Put the cursor on row ``cursor`` of the filtered queue, which the rows read show."""
        self.cursor = max(0, min(cursor, self.total - 1))
        if self.rows:
            index = max(0, min(self.cursor - self.top, len(self.rows) - 1))
            self.cursor_id = self.rows[index].id
            self.table.move_cursor(row=index, animate=False, scroll=False)
        else:
            self.cursor_id = None
        self.update_position()
        self.check_visible()

    def fill(self) -> None:
        table = self.table
        # The number column grows with the numbers and never shrinks back: columns that change while paging
        # would jump under the reader's eyes.
        number_width = max([self.table_layout[1] if self.table_layout else 2, *(len(str(r.id)) for r in self.rows)])
        layout = (self.app.size.width, number_width)
        if layout != self.table_layout:
            self.table_layout = layout
            table.clear(columns=True)
            for column in columns(*layout):
                table.add_column(column.label, key=column.key, width=column.width)
                self.widths[column.key] = column.width
        else:
            table.clear()
        widths = self.widths
        for row in self.rows:
            customer = " ".join(x for x in (row.customer_number, row.customer_name) if x)
            table.add_row(
                Text("●", style="bold") if row.id in self.selected else " ",
                Text(str(row.id), justify="right"),
                status_text(row.status),
                check_text(row.plausible),
                type_label(row.type, row.level),
                Text(clip(customer, widths["customer"])),  # Text: what a mail says is never taken for markup
                Text(clip(addresses(row), widths["to"])),
                Text(clip(row.subject, widths["subject"])),
                Text(clip(row.error or "", widths["error"]), style="red" if row.error else ""),
                str(len(row.attachments)),
                str(row.attempts),
                key=str(row.id),
            )

    def move(self, where: str) -> None:
        if self.lost is not None:
            return
        step = {"up": -1, "down": 1, "pageup": -self.window(), "pagedown": self.window()}
        if where == "home":
            self.move_to(0)
        elif where == "end":
            self.move_to(self.total - 1)
        else:
            self.move_to(self.cursor + step[where])

    def move_to(self, cursor: int) -> None:
        """Move the cursor at once where the rows shown reach; read the window around it where they do not, or
        when a read is under way (what it brings back may be another window)."""
        cursor = max(0, min(cursor, self.total - 1))
        if self.top <= cursor < self.top + len(self.rows):
            self.place(cursor)
            if not self.reading:
                self.moved_to = None
                return
        self.moved_to = cursor
        self.read(cursor)

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        # A mouse click moves the table's own cursor: follow it.
        if 0 <= event.cursor_row < len(self.rows):
            self.cursor = self.top + event.cursor_row
            self.cursor_id = self.rows[event.cursor_row].id
            self.update_position()

    def update_counts(self) -> None:
        counts = self.status_counts
        total = sum(counts.values())

        def line(symbols: bool, words: bool) -> Text:
            text = Text()
            for key, status in FILTERS.items():
                number = total if status is None else counts[status]
                symbol, style = STATUS_SYMBOL[status] if status is not None else ("∑", "bold")
                name = " ".join([symbol] * symbols + [filter_word(status)] * words)
                part = Text.assemble((key, "reverse"), (name, style), f" {number:,}")
                if status == self.status_filter:
                    part.stylize("bold underline", 1)
                text.append_text(part)
                text.append(" ")
            if counts[Status.SENDING]:
                text.append_text(Text(f"» {counts[Status.SENDING]:,}", style="cyan"))
            return text

        # Symbols and words where they fit; at 80 columns words, or with large numbers only the symbols.
        width = self.size.width - 2
        for shown in (line(True, True), line(False, True), line(True, False)):
            if shown.cell_len <= width:
                break
        self.query_one("#counts", Static).update(shown)

    def update_position(self) -> None:
        parts = []
        if self.slow:
            parts.append(tr("⏳ waiting for the queue", "⏳ warte auf die Warteschlange"))
        if not self.loaded:
            parts.append(tr("reading…", "lese…"))
        elif self.total:
            parts.append(f"{self.cursor + 1:,}/{self.total:,}")
        else:
            parts.append(tr("no items", "keine Einträge"))
        self.show_empty_hint()
        if self.selected:
            parts.append(tr(f"{len(self.selected):,} selected", f"{len(self.selected):,} gewählt"))
        flagged = sum(1 for r in self.rows if r.plausible is False)
        if flagged:
            parts.append(tr(f"⚠ {flagged} here", f"⚠ {flagged} hier"))
        self.query_one("#position", Static).update(" · ".join(parts))
        self.update_current()

    def update_current(self) -> None:
        """The mail under the cursor in one line: its number, every address in full and its last error, which
        the columns cut or leave to the right at 80 columns."""
        row = next((r for r in self.rows if r.id == self.cursor_id), None)
        line = Text(no_wrap=True, overflow="ellipsis")
        if row is not None:
            line.append(f"#{row.id} ", style="bold")
            line.append(addresses(row))
            if row.error:
                line.append(" · ")
                line.append(" ".join(row.error.split()), style="red")
            line.append(f" · {row.subject}", style="dim")
        line.truncate(max(self.size.width - 2, 1), overflow="ellipsis")
        self.query_one("#current", Static).update(line)

    def show_empty_hint(self) -> None:
        """What a newcomer can do when there is nothing to show, instead of an empty table."""
        hint = self.query_one("#empty-hint", Static)
        for widget in (self.table, self.query_one("#current"), hint):
            widget.set_class(not self.total, "-empty")
        if self.lost is not None:
            text = tr(
                f"⚠ {self.lost}.\nWhat this screen showed is no longer the queue, so it shows nothing and every"
                " action is off. It reopens by itself once a queue file is there again.",
                f"⚠ {self.lost}.\nWas hier stand, ist nicht mehr die Warteschlange: nichts wird gezeigt, keine"
                " Aktion ist möglich. Sie öffnet sich von selbst, sobald wieder eine Datei da ist.",
            )
            if self.unopenable is not None:
                text += tr(
                    f"\nThe file there now is not opened: {self.unopenable}.",
                    f"\nDie Datei, die jetzt dort liegt, wird nicht geöffnet: {self.unopenable}.",
                )
            hint.update(text)
            return
        if self.total:
            return
        if not self.loaded:
            hint.update(tr("Reading the queue…", "Lese die Warteschlange…"))
            return
        if self.status_filter is not None or self.search:
            hint.update(
                tr(
                    "Nothing matches. 0 shows all mails and clears the search; so does Esc in the search field.",
                    "Keine Treffer. 0 zeigt alle Mails und leert die Suche; Esc im Suchfeld leert sie auch.",
                )
            )
            return
        inbox = self.home.spool_dir / "inbox"
        hint.update(
            tr(
                "No mails in the queue yet.\n"
                "Queue one:  opos-tui enqueue --type dunning --level 1 --to ADDR --attach FILE.pdf "
                "--var customer_name=… --var document_number=…\n"
                f"or drop manifests into {inbox} and run  opos-tui import\n"
                "c opens the settings (server, sender); Ctrl+T there tests the connection.",
                "Noch keine Mails in der Warteschlange.\n"
                "Einreihen:  opos-tui enqueue --type dunning --level 1 --to ADRESSE --attach DATEI.pdf "
                "--var customer_name=… --var document_number=…\n"
                f"oder Manifeste in {inbox} ablegen und  opos-tui import  ausführen\n"
                "c öffnet die Einstellungen (Server, Absender); dort testet Strg+T die Verbindung.",
            )
        )

    # --- the plausibility check of what is on screen --------------------------------------------------------

    def check_visible(self) -> None:
        if not self.painted:
            return  # once they are (page_painted)
        todo = [r.id for r in self.rows if r.plausible is None]
        if todo and not self._checking:
            self._checking = True
            self.check_rows(todo)

    @work(thread=True, group="check", exit_on_error=False)
    def check_rows(self, ids: list[int]) -> None:
        # A queue gone or busy meanwhile is not this worker's to report: the next poll says so.
        try:
            from opos_tui.services import plausibility

            with contextlib.suppress(QueueError), self.queue.another() as q:
                plausibility.check_items(q, ids)
        finally:
            self._checking = False
        # Storing the results moved the change probe: the next poll shows the flags.

    # --- selection and filters ----------------------------------------------------------------------------

    def targets(self) -> list[int]:
        """The selected items, or the one under the cursor when nothing is selected."""
        if self.selected:
            return sorted(self.selected, reverse=True)
        return [self.cursor_id] if self.cursor_id is not None else []

    def action_toggle_select(self) -> None:
        if self.cursor_id is None:
            return
        self.selected ^= {self.cursor_id}
        self.fill_keep()
        self.move_to(self.cursor + 1)

    def fill_keep(self) -> None:
        index = self.table.cursor_row
        self.fill()
        self.table.move_cursor(row=index, animate=False, scroll=False)
        self.update_position()

    def action_select_all(self) -> None:
        if self.acting is None:
            self.acting = "select_all"
            self.select_all(self.status_filter, self.search)

    @work(thread=True, group="act", exit_on_error=False)
    def select_all(self, status: Status | None, search: str) -> None:
        try:
            with self.queue.another() as q:
                tell(self, Matching(q.ids(status, search)))
        except OposError as exc:
            tell(self, ActionFailed(exc))

    @on(Matching)
    def matching(self, message: Matching) -> None:
        """Select all the mails shown; all of them again: none."""
        self.acting = None
        matching = set(message.ids)
        self.selected = set() if matching and matching <= self.selected else matching
        self.fill_keep()

    def action_filter(self, key: str) -> None:
        self.status_filter = FILTERS[key]
        if self.status_filter is None and self.search:  # all mails: no search either
            self.query_one("#search", Input).value = self.search = ""
        self.reload(keep_item=False)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        if event.value != event.input.value:
            return  # more keys were typed meanwhile: one search for the last of them, not one per key
        self.search = event.value
        self.reload(keep_item=False)

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.sending
        if self.lost is not None:
            return action in ("settings", "transcript")  # nothing on a queue that is not there
        return True

    # --- operator actions ---------------------------------------------------------------------------------
    # Each looks the targets' statuses up in a worker first, asks where it must, then applies itself in a
    # worker; its key does nothing while the same screen's action is under way.

    def examine(self, action: str) -> None:
        """Start ``action`` (hold, release, retry, delete) on the targets: their statuses are read first."""
        if self.acting is not None:
            return
        ids = self.targets()
        if not ids:
            self.notify(tr("Nothing selected.", "Nichts ausgewählt."), severity="warning")
            return
        self.acting = action
        self.look_up(action, ids)

    @work(thread=True, group="act", exit_on_error=False)
    def look_up(self, action: str, ids: list[int]) -> None:
        try:
            with self.queue.another() as q:
                found = statuses_of(q, ids)
        except OposError as exc:
            tell(self, ActionFailed(exc))
            return
        tell(self, Examined(action, ids, found))

    @on(Examined)
    def examined(self, message: Examined) -> None:
        """The targets' statuses are known: go on, or say why the action can change none of them."""
        action, ids, found = message.action, message.ids, message.found
        will = [i for i in ids if found.get(i) in ACTIONS[action]]
        if not will:
            self.acting = None
            self.notify(f"{nothing_to(action)} ({summary(found)}).", severity="warning")
        elif action == "retry":
            self.ask_retry(ids, found, will)
        elif action == "delete":
            self.ask_delete(found, will)
        else:  # hold, release: without asking, saying what changed and what could not
            self.apply(action, ids)

    @work(thread=True, group="act", exit_on_error=False)
    def apply(self, action: str, ids: list[int]) -> None:
        """Apply a queue action in a worker: with a selection of 100,000 items it is one long write transaction."""
        gone: set[int] = set()
        try:
            with self.queue.another() as q:
                method: Callable[[list[int]], ActionResult] = getattr(q, action)
                while True:
                    try:
                        result = method(ids)
                        break
                    except UnknownItems as exc:
                        # Deleted by someone else meanwhile: drop them and go on with the rest.
                        gone |= set(exc.ids)
                        ids = [i for i in ids if i not in gone]
                        if not ids:
                            result = ActionResult((), {})
                            break
        except OposError as exc:
            tell(self, ActionFailed(exc))
            return
        tell(self, Acted(action, result, gone))

    @on(ActionFailed)
    def action_failed(self, message: ActionFailed) -> None:
        self.acting = None
        self.notify(str(message.error), severity="error")

    @on(Acted)
    def acted(self, message: Acted) -> None:
        """Say what an action did, and what it could not do and why."""
        self.acting = None
        action, result = message.action, message.result
        self.selected -= set(result.changed) | message.gone
        text = f"{len(result.changed):,} {done_word(action)}"
        if result.skipped:
            text += tr(f"; not changed: {summary(result.skipped)}", f"; nicht geändert: {summary(result.skipped)}")
        self.notify(text, severity="warning" if result.skipped else "information")
        self.reload()

    def action_hold(self) -> None:
        self.examine("hold")

    def action_release(self) -> None:
        self.examine("release")

    def action_retry(self) -> None:
        self.examine("retry")

    def action_delete(self) -> None:
        self.examine("delete")

    def ask(self, question: str, answers: dict[str, str], decided: Callable[[str | None], None]) -> None:
        """Ask before an action goes on; nothing is under way meanwhile (the answer starts it, or nothing)."""
        self.acting = None
        self.app.push_screen(ConfirmScreen(question, answers), decided)

    def go(self, action: str, ids: list[int]) -> None:
        """Apply ``action`` to ``ids`` once the operator agreed."""
        self.acting = action
        self.apply(action, ids)

    def ask_retry(self, ids: list[int], found: dict[int, Status], will: list[int]) -> None:
        """Back to pending; an uncertain mail only after the same warning as in its detail: it may arrive twice."""
        uncertain = [i for i in will if found[i] is Status.UNCERTAIN]
        if not uncertain:
            self.apply("retry", ids)
            return
        others = [i for i in ids if i not in set(uncertain)]
        answers = {"cancel": tr("Cancel", "Abbrechen")}
        if len(will) > len(uncertain):
            answers["others"] = tr(
                f"Only the other {len(will) - len(uncertain):,}", f"Nur die anderen {len(will) - len(uncertain):,}"
            )
        answers["all"] = tr("Retry", "Wiederholen") if len(will) == 1 else tr("Retry all", "Alle wiederholen")

        def decided(answer: str | None) -> None:
            if answer == "all":
                self.go("retry", ids)
            elif answer == "others":
                self.go("retry", others)

        question = arrive_twice(uncertain) + tr(" Back to pending anyway?", " Trotzdem wieder einreihen?")
        self.ask(question, answers, decided)

    def ask_delete(self, found: dict[int, Status], will: list[int]) -> None:
        """Ask first, naming exactly what goes and what stays (sent mails are never deleted)."""
        if len(will) == 1:
            what = f"#{will[0]} ({status_word(found[will[0]])})"
            question = tr(f"Delete {what}?", f"{what} löschen?")
        else:
            question = tr(f"Delete {len(will):,} unsent mails?", f"{len(will):,} ungesendete Mails löschen?")
        kept = {i: s for i, s in found.items() if s not in DELETABLE}
        if kept:
            question += tr(f" Not deleted: {summary(kept)}.", f" Nicht gelöscht: {summary(kept)}.")
        question += tr(" This cannot be undone.", " Das ist nicht rückgängig zu machen.")
        delete = tr("Delete", "Löschen") if len(will) == 1 else tr(f"Delete {len(will):,}", f"{len(will):,} löschen")

        def decided(answer: str | None) -> None:
            if answer == "delete":
                self.go("delete", will)

        self.ask(question, {"cancel": tr("Cancel", "Abbrechen"), "delete": delete}, decided)

    def transcript(self) -> RichLog:
        """The sending transcript (hidden until shown), made when first written or shown: Textual's log widget
        brings rich's pretty-printer, which the first page does not need."""
        from textual.widgets import RichLog

        found = self.query("#transcript")
        if found:
            return found.first(RichLog)
        log = RichLog(id="transcript", max_lines=2000, wrap=False, markup=False)
        self.mount(log, before=self.query_one(Footer))
        return log

    def action_transcript(self) -> None:
        log = self.transcript()
        log.display = not log.display

    def action_settings(self) -> None:
        from opos_tui.screens.settings import SettingsScreen  # each screen imported when first opened

        self.app.push_screen(SettingsScreen(self.home))  # a broken config.toml opens too, to be fixed there

    def action_letters(self) -> None:
        from opos_tui.screens.letters import LettersScreen

        self.app.push_screen(LettersScreen(self.home))

    def action_open(self) -> None:
        if self.cursor_id is not None:
            self.open_mail(self.cursor_id)

    @on(DataTable.RowSelected)
    def clicked(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_mail(int(event.row_key.value))

    def open_mail(self, item_id: int) -> None:
        if self.lost is not None:
            return
        from opos_tui.screens.message import MessageScreen

        self.app.push_screen(MessageScreen(self.queue, item_id, self.send))

    # --- sending ------------------------------------------------------------------------------------------

    def action_send_selected(self) -> None:
        self.send(self.targets())

    def action_send_all(self) -> None:
        self.send(None)

    def send(self, ids: Sequence[int] | None) -> None:
        """Check the items' (None: every pending item's) attachments, ask about flagged ones, then send in the
        background."""
        if self.sending:
            self.notify(tr("Already sending.", "Es wird bereits gesendet."), severity="warning")
            return
        if ids is not None and not ids:
            self.notify(tr("Nothing to send.", "Nichts zu senden."), severity="warning")
            return
        self.sending = True
        self._stop.clear()
        self.update_keys()
        self.show_progress(tr("Checking the attachments…", "Prüfe die Anhänge…"), 0, len(ids or ()))
        self.prepare(None if ids is None else list(ids))

    def started(self, run: SendRun) -> SendRun:
        """From a worker: ``run`` is the screen's run now, stopped at once if Esc came first."""
        self._run = run
        if self._stop.is_set():
            run.stop()
        return run

    def post_run_event(self, event: RunEvent) -> None:
        self.post_message(RunUpdate(event))

    @work(thread=True, group="send", exit_on_error=False)
    def prepare(self, ids: list[int] | None) -> None:
        from opos_tui.services.send_run import SendRun

        try:
            with self.queue.another() as q:
                plan = self.started(SendRun(q, self.home, on_event=self.post_run_event)).plan(ids)
            self.post_message(SendPlan(plan, everything=ids is None))
        except OposError as exc:
            self.app.call_from_thread(self.finish, tr(f"Not sent: {exc}", f"Nicht gesendet: {exc}"), True)
        finally:
            self._run = None

    @on(SendPlan)
    def plan_ready(self, message: SendPlan) -> None:
        plan = message.plan
        if self._stop.is_set():
            self.finish(tr("Not sent: stopped.", "Nicht gesendet: angehalten."))
            return
        if not plan.ids and message.everything:
            self.finish(tr("Nothing to send.", "Nichts zu senden."), error=True)
            return
        if not plan.ids:
            self.finish(tr("Nothing to send: none of them is pending.", "Nichts zu senden: keiner wartet."))
            return
        if len(plan.ids) == 1 and not plan.flagged:
            self.start_sending(plan.ids)
            return
        # More than one mail, or a flagged one: ask, with Cancel first (Enter and Esc send nothing).
        flagged = set(plan.flagged)
        rest = [i for i in plan.ids if i not in flagged]
        question = ""
        if len(plan.ids) > 1:
            n, customers = len(plan.ids), plan.customers
            question = tr(
                f"Send {n:,} mails to {customers:,} customer{'s' if customers != 1 else ''}?",
                f"{n:,} Mails an {customers:,} Kunden senden?",
            )
        answers = {"cancel": tr("Cancel", "Abbrechen")}
        if flagged:
            first = ", ".join(f"#{i}" for i in plan.flagged[:5]) + (" …" if len(plan.flagged) > 5 else "")
            question += tr(
                f"\n⚠ {len(flagged):,} of {len(plan.ids):,} mails failed the plausibility check ({first}): their "
                "attachment does not name their document or customer. Skip them, or send them too?",
                f"\n⚠ {len(flagged):,} von {len(plan.ids):,} Mails bestehen die Plausibilitätsprüfung nicht "
                f"({first}): ihr Anhang nennt nicht ihren Beleg oder Kunden. Auslassen oder mitsenden?",
            )
            if rest:
                answers["skip"] = tr(f"Skip flagged ({len(rest):,} go)", f"Auslassen ({len(rest):,} gehen)")
            answers["all"] = tr("Send them too", "Mitsenden")
        else:
            answers["all"] = tr(f"Send {len(plan.ids):,}", f"{len(plan.ids):,} senden")

        def decided(answer: str | None) -> None:
            if answer == "skip":
                self.start_sending(rest)
            elif answer == "all":
                self.start_sending(plan.ids, confirmed=plan.flagged)
            else:
                self.finish(tr("Not sent.", "Nicht gesendet."))

        self.app.push_screen(ConfirmScreen(question.strip(), answers), decided)

    def start_sending(self, ids: list[int], confirmed: Sequence[int] = ()) -> None:
        """Send ``ids`` in the background; ``confirmed``: flagged ones the operator chose to send anyway."""
        self.selected -= set(ids)
        self.fill_keep()
        self.transcript().write(tr(f"— sending {len(ids):,} mails —", f"— sende {len(ids):,} Mails —"))
        self.ask_hint = ""
        self.show_progress(tr("Connecting…", "Verbinde…"), 0, len(ids))
        self.dispatch(ids, list(confirmed))

    @work(thread=True, group="send", exit_on_error=False)
    def dispatch(self, ids: list[int], confirmed: list[int]) -> None:
        """The run, in its own thread and event loop with its own queue connection; the settings are read
        there too, so a config.toml another operator holds locked never freezes the screen."""
        from opos_tui.screens.signin import sign_in_from_worker
        from opos_tui.services.run_result import RunResult
        from opos_tui.services.send_run import Finished, SendRun

        try:
            with self.queue.another() as q:
                run = self.started(
                    SendRun(
                        q,
                        self.home,
                        on_event=self.post_run_event,
                        on_interaction=sign_in_from_worker(self.app, self.home),
                    )
                )
                with contextlib.suppress(OposError):  # the run's Finished event says why
                    asyncio.run(run.run(ids, skip_check=confirmed))
        except OposError as exc:  # the queue cannot be opened
            self.post_message(RunUpdate(Finished(RunResult(), self._stop.is_set(), exc)))
        finally:
            self._run = None

    def action_stop(self) -> None:
        if not self.sending:
            return
        self._stop.set()
        if (run := self._run) is not None:
            run.stop()
        self.progress().label.update(tr("Stopping after the current mail…", "Halte nach der laufenden Mail an…"))

    @on(RunUpdate)
    def run_update(self, update: RunUpdate) -> None:
        from opos_tui.services.dispatcher import Progress
        from opos_tui.services.send_run import Checking, Finished, Paused, Resumed, Started

        event = update.event
        if isinstance(event, Checking):
            self.show_checking(event)
        elif isinstance(event, Started):
            self.show_started(event)
        elif isinstance(event, Progress):
            self.show_run_progress(event)
        elif isinstance(event, Finished):
            self.show_finished(event)
        elif isinstance(event, Paused):
            self.progress().label.update(
                tr(
                    "Waiting for a sign-in… (nothing is sent meanwhile)",
                    "Warte auf eine Anmeldung… (solange wird nichts gesendet)",
                )
            )
        elif isinstance(event, Resumed):
            self.progress().label.update(tr("Signed in; sending goes on…", "Angemeldet; der Versand geht weiter…"))

    def show_checking(self, event: Checking) -> None:
        """How far the plausibility check before sending is."""
        label = tr(
            f"Checking the attachments: {event.done:,} of {event.total:,} · Esc stop",
            f"Prüfe die Anhänge: {event.done:,} von {event.total:,} · Esc Stopp",
        )
        self.show_progress(label, event.done, event.total)

    def show_started(self, event: Started) -> None:
        # Simple MAPI and Outlook may hold each mail for a security prompt in the mail program's own window.
        self.ask_hint = (
            tr("the mail program may be asking for confirmation", "das Mailprogramm fragt evtl. nach")
            if event.may_ask
            else ""
        )
        if self.ask_hint and not self._stop.is_set():
            self.progress().label.update(f"{tr('Connecting…', 'Verbinde…')} · {self.ask_hint}")

    def show_run_progress(self, p: Progress) -> None:
        from opos_tui.services.send_run import progress_text

        label = progress_text(p, " · ") + tr(" · Esc stop · t log", " · Esc Stopp · t Log")
        if self.ask_hint:
            label = f"{self.ask_hint} · {label}"
        if not self._stop.is_set():
            self.progress().label.update(label)
        self.progress().bar.update(progress=p.sent + p.failed + p.held)
        if line := transcript_line(p):
            self.transcript().write(line)

    def show_finished(self, done: Finished) -> None:
        r = done.result
        stopped = r.stopped or done.error
        summary = tr(
            f"Done: sent {len(r.sent):,} · failed {len(r.failed):,}",
            f"Fertig: gesendet {len(r.sent):,} · fehlgeschl. {len(r.failed):,}",
        )
        # A deferred mail is tried again later and an uncertain one may have arrived: neither counts as failed.
        if r.deferred:
            summary += tr(
                f" · deferred {len(r.deferred):,} (tried again later)",
                f" · zurückgestellt {len(r.deferred):,} (später erneut)",
            )
        if r.uncertain:
            summary += tr(f" · uncertain {len(r.uncertain):,}", f" · unsicher {len(r.uncertain):,}")
        if r.held:
            summary += tr(
                f" · {len(r.held):,} held by the plausibility check", f" · {len(r.held):,} angehalten (Plausibilität)"
            )
        if r.not_sendable:
            summary += tr(
                f" · {len(r.not_sendable):,} no longer pending", f" · {len(r.not_sendable):,} warteten nicht mehr"
            )
        if stopped is not None:
            summary += tr(f" · stopped: {stopped}", f" · abgebrochen: {stopped}")
        elif done.stop_requested:
            summary += tr(" · stopped by the operator", " · vom Bediener angehalten")
        self.transcript().write(summary)
        not_sent = bool(r.deferred or r.failed or r.uncertain or r.held)
        self.finish(summary, error=stopped is not None or done.stop_requested or not_sent)

    def progress(self) -> ProgressPanel:
        """The sending progress (hidden until a run starts), made when a run first starts: the first page does
        without it."""
        if self.progress_panel is None:
            self.progress_panel = ProgressPanel()
            self.mount(
                self.progress_panel, before=self.query_one("#transcript" if self.query("#transcript") else Footer)
            )
        return self.progress_panel

    def show_progress(self, label: str, progress: int, total: int) -> None:
        panel = self.progress()
        panel.display = True
        panel.label.update(label)
        panel.bar.update(progress=progress, total=max(total, 1))

    def finish(self, summary: str, error: bool = False) -> None:
        self.sending = False
        self.update_keys()
        self.progress().label.update(summary)
        self.notify(summary, severity="warning" if error else "information")
        self.reload()
        if self.quit_when_done:
            self.app.exit()

    def stop_and_quit(self) -> None:
        """Quit once the mail on the wire is finished (the app's quit while sending)."""
        self.quit_when_done = True
        self.action_stop()


def transcript_line(event: Progress) -> str:
    """One line per mail: what happened and what the server said. Never a secret: replies carry none."""
    from opos_tui.services.dispatcher import Outcome

    if event.outcome is Outcome.SENDING:
        return ""
    if event.item_id is None:
        return tr(f"stopped: {event.reply}", f"abgebrochen: {event.reply}")
    # The other outcomes are the states the mail is now in.
    return f"#{event.item_id} {event.recipient}: {status_word(Status(event.outcome.value))} {event.reply}".rstrip()
