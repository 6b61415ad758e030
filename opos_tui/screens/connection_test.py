"""The connection test on the settings form: a panel under the form whose transcript fills as the test runs.

The test runs in an async worker, so the form stays usable meanwhile; Esc cancels it. Events come from the
same service the command line uses (``services.connection_test``); this module only presents them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import RichLog, Static
from textual.worker import Worker, WorkerState

from opos_tui.i18n import tr
from opos_tui.screens.labels import name_fields
from opos_tui.screens.signin import ask_sign_in
from opos_tui.services.connection_test import ConnectionTestResult, HandshakeEvent, Stage, run_connection_test
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.services.secrets import SecretStore

if TYPE_CHECKING:
    from opos_tui.services.settings import Settings

MARKS = {"ok": ("✓", "green"), "warning": ("!", "yellow"), "failed": ("✗", "red")}


def stage_name(stage: str) -> str:
    """A stage as the panel names it; ``--json`` keeps the English word."""
    german = {"connect": "Verbinden", "auth": "Anmelden", "send": "Senden", "done": "fertig"}
    return tr(stage, german.get(stage, stage))


def stage_width() -> int:
    return 1 + max(len(stage_name(stage)) for stage in Stage)


def event_lines(event: HandshakeEvent) -> list[Text]:
    """One event as the panel shows it: a mark and the summary, then the protocol lines, dimmed."""
    mark, colour = MARKS[event.status]
    # Text, not markup: a server's reply may contain square brackets.
    head = Text.assemble(
        (f"{mark} ", f"bold {colour}"),
        (stage_name(event.stage).ljust(stage_width()), "bold"),
        name_fields(event.summary),
    )
    return [head, *(Text(f"    {line}", style="dim") for line in event.exchange)]


class ConnectionTestPanel(Vertical):
    """Status line and live transcript of one connection test."""

    DEFAULT_CSS = """
    ConnectionTestPanel {
        height: 12;
        border-top: solid $accent;
        background: $surface;
        padding: 0 1;
    }
    ConnectionTestPanel > #test-status { height: auto; text-style: bold; }
    ConnectionTestPanel > #test-status.-ok { color: $success; }
    ConnectionTestPanel > #test-status.-failed { color: $error; }
    ConnectionTestPanel > RichLog {
        height: 1fr; background: $surface; scrollbar-size-vertical: 1; overflow-x: hidden; overflow-y: scroll;
    }
    """

    class Progress(Message):
        """One stage of the handshake has happened."""

        def __init__(self, event: HandshakeEvent) -> None:
            super().__init__()
            self.event = event

    def __init__(self) -> None:
        super().__init__(id="connection-test")
        self.worker: Worker[ConnectionTestResult] | None = None
        self.result: ConnectionTestResult | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="test-status")
        yield RichLog(id="test-transcript", wrap=True, min_width=20, auto_scroll=True)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def start(self, settings: Settings, store: SecretStore, password: str | None, home: Home | None = None) -> None:
        self.result = None
        self.query_one(RichLog).clear()
        smtp = settings.smtp
        self.set_status(
            tr(
                f"Testing {smtp.host} port {smtp.port} ({smtp.security})… Esc cancels",
                f"Teste {smtp.host} Port {smtp.port} ({smtp.security})… Esc bricht ab",
            ),
            "",
        )
        self.worker = self.run_test(settings, store, password, home)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def set_status(self, text: str, outcome: str) -> None:
        status = self.query_one("#test-status", Static)
        status.update(Text(text))  # Text: a server's reply is never taken for markup
        status.set_class(outcome == "ok", "-ok")
        status.set_class(outcome == "failed", "-failed")

    @work(exclusive=True, group="connection-test", exit_on_error=False)
    async def run_test(
        self, settings: Settings, store: SecretStore, password: str | None, home: Home | None
    ) -> ConnectionTestResult:
        def report(event: HandshakeEvent) -> None:
            self.post_message(self.Progress(event))

        if home is not None and settings.auth.method == "oauth-dialog" and settings.connection == "smtp":
            from opos_tui.services.signin import has_usable_token, sign_in_for

            signin = await asyncio.to_thread(sign_in_for, settings, home)  # may read the secret store
            if not await asyncio.to_thread(has_usable_token, signin):
                await ask_sign_in(self.app, signin)  # cancelled: the test says "sign-in required"
        return await run_connection_test(settings, store, password=password, home=home, on_event=report)

    @on(Progress)
    def on_progress(self, message: Progress) -> None:
        self.show_event(message.event)

    def show_event(self, event: HandshakeEvent) -> None:
        log = self.query_one(RichLog)
        for line in event_lines(event):
            log.write(line)

    def show_result(self, result: ConnectionTestResult) -> None:
        self.result = result
        closing = tr("Esc closes this panel", "Esc schließt diesen Bereich")
        if result.ok:
            how = tr("encrypted", "verschlüsselt") if result.tls else tr("NOT encrypted", "NICHT verschlüsselt")
            self.set_status(
                tr(f"✓ The connection works ({how}). {closing}", f"✓ Die Verbindung funktioniert ({how}). {closing}"),
                "ok",
            )
        else:
            self.set_status(
                tr(
                    f"✗ Failed at stage {result.stage}. {closing}",
                    f"✗ Fehlgeschlagen beim Schritt {stage_name(result.stage)}. {closing}",
                ),
                "failed",
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        closing = tr("Esc closes this panel", "Esc schließt diesen Bereich")
        if event.state is WorkerState.SUCCESS:
            result = event.worker.result
            assert isinstance(result, ConnectionTestResult)
            self.show_result(result)
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            # Settings that cannot be tested at all (no host, no password): said in one line, no traceback.
            text = name_fields(error.message()) if isinstance(error, OposError) else f"{type(error).__name__}: {error}"
            self.query_one(RichLog).write(Text(f"✗ {text}", style="bold red"))
            self.set_status(tr(f"✗ Not tested. {closing}", f"✗ Nicht getestet. {closing}"), "failed")
        elif event.state is WorkerState.CANCELLED:
            self.query_one(RichLog).write(Text(tr("Cancelled.", "Abgebrochen."), style="yellow"))
            self.set_status(tr(f"Test cancelled. {closing}", f"Test abgebrochen. {closing}"), "failed")
