"""The sign-in modal: when sending or the connection test needs a person to sign in (``auth.method =
oauth-dialog``), it shows on the screen the operator is on, waits for the sign-in in a worker, and answers
whether the interrupted action may go on.

Microsoft's device code: the verification address and the code, large and easy to copy (``c``/``u`` put them
on the clipboard, also over SSH where the terminal allows it), with the time left counting down. The admin
opens the address on any device. Esc cancels: nothing has failed, every mail stays pending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from opos_tui.i18n import tr
from opos_tui.services.errors import InteractionNeeded, OposError
from opos_tui.services.home import Home

if TYPE_CHECKING:  # requests and msal are imported only where OAuth is used, the send engine where it runs
    from opos_tui.services.dispatcher import InteractionHandler
    from opos_tui.services.signin import Authorization, DeviceCode, SignIn

Clock = Callable[[], float]


def time_left(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class SignInScreen(ModalScreen[bool]):
    """Sign in with a device code; ``answered`` hears once whether the person signed in (True) or not."""

    BINDINGS = [
        Binding("escape", "cancel", tr("Cancel", "Abbrechen")),
        Binding("c", "copy('code')", tr("Copy code", "Code kopieren")),
        Binding("u", "copy('address')", tr("Copy address", "Adresse kopieren")),
        Binding("ctrl+y", "copy('address')", tr("Copy address", "Adresse kopieren"), show=False),
    ]

    DEFAULT_CSS = """
    SignInScreen { align: center middle; }
    SignInScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 2;
    }
    SignInScreen .signin-title { text-style: bold; margin-bottom: 1; }
    SignInScreen #signin-address { text-style: bold; color: $accent; margin: 0 0 1 2; }
    SignInScreen #signin-code {
        width: auto; min-width: 20; height: 3; margin: 0 0 0 2; padding: 0 3;
        border: round $accent; text-style: bold; content-align: center middle;
    }
    SignInScreen #signin-left { margin-top: 1; }
    SignInScreen #signin-status.-failed { color: $error; text-style: bold; }
    SignInScreen .signin-keys { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, signin: SignIn, answered: Callable[[bool], None], clock: Clock = time.time) -> None:
        super().__init__()
        self.signin = signin
        self.answered = answered
        self.clock = clock
        self.cancelled = threading.Event()
        self.code: DeviceCode | None = None
        self.authorization: Authorization | None = None
        self.google = signin.provider == "google"
        self._answer_given = False

    def compose(self) -> ComposeResult:
        if self.google:
            yield from self.compose_google()
            return
        with Vertical():
            yield Static(
                tr("Sign in to send (Microsoft 365)", "Zum Senden anmelden (Microsoft 365)"), classes="signin-title"
            )
            yield Static(
                tr(
                    "Sending waits for a sign-in. On any device (phone, laptop), open",
                    "Der Versand wartet auf eine Anmeldung. Auf einem beliebigen Gerät (Handy, Laptop) öffnen:",
                ),
                id="signin-open",
            )
            yield Static("…", id="signin-address")
            yield Static(tr("and enter the code", "und den Code eingeben"))
            yield Static("…", id="signin-code")
            yield Static("", id="signin-left")
            yield Static(tr("Asking for a code…", "Frage nach einem Code…"), id="signin-status")
            yield Static(
                tr(
                    "c copy code · u copy address · Esc cancel (every mail stays pending)",
                    "c Code kopieren · u Adresse kopieren · Esc Abbruch (alle Mails warten weiter)",
                ),
                classes="signin-keys",
            )

    def compose_google(self) -> ComposeResult:
        with Vertical():
            yield Static(tr("Sign in to send (Google)", "Zum Senden anmelden (Google)"), classes="signin-title")
            yield Static(
                tr(
                    "Sending waits for a sign-in. Open this address in a browser (Ctrl+Y copies it):",
                    "Der Versand wartet auf eine Anmeldung. Diese Adresse im Browser öffnen (Strg+Y kopiert sie):",
                )
            )
            yield Static("…", id="signin-address")
            yield Static(
                tr(
                    "On this machine the sign-in completes by itself. Over SSH the browser ends on a page that "
                    "does not load: paste its address here and press Enter.",
                    "Auf diesem Rechner schließt die Anmeldung von selbst ab. Über SSH endet der Browser auf einer "
                    "Seite, die nicht lädt: ihre Adresse hier einfügen und Enter drücken.",
                )
            )
            yield Input(placeholder="http://localhost:…/?state=…&code=…", id="signin-pasted")
            yield Static(tr("Starting…", "Starte…"), id="signin-status")
            yield Static(
                tr(
                    "Enter use the pasted address · Esc cancel (every mail stays pending)",
                    "Enter eingefügte Adresse verwenden · Esc Abbruch (alle Mails warten weiter)",
                ),
                classes="signin-keys",
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.authorization is not None:
            self.authorization.paste(event.value)
            event.input.value = ""
            self.set_status(tr("Checking the address…", "Prüfe die Adresse…"))

    def set_status(self, text: str, failed: bool = False) -> None:
        status = self.query_one("#signin-status", Static)
        status.update(Text(text))  # Text: an error quoted in it is never taken for markup
        status.set_class(failed, "-failed")

    def on_mount(self) -> None:
        self.wait_for_person()
        self.set_interval(1.0, self.show_time_left)

    def on_unmount(self) -> None:
        self.cancelled.set()  # the polling thread ends too
        self.answer(False)

    def answer(self, signed_in: bool) -> None:
        if not self._answer_given:
            self._answer_given = True
            self.answered(signed_in)

    @work(thread=True, exit_on_error=False, group="sign-in")
    def wait_for_person(self) -> object:
        from opos_tui.services.signin import GoogleSignIn, wait_for_sign_in

        if isinstance(self.signin, GoogleSignIn):
            authorization = self.signin.begin()
            self.app.call_from_thread(self.show_authorization, authorization)
            return self.signin.wait(authorization, self.cancelled)
        code = self.signin.start()
        self.app.call_from_thread(self.show_code, code)
        return wait_for_sign_in(self.signin, code, self.cancelled, self.clock)

    def show_authorization(self, authorization: Authorization) -> None:
        self.authorization = authorization
        self.query_one("#signin-address", Static).update(authorization.url)
        self.set_status(tr("Waiting for the sign-in…", "Warte auf die Anmeldung…"))
        self.query_one("#signin-pasted", Input).focus()

    def show_code(self, code: DeviceCode) -> None:
        self.code = code
        self.query_one("#signin-address", Static).update(code.verification_uri)
        self.query_one("#signin-code", Static).update(code.user_code)
        self.query_one("#signin-status", Static).update(tr("Waiting for the sign-in…", "Warte auf die Anmeldung…"))
        self.show_time_left()

    def show_time_left(self) -> None:
        if self.code is None:
            return
        left = time_left(self.code.expires_at - self.clock())
        self.query_one("#signin-left", Static).update(tr(f"Time left: {left}", f"Verbleibende Zeit: {left}"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.SUCCESS:
            account = str(getattr(event.worker.result, "account", ""))
            self.notify(tr(f"Signed in as {account}.", f"Angemeldet als {account}."))
            self.answer(True)
            self.dismiss(True)
        elif event.state is WorkerState.ERROR and not self.cancelled.is_set():
            error = event.worker.error
            text = error.message() if isinstance(error, OposError) else f"{type(error).__name__}: {error}"
            self.set_status(tr(f"✗ {text} · Esc closes", f"✗ {text} · Esc schließt"), failed=True)

    def action_copy(self, what: str) -> None:
        if self.authorization is not None:
            shown = self.authorization.url
        elif self.code is not None:
            shown = self.code.user_code if what == "code" else self.code.verification_uri
        else:
            return
        self.app.copy_to_clipboard(shown)
        self.notify(tr("Copied.", "Kopiert."))

    def action_cancel(self) -> None:
        self.cancelled.set()
        self.answer(False)
        self.dismiss(False)


async def ask_sign_in(app: App[Any], signin: SignIn, clock: Clock = time.time) -> bool:
    """From the app's own event loop: the modal over whatever screen is showing; True once signed in."""
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def answered(signed_in: bool) -> None:
        if not future.done():
            future.set_result(signed_in)

    await app.push_screen(SignInScreen(signin, answered, clock))
    return await future


def sign_in_from_worker(app: App[Any], home: Home) -> InteractionHandler:
    """For a send run in a worker thread (its own event loop): with ``auth.method = oauth-dialog`` the run
    pauses, the modal asks, and the run retries the connection once signed in. With ``oauth`` the answer is
    no at once: the run stops with "sign-in required" and never waits for anyone. (The run asks one question
    at a time, however many connections need the sign-in.)"""

    async def handler(needed: InteractionNeeded) -> bool:
        from opos_tui.services.settings import load
        from opos_tui.services.signin import has_usable_token, sign_in_for
        from opos_tui.services.signin.errors import SignInRequired

        if not isinstance(needed, SignInRequired):
            return False
        try:
            current = await asyncio.to_thread(load, home)
            if current.auth.method != "oauth-dialog":
                return False
            signin = await asyncio.to_thread(sign_in_for, current, home)  # may read the secret store
            if await asyncio.to_thread(has_usable_token, signin):
                return True  # another connection's sign-in just finished
        except OposError:
            return False
        answer: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def answered(signed_in: bool) -> None:
            if not answer.done():
                answer.set_result(signed_in)

        modal = SignInScreen(signin, answered)

        def show() -> None:
            app.push_screen(modal)

        app.call_from_thread(show)
        try:
            return await asyncio.wrap_future(answer)
        finally:
            modal.cancelled.set()  # the run stopped meanwhile: the polling thread ends too

    return handler
