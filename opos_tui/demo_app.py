"""The demo's face: the app as always, plus a view of what the demo's mail server received (key ``v``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from opos_tui.app import OposApp
from opos_tui.i18n import tr
from opos_tui.screens.status import POLL_SECONDS
from opos_tui.services import demo
from opos_tui.services.home import Home


def event_time(event: demo.ServerEvent) -> str:
    return datetime.fromisoformat(event.at).strftime("%H:%M:%S")


class ReceivedScreen(Screen[None]):
    """Every answer of the demo server, newest last: accepted mails with their file, refusals with the reply."""

    BINDINGS = [Binding("escape,v", "app.pop_screen", tr("Back", "Zurück"))]

    DEFAULT_CSS = """
    ReceivedScreen #received-summary { padding: 0 1; height: auto; }
    ReceivedScreen #received-detail { padding: 0 1; height: auto; max-height: 6; color: $text-muted; }
    """

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home
        self.events: list[demo.ServerEvent] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="received-summary")
        yield DataTable[Text | str](id="received-table", cursor_type="row")
        yield Static("", id="received-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.title = "opos-tui demo"
        self.sub_title = tr("What the mail server received", "Was der Mailserver empfangen hat")
        table = self.query_one(DataTable)
        table.add_column(tr("Time", "Zeit"), width=8)
        table.add_column(tr("Answer", "Antwort"), width=9)
        table.add_column(tr("Recipient", "Empfänger"), width=30)
        table.add_column(tr("Subject", "Betreff"), width=26)
        self.load()
        self.set_interval(POLL_SECONDS, self.load)
        table.focus()

    def load(self) -> None:
        events = list(demo.received(self.home))
        if len(events) == len(self.events) and self.events:
            return
        self.events = events
        table = self.query_one(DataTable)
        table.clear()
        for event in events:
            code = event.reply.split(" ", 1)[0]
            style = "green" if event.accepted else ("yellow" if code.startswith("4") else "bold red")
            mark = "✓" if event.accepted else ("↻" if code.startswith("4") else "✗")
            table.add_row(
                event_time(event),
                Text(f"{mark} {code}", style=style),
                Text(", ".join(event.recipients)),  # Text: what a mail says is never taken for markup
                Text(event.subject),
            )
        summary = demo.received_summary(events)
        if not events:
            summary += " " + tr(
                "Send from the queue (S: all) and come back.", "Senden Sie aus der Warteschlange (S: alle)."
            )
        self.query_one("#received-summary", Static).update(summary)
        self.show_detail(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)

    def show_detail(self, row: int) -> None:
        if not 0 <= row < len(self.events):
            self.query_one("#received-detail", Static).update("")
            return
        event = self.events[row]
        lines = [event.reply, tr(f"from {event.mail_from}", f"von {event.mail_from}")]
        if event.accepted:
            how = "TLS" if event.tls else tr("unencrypted", "unverschlüsselt")
            lines.append(tr(f"{how}, logged in as {event.user}", f"{how}, angemeldet als {event.user}"))
            lines.append(", ".join(event.attachments or ()))
            lines.append(str(demo.received_dir(self.home) / event.file))
        self.query_one("#received-detail", Static).update("\n".join(lines))


class DemoApp(OposApp):
    """The app on a demo home, with ``v`` (and a palette command) for what the demo's server received."""

    BINDINGS = [Binding("v", "received", tr("Received", "Empfangen"), show=False)]
    HINT_SECONDS = 20.0

    def __init__(self, home: Home) -> None:
        super().__init__(home, "main")

    def on_mount(self) -> None:
        super().on_mount()
        self.notify(
            tr(
                "This is a demo: a mail server inside this process receives everything. S sends all pending mails,"
                " v shows what the server received.",
                "Dies ist eine Demo: ein Mailserver in diesem Prozess empfängt alles. S sendet alle wartenden Mails,"
                " v zeigt, was der Server empfangen hat.",
            ),
            title="opos-tui demo",
            timeout=self.HINT_SECONDS,
        )

    def action_received(self) -> None:
        if not isinstance(self.screen, ReceivedScreen):
            self.push_screen(ReceivedScreen(self.home))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            tr("Demo: what the mail server received", "Demo: was der Mailserver empfangen hat"),
            tr("key: v", "Taste: v"),
            self.action_received,
        )
