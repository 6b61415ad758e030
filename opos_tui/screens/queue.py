"""The send queue: operators review, check and send the pending mails.

The queue may hold 100,000 items after a month-end dunning run. A DataTable measures every cell on the event
loop, so the table only ever holds the rows that fit on the screen: the cursor's position is an index into
the filtered queue, and moving it reads the window around it from SQL (``Queue.page``). Filtering and search
are SQL too. Every half second the screen asks the queue's change probe whether any process changed
something, and re-reads the window, keeping the cursor on its item and the selection as it was. The probe
also notices when queue.db was deleted or replaced: the screen then shows nothing stale, refuses every action,
and reopens the queue once a complete queue file is at its place again.

Sending runs in a thread with its own event loop and its own queue connection, so neither the SMTP dialogue
nor SQLite's fsyncs ever block the screen; it reports back with messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, ProgressBar, RichLog, Static

from opos_tui import settings
from opos_tui.i18n import tr
from opos_tui.screens.widgets import ConfirmScreen
from opos_tui.services import plausibility
from opos_tui.services.dispatcher import Dispatcher, Outcome, Progress
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.services.queue import (
    ActionResult,
    ItemRow,
    LetterType,
    Queue,
    QueueError,
    Status,
    UnknownItems,
    open_queue,
)

POLL_SECONDS = 0.5

# Colour alone is lost on some SSH terminals: every status has its symbol and its word.
STATUS_SYMBOL: dict[Status, tuple[str, str]] = {
    Status.PENDING: ("○", "bold blue"),
    Status.HELD: ("‖", "yellow"),
    Status.SENDING: ("»", "cyan"),
    Status.SENT: ("✓", "green"),
    Status.DEFERRED: ("↻", "yellow"),
    Status.FAILED: ("✗", "bold red"),
    Status.UNCERTAIN: ("?", "bold magenta"),
}


def status_word(status: Status) -> str:
    return {
        Status.PENDING: tr("pending", "wartet"),
        Status.HELD: tr("held", "angehalten"),
        Status.SENDING: tr("sending", "sendet"),
        Status.SENT: tr("sent", "gesendet"),
        Status.DEFERRED: tr("deferred", "verschoben"),
        Status.FAILED: tr("failed", "fehlerhaft"),
        Status.UNCERTAIN: tr("uncertain", "unsicher"),
    }[status]


def status_text(status: Status) -> Text:
    symbol, style = STATUS_SYMBOL[status]
    return Text(f"{symbol} {status_word(status)}", style=style)


def type_label(letter_type: LetterType, level: int | None) -> str:
    if letter_type is LetterType.PAYMENT_ADVICE:
        return tr("Advice", "Avis")
    return tr(f"Dunning {level}", f"{level}. Mahnung")


def check_text(plausible: bool | None) -> Text:
    """The plausibility flag: ⚠ mismatch, ✓ checked, · not checked yet."""
    if plausible is None:
        return Text("·", style="dim")
    return Text("✓", style="green") if plausible else Text("⚠", style="bold red")


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


# --- messages from the worker threads ---------------------------------------------------------------------


@dataclass
class SendPlan(Message):
    """The items to send are checked; some may be flagged."""

    ids: list[int]
    flagged: list[int]


@dataclass
class SendUpdate(Message):
    progress: Progress
    line: str
    """A transcript line, or "" for none."""


@dataclass
class SendDone(Message):
    sent: int
    failed: int
    held: int
    """Held back by the plausibility check (flagged, and not confirmed)."""
    skipped: int
    stopped: str | None
    """Why the run ended early (configuration fault, Esc), else None."""


# --- the table ----------------------------------------------------------------------------------------


class QueueTable(DataTable[Text | str]):
    """Shows one window of the queue; the keys that move its cursor move the screen's cursor through the whole
    filtered queue instead."""

    def __init__(self, move: Callable[[str], None], resized: Callable[[], None]) -> None:
        super().__init__(id="queue-table", cursor_type="row", zebra_stripes=False)
        self.move = move
        self.resized = resized

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

    def action_scroll_top(self) -> None:
        self.move("home")

    def action_scroll_end(self) -> None:
        self.move("end")

    def action_scroll_bottom(self) -> None:
        self.move("end")


def columns() -> list[tuple[str, str, int]]:
    """(key, label, width) of the table's columns, most important first: 80 columns show up to the subject."""
    status_width = max(len(status_word(s)) for s in Status) + 2
    return [
        ("sel", " ", 1),
        ("status", tr("Status", "Status"), status_width),
        ("check", "✓", 1),
        ("type", tr("Type", "Art"), 10),
        ("customer", tr("Customer", "Kunde"), 16),
        ("to", tr("Recipient", "Empfänger"), 22),
        ("subject", tr("Subject", "Betreff"), 28),
        ("att", "📎", 2),
        ("tries", tr("Tries", "Vers."), 5),
        ("error", tr("Last error", "Letzter Fehler"), 40),
    ]


def key(keys: str, action: str, word: str, title: str, *, show: bool = True, id: str | None = None) -> Binding:
    """A key of the queue screen: ``word`` for the footer, ``title`` for the command palette."""
    return Binding(keys, action, word, show=show, id=id or f"queue.{action}", tooltip=title)


class SearchInput(Input):
    """The incremental search; Enter or Esc go back to the table, keeping the search."""

    BINDINGS = [Binding("escape", "done", show=False)]

    def action_done(self) -> None:
        self.screen.query_one(QueueTable).focus()


class QueueScreen(Screen[None]):
    """The send queue: table, filters, search, selection, actions and the sending progress."""

    BINDINGS = [
        key(
            "space",
            "toggle_select",
            tr("Select", "Wahl"),
            tr("Select or unselect the mail", "Mail aus- oder abwählen"),
        ),
        key(
            "a",
            "select_all",
            tr("All", "Alle"),
            tr("Select all shown mails (again: none)", "Alle gezeigten Mails wählen (nochmal: keine)"),
        ),
        key("h", "hold", tr("Hold", "Halt"), tr("Hold the selected mails", "Gewählte Mails anhalten")),
        key(
            "u",
            "release",
            tr("Release", "Freig."),
            tr("Release the selected held mails", "Gewählte angehaltene Mails freigeben"),
        ),
        key(
            "r",
            "retry",
            tr("Retry", "Wdh."),
            tr(
                "Retry the selected failed, deferred or uncertain mails",
                "Gewählte fehlerhafte, verschobene oder unsichere Mails wieder einreihen",
            ),
        ),
        key(
            "d,delete",
            "delete",
            tr("Del", "Lösch."),
            tr("Delete the selected unsent mails", "Gewählte ungesendete Mails löschen"),
        ),
        key("s", "send_selected", tr("Send", "Senden"), tr("Send the selected mails", "Gewählte Mails senden")),
        key("S", "send_all", tr("Send all", "Alle send."), tr("Send all pending mails", "Alle wartenden Mails senden")),
        key(
            "escape",
            "stop",
            tr("Stop", "Stopp"),
            tr("Stop sending after the current mail", "Senden nach der laufenden Mail anhalten"),
        ),
        key("c", "settings", tr("Settings", "Einst."), tr("E-mail settings", "E-Mail-Einstellungen")),
        # Shown elsewhere: "/" in the search field, "t" in the progress line; q is every TUI's quit.
        key(
            "slash",
            "search",
            tr("Search", "Suche"),
            tr("Search recipient, customer, document, subject", "Suchen in Empfänger, Kunde, Beleg, Betreff"),
            show=False,
        ),
        key(
            "t",
            "transcript",
            tr("Log", "Log"),
            tr("Show or hide the sending transcript", "Sendeprotokoll zeigen oder verbergen"),
            show=False,
        ),
        key("q", "app.quit", tr("Quit", "Ende"), tr("Quit", "Beenden"), show=False),
        *(
            key(
                k,
                f"filter('{k}')",
                tr(f"Show {filter_word(s)}", f"Zeige {filter_word(s)}"),
                "",
                show=False,
                id=f"queue.filter.{s.value if s else 'all'}",
            )
            for k, s in FILTERS.items()
        ),
    ]

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
        self.seen_version = -1
        self.sending = False
        self.quit_when_done = False
        self._stop = threading.Event()
        self._stop_dispatch: Callable[[], object] | None = None
        self._checking = False
        self.lost: str | None = None
        """Why the queue cannot be shown (its file was deleted or replaced); None while it can."""
        self._found: tuple[int, int, int] | None = None
        """The file seen at the queue's path on the last poll while lost: reopened once it stops changing."""
        self.unopenable: str | None = None
        """Why the file now at the queue's path cannot be opened instead, while lost."""

    # --- building -----------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="counts")
        with Horizontal(id="search-bar"):
            yield SearchInput(
                placeholder=tr(
                    "/ search recipient, customer, document, subject", "/ Suche: Empfänger, Kunde, Beleg, Betreff"
                ),
                id="search",
                compact=True,
            )
            yield Static("", id="position")
        yield QueueTable(self.move, self.reload)
        yield Static("", id="empty-hint")
        with Vertical(id="progress"):
            yield Static("", id="progress-label")
            yield ProgressBar(id="progress-bar", show_eta=False)
        yield RichLog(id="transcript", max_lines=2000, wrap=False, markup=False)
        yield Footer(compact=True, show_command_palette=False)  # ^p still opens it; 80 columns are few

    def on_mount(self) -> None:
        self.title = "opos-tui"
        self.sub_title = tr("Send queue", "Sendewarteschlange")
        table = self.query_one(QueueTable)
        for key, label, width in columns():
            table.add_column(label, key=key, width=width)
        table.focus()
        self.reload(keep_item=False)
        self.set_interval(POLL_SECONDS, self.poll)

    def on_unmount(self) -> None:
        self.queue.close()

    # --- reading the queue --------------------------------------------------------------------------------

    @property
    def table(self) -> QueueTable:
        return self.query_one(QueueTable)

    def window(self) -> int:
        """How many rows fit: the table's height without its header (and horizontal scrollbar)."""
        height = self.table.scrollable_content_region.height - 1
        return height if height > 0 else 20

    def reload(self, keep_item: bool = True) -> None:
        """Re-read counts and the window around the cursor; the cursor stays on its item if it still shows."""
        if self.lost is not None:
            return
        try:
            self.seen_version = self.queue.version()
        except QueueError as exc:
            self.lose(exc)
            return
        self.total = self.queue.count(self.status_filter, self.search)
        if keep_item and self.cursor_id is not None:
            self.cursor = self.queue.position(self.cursor_id, self.status_filter, self.search)
        elif not keep_item:
            self.cursor = self.top = 0
        self.show(self.cursor, force=True)
        self.update_counts()

    def poll(self) -> None:
        """Follow other processes: re-read when the queue's change probe moved."""
        if self.lost is not None:
            self.reopen()
            return
        try:
            moved = self.queue.version() != self.seen_version
        except QueueError as exc:
            self.lose(exc)
            return
        if moved:
            self.reload()

    def lose(self, why: QueueError) -> None:
        """The queue file was deleted or replaced: show nothing stale, and refuse every action until it is back."""
        self.lost = str(why)
        self.queue.close()
        self.rows, self.selected = [], set()
        self.total = self.top = self.cursor = 0
        self.cursor_id = None
        self.table.clear()
        self.add_class("-lost")
        self.query_one("#counts", Static).update(
            Text(tr("⚠ the queue is gone", "⚠ die Warteschlange ist weg"), style="bold red")
        )
        self.update_position()
        self.refresh_bindings()
        self.notify(self.lost, severity="error")

    def reopen(self) -> None:
        """While lost: open the queue file now at the path once it is complete (there, not empty, unchanged since
        the last poll). Never makes a new queue."""
        try:
            stat = os.stat(self.queue.path)
        except OSError:
            self._found = None
            return
        found = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if stat.st_size == 0 or found != self._found:
            self._found = found
            return
        try:
            queue = Queue(self.queue.path, create=False)
        except QueueError as exc:
            if str(exc) != self.unopenable:
                self.unopenable = str(exc)
                self.show_empty_hint()
            return
        self.queue, self.lost, self._found, self.unopenable = queue, None, None, None
        self.remove_class("-lost")
        self.refresh_bindings()
        self.notify(tr(f"Reopened the queue {queue.path}.", f"Warteschlange {queue.path} wieder geöffnet."))
        self.reload(keep_item=False)

    def show(self, cursor: int, force: bool = False) -> None:
        """Put the cursor on row ``cursor`` of the filtered queue, reading a new window if it leaves this one."""
        window = self.window()
        cursor = max(0, min(cursor, self.total - 1))
        top = self.top
        if cursor < top:
            top = cursor
        elif cursor >= top + window:
            top = cursor - window + 1
        top = max(0, min(top, self.total - window))
        if force or top != self.top or not self.rows:
            self.top = top
            self.rows = self.queue.page(self.status_filter, self.search, offset=top, limit=window)
            self.fill()
        self.cursor = cursor
        if self.rows:
            index = min(cursor - self.top, len(self.rows) - 1)
            self.cursor_id = self.rows[index].id
            self.table.move_cursor(row=index, animate=False, scroll=False)
        else:
            self.cursor_id = None
        self.update_position()
        self.check_visible()

    def fill(self) -> None:
        table = self.table
        table.clear()
        widths = {key: width for key, _, width in columns()}
        for row in self.rows:
            to = row.to[0] if row.to else ""
            if len(row.to) > 1:
                to += f" +{len(row.to) - 1}"
            customer = " ".join(x for x in (row.customer_number, row.customer_name) if x)
            table.add_row(
                Text("●", style="bold") if row.id in self.selected else " ",
                status_text(row.status),
                check_text(row.plausible),
                type_label(row.type, row.level),
                clip(customer, widths["customer"]),
                clip(to, widths["to"]),
                clip(row.subject, widths["subject"]),
                str(len(row.attachments)),
                str(row.attempts),
                Text(clip(row.error or "", widths["error"]), style="red" if row.error else ""),
                key=str(row.id),
            )

    def move(self, where: str) -> None:
        if self.lost is not None:
            return
        step = {"up": -1, "down": 1, "pageup": -self.window(), "pagedown": self.window()}
        if where == "home":
            self.show(0)
        elif where == "end":
            self.show(self.total - 1)
        else:
            self.show(self.cursor + step[where])

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        # A mouse click moves the table's own cursor: follow it.
        if 0 <= event.cursor_row < len(self.rows):
            self.cursor = self.top + event.cursor_row
            self.cursor_id = self.rows[event.cursor_row].id
            self.update_position()

    def update_counts(self) -> None:
        counts = self.queue.counts()
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
        if self.total:
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

    def show_empty_hint(self) -> None:
        """What a newcomer can do when there is nothing to show, instead of an empty table."""
        hint = self.query_one("#empty-hint", Static)
        self.set_class(not self.total, "-empty")
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
        if self.status_filter is not None or self.search:
            hint.update(
                tr(
                    "Nothing matches. 0 shows all mails; Esc in the search field clears it.",
                    "Keine Treffer. 0 zeigt alle Mails; Esc im Suchfeld leert es.",
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
        todo = [r.id for r in self.rows if r.plausible is None]
        if todo and not self._checking:
            self._checking = True
            self.check_rows(todo)

    @work(thread=True, group="check", exit_on_error=False)
    def check_rows(self, ids: list[int]) -> None:
        # A queue gone or busy meanwhile is not this worker's to report: the next poll says so.
        try:
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
        self.show(self.cursor + 1)

    def fill_keep(self) -> None:
        index = self.table.cursor_row
        self.fill()
        self.table.move_cursor(row=index, animate=False, scroll=False)
        self.update_position()

    def action_select_all(self) -> None:
        matching = set(self.queue.ids(self.status_filter, self.search))
        self.selected = set() if matching and matching <= self.selected else matching
        self.fill_keep()

    def action_filter(self, key: str) -> None:
        self.status_filter = FILTERS[key]
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

    def act(self, action: str, done: str, ids: list[int] | None = None) -> None:
        """Apply a queue action (hold, release, retry, delete) to the targets, in a worker: with a selection of
        100,000 items it is one long write transaction."""
        ids = ids if ids is not None else self.targets()
        if not ids:
            self.notify(tr("Nothing selected.", "Nichts ausgewählt."), severity="warning")
            return
        self.apply(action, ids, done)

    @work(thread=True, group="act", exit_on_error=False)
    def apply(self, action: str, ids: list[int], done: str) -> None:
        gone: set[int] = set()
        try:
            queue = self.queue.another()
        except OposError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        with queue as q:
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
                    self.app.call_from_thread(self.notify, str(exc), severity="error")
                    return
        self.app.call_from_thread(self.acted, result, gone, done)

    def acted(self, result: ActionResult, gone: set[int], done: str) -> None:
        """Say what an action did, and what it could not do and why."""
        self.selected -= set(result.changed) | gone
        message = f"{len(result.changed):,} {done}"
        if result.skipped:
            by_status: dict[Status, int] = {}
            for status in result.skipped.values():
                by_status[status] = by_status.get(status, 0) + 1
            skipped = ", ".join(f"{n:,} {status_word(s)}" for s, n in by_status.items())
            message += tr(f"; not changed: {skipped}", f"; nicht geändert: {skipped}")
        self.notify(message, severity="warning" if result.skipped else "information")
        self.reload()

    def action_hold(self) -> None:
        self.act("hold", tr("held", "angehalten"))

    def action_release(self) -> None:
        self.act("release", tr("released", "freigegeben"))

    def action_retry(self) -> None:
        self.act("retry", tr("back to pending", "wieder wartend"))

    def action_delete(self) -> None:
        ids = self.targets()
        if not ids:
            self.notify(tr("Nothing selected.", "Nichts ausgewählt."), severity="warning")
            return
        what = f"#{ids[0]}" if len(ids) == 1 else tr(f"{len(ids):,} items", f"{len(ids):,} Einträge")

        def decided(answer: str | None) -> None:
            if answer == "delete":
                self.act("delete", tr("deleted", "gelöscht"), ids)

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    f"Delete {what}? Sent items are kept. This cannot be undone.",
                    f"{what} löschen? Gesendete bleiben erhalten. Nicht rückgängig zu machen.",
                ),
                {"cancel": tr("Cancel", "Abbrechen"), "delete": tr("Delete", "Löschen")},
            ),
            decided,
        )

    def action_transcript(self) -> None:
        log = self.query_one("#transcript", RichLog)
        log.display = not log.display

    def action_settings(self) -> None:
        from opos_tui.screens.settings import SettingsScreen

        try:
            form = SettingsScreen(self.home)  # a broken config.toml opens too, to be fixed there
        except OposError as exc:  # the secret store cannot be opened
            self.notify(str(exc), severity="error")
            return
        self.app.push_screen(form)

    @on(DataTable.RowSelected)
    def open_item(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is None or self.lost is not None:
            return
        from opos_tui.screens.message import MessageScreen

        self.app.push_screen(MessageScreen(self.queue, int(event.row_key.value), self.send))

    # --- sending ------------------------------------------------------------------------------------------

    def action_send_selected(self) -> None:
        self.send(self.targets())

    def action_send_all(self) -> None:
        self.send(self.queue.ids(Status.PENDING))

    def send(self, ids: Sequence[int]) -> None:
        """Check the items' attachments, ask about flagged ones, then send in the background."""
        if self.sending:
            self.notify(tr("Already sending.", "Es wird bereits gesendet."), severity="warning")
            return
        if not ids:
            self.notify(tr("Nothing to send.", "Nichts zu senden."), severity="warning")
            return
        self.sending = True
        self._stop.clear()
        self.refresh_bindings()
        self.show_progress(tr("Checking the attachments…", "Prüfe die Anhänge…"), 0, len(ids))
        self.prepare(list(ids))

    @work(thread=True, group="send", exit_on_error=False)
    def prepare(self, ids: list[int]) -> None:
        try:
            with self.queue.another() as q:
                sendable = set(q.ids([Status.PENDING, Status.DEFERRED]))
                wanted = [i for i in ids if i in sendable]
                plausibility.check_unchecked(
                    q, wanted, keep_going=lambda: not self._stop.is_set(), on_batch=self.post_checking
                )
                self.post_message(SendPlan(wanted, q.flagged(wanted)))
        except OposError as exc:
            self.app.call_from_thread(self.finish, tr(f"Not sent: {exc}", f"Nicht gesendet: {exc}"), True)

    def post_checking(self, done: int, total: int) -> None:
        """From the worker: how far the plausibility check before sending is."""
        label = tr(
            f"Checking the attachments: {done:,} of {total:,} · Esc stop",
            f"Prüfe die Anhänge: {done:,} von {total:,} · Esc Stopp",
        )
        self.app.call_from_thread(self.show_progress, label, done, total)

    @on(SendPlan)
    def plan_ready(self, plan: SendPlan) -> None:
        if self._stop.is_set():
            self.finish(tr("Not sent: stopped.", "Nicht gesendet: angehalten."))
            return
        if not plan.ids:
            self.finish(tr("Nothing to send: none of them is pending.", "Nichts zu senden: keiner wartet."))
            return
        if not plan.flagged:
            self.start_sending(plan.ids)
            return
        flagged = set(plan.flagged)
        rest = [i for i in plan.ids if i not in flagged]
        first = ", ".join(f"#{i}" for i in plan.flagged[:5]) + (" …" if len(plan.flagged) > 5 else "")

        def decided(answer: str | None) -> None:
            if answer == "skip" and rest:
                self.start_sending(rest)
            elif answer == "all":
                self.start_sending(plan.ids, confirmed=plan.flagged)
            else:
                self.finish(tr("Not sent.", "Nicht gesendet."))

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    f"⚠ {len(flagged):,} of {len(plan.ids):,} mails failed the plausibility check ({first}): their "
                    "attachment does not name their document or customer. Skip them, or send them too?",
                    f"⚠ {len(flagged):,} von {len(plan.ids):,} Mails bestehen die Plausibilitätsprüfung nicht "
                    f"({first}): ihr Anhang nennt nicht ihren Beleg oder Kunden. Auslassen oder mitsenden?",
                ),
                {
                    "skip": tr(f"Skip flagged ({len(rest):,} go)", f"Auslassen ({len(rest):,} gehen)"),
                    "all": tr("Send them too", "Mitsenden"),
                    "cancel": tr("Cancel", "Abbrechen"),
                },
            ),
            decided,
        )

    def start_sending(self, ids: list[int], confirmed: Sequence[int] = ()) -> None:
        """Send ``ids`` in the background; ``confirmed``: flagged ones the operator chose to send anyway."""
        try:
            current = settings.load(self.home)
        except OposError as exc:
            self.finish(tr(f"Not sent: {exc}", f"Nicht gesendet: {exc}"), error=True)
            return
        self.selected -= set(ids)
        self.fill_keep()
        self.query_one("#transcript", RichLog).write(
            tr(f"— sending {len(ids):,} mails —", f"— sende {len(ids):,} Mails —")
        )
        self.show_progress(tr("Connecting…", "Verbinde…"), 0, len(ids))
        self.dispatch(ids, list(confirmed), current)

    @work(thread=True, group="send", exit_on_error=False)
    def dispatch(self, ids: list[int], confirmed: list[int], current: settings.Settings) -> None:
        asyncio.run(self._dispatch(ids, confirmed, current))

    async def _dispatch(self, ids: list[int], confirmed: list[int], current: settings.Settings) -> None:
        loop = asyncio.get_running_loop()
        stopped: str | None = None

        def progress(event: Progress) -> None:
            self.post_message(SendUpdate(event, transcript_line(event)))

        try:
            queue = self.queue.another()
        except OposError as exc:
            self.post_message(SendDone(0, 0, 0, 0, tr(f"stopped: {exc}", f"abgebrochen: {exc}")))
            return
        with queue as q:
            engine = Dispatcher.for_installation(q, self.home, current, on_progress=progress)
            self._stop_dispatch = partial(loop.call_soon_threadsafe, engine.request_stop)
            if not self._stop.is_set():
                try:
                    result = await engine.run(ids, skip_check=confirmed)
                except OposError as exc:
                    stopped = tr(f"stopped: {exc}", f"abgebrochen: {exc}")
                    result = engine.result
                if result.stopped is not None:
                    stopped = tr(f"stopped: {result.stopped}", f"abgebrochen: {result.stopped}")
        self._stop_dispatch = None
        if stopped is None and self._stop.is_set():
            stopped = tr("stopped by the operator", "vom Bediener angehalten")
        r = engine.result
        failed = len(r.deferred) + len(r.failed) + len(r.uncertain)
        self.post_message(SendDone(len(r.sent), failed, len(r.held), len(r.not_sendable), stopped))

    def action_stop(self) -> None:
        if not self.sending:
            return
        self._stop.set()
        if self._stop_dispatch is not None:
            self._stop_dispatch()
        self.query_one("#progress-label", Static).update(
            tr("Stopping after the current mail…", "Halte nach der laufenden Mail an…")
        )

    @on(SendUpdate)
    def send_update(self, update: SendUpdate) -> None:
        p = update.progress
        en = [f"sent {p.sent:,}", f"failed {p.failed:,}"]
        de = [f"gesendet {p.sent:,}", f"fehlgeschl. {p.failed:,}"]
        if p.held:
            en.append(f"held {p.held:,}")
            de.append(f"angehalten {p.held:,}")
        en.append(f"left {p.left:,}")
        de.append(f"offen {p.left:,}")
        if p.rate is not None:  # none until measured over a few mails
            eta = f" · ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}" if p.eta is not None else ""
            en.append(f"{p.rate * 60:.0f}/min{eta}")
            de.append(f"{p.rate * 60:.0f}/min{eta}")
        label = tr(" · ".join([*en, "Esc stop · t log"]), " · ".join([*de, "Esc Stopp · t Log"]))
        if not self._stop.is_set():
            self.query_one("#progress-label", Static).update(label)
        self.query_one("#progress-bar", ProgressBar).update(progress=p.sent + p.failed + p.held)
        if update.line:
            self.query_one("#transcript", RichLog).write(update.line)

    @on(SendDone)
    def send_done(self, done: SendDone) -> None:
        summary = tr(
            f"Done: sent {done.sent:,} · failed {done.failed:,}",
            f"Fertig: gesendet {done.sent:,} · fehlgeschl. {done.failed:,}",
        )
        if done.held:
            summary += tr(
                f" · {done.held:,} held by the plausibility check", f" · {done.held:,} angehalten (Plausibilität)"
            )
        if done.skipped:
            summary += tr(f" · {done.skipped:,} no longer pending", f" · {done.skipped:,} warteten nicht mehr")
        if done.stopped:
            summary += f" · {done.stopped}"
        self.query_one("#transcript", RichLog).write(summary)
        self.finish(summary, error=bool(done.stopped) or bool(done.failed) or bool(done.held))

    def show_progress(self, label: str, progress: int, total: int) -> None:
        self.query_one("#progress").display = True
        self.query_one("#progress-label", Static).update(label)
        self.query_one("#progress-bar", ProgressBar).update(progress=progress, total=max(total, 1))

    def finish(self, summary: str, error: bool = False) -> None:
        self.sending = False
        self.refresh_bindings()
        self.query_one("#progress-label", Static).update(summary)
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
    if event.outcome is Outcome.SENDING:
        return ""
    if event.item_id is None:
        return tr(f"stopped: {event.reply}", f"abgebrochen: {event.reply}")
    # The other outcomes are the states the mail is now in.
    return f"#{event.item_id} {event.recipient}: {status_word(Status(event.outcome.value))} {event.reply}".rstrip()
