"""The E-Mail settings form: the original dialog, keyboard-only.

The form holds a draft; every change is validated against the settings model at once and shown inline
where it was typed. Saving is refused while anything is invalid; leaving with unsaved changes asks first.

A broken config.toml does not keep the form shut: it opens with what can be read, says what is wrong (file,
line, key), shows each invalid value in its field to be corrected, and replaces a file that is not TOML at
all only once the admin agreed. Saving reads, merges and writes under config.toml's lock.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Footer, Header, Input, RadioButton, RadioSet, Static

from opos_tui.i18n import tr
from opos_tui.screens import labels
from opos_tui.screens.follow import tell
from opos_tui.screens.form import LETTER_PAGE_KEYS, FormField, SettingsForm, cursor_on_saved, radio_set, widget_id
from opos_tui.screens.signin import ask_sign_in
from opos_tui.screens.widgets import Tick
from opos_tui.services import secrets
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.services.secrets import SecretStore
from opos_tui.services.setting_choices import AUTH_METHODS_FOR, SecurityMode
from opos_tui.services.transports.kinds import PROMPT_DE, PROMPT_EN, windows_only
from opos_tui.services.transports.registry import offered_here

if TYPE_CHECKING:  # the settings model is imported once the form is on the screen
    from opos_tui.services.settings import Settings


def connection_note(connection: str) -> str:
    """What the form says under the connection type: Windows only, or Outlook's security prompt."""
    if connection in ("windows", "outlook") and sys.platform != "win32":
        return "⚠ " + windows_only(connection).message()  # type: ignore[arg-type]
    if connection == "outlook":
        return tr(PROMPT_EN, PROMPT_DE)
    return ""


def auth_labels() -> dict[str, str]:
    return {
        "none": tr("No login", "Nicht anmelden"),
        "password": tr("Log in (Anmelden) with profile and password", "Anmelden mit Profil und Passwort"),
        "oauth": tr("OAuth 2.0 (no sign-in dialog)", "OAuth 2.0 (ohne Anmeldedialog)"),
        "oauth-dialog": tr(
            "OAuth mit Dialog (sign-in dialog if needed; recommended)",
            "OAuth mit Dialog (Anmeldedialog bei Bedarf; empfohlen)",
        ),
    }


def security_labels() -> dict[str, str]:
    return {
        SecurityMode.NONE: tr("None: no encryption", "None: keine Verschlüsselung"),
        SecurityMode.AUTO: tr(
            "Auto: SSL on port 465, else STARTTLS when available",
            "Auto: SSL auf Port 465, sonst STARTTLS wenn verfügbar",
        ),
        SecurityMode.SSL_ON_CONNECT: tr(
            "SslOnConnect: TLS from the first byte (port 465)", "SslOnConnect: TLS ab dem ersten Byte (Port 465)"
        ),
        SecurityMode.START_TLS: tr(
            "StartTls: STARTTLS, no connection without it", "StartTls: STARTTLS, ohne STARTTLS keine Verbindung"
        ),
        SecurityMode.START_TLS_WHEN_AVAILABLE: tr(
            "StartTlsWhenAvailable: STARTTLS if offered, else plain",
            "StartTlsWhenAvailable: STARTTLS wenn angeboten, sonst unverschlüsselt",
        ),
    }


def provider_labels() -> dict[str, str]:
    return {
        "microsoft": tr(
            "Microsoft (Office 365; recommended by Microsoft)", "Microsoft (Office 365; von Microsoft empfohlen)"
        ),
        "google": "Google",
    }


FORM_SECRETS = (secrets.PASSWORD, secrets.GOOGLE_CLIENT_SECRET)


@dataclass
class StoreOpened(Message):
    """The secret store, opened in a worker, and which of the form's secrets it holds; or why it cannot be."""

    store: SecretStore | None
    stored: dict[str, bool]
    error: OposError | None


@dataclass
class SignedIn(Message):
    """Who is signed in, as lookup number ``asked`` found it."""

    asked: int
    text: str
    cache: str
    """Where the tokens are kept, and what is wrong with that."""


@dataclass
class SignedOut(Message):
    text: str
    error: bool = False


"""The secrets this form has fields for (the queue's database password is set on the command line)."""


class ConnectionTestCommands(Provider):
    """The command palette entry for the test, on screens that offer it (``action_test_connection``)."""

    def _command(self) -> tuple[str, str]:
        return (
            tr("Test connection", "Verbindung testen"),
            tr(
                "Run the SMTP handshake with the settings as typed, stage by stage",
                "SMTP-Handshake mit den eingegebenen Einstellungen Schritt für Schritt ausführen",
            ),
        )

    async def discover(self) -> Hits:
        name, help_text = self._command()
        yield DiscoveryHit(name, self._run, help=help_text)

    async def search(self, query: str) -> Hits:
        name, help_text = self._command()
        matcher = self.matcher(query)
        score = matcher.match(name)
        if score > 0:
            yield Hit(score, matcher.highlight(name), self._run, help=help_text)

    async def _run(self) -> None:
        await self.screen.run_action("test_connection")


class SettingsScreen(SettingsForm):
    """Verbindungsart, Anmelden, SMTP connection data, OAuth 2.0 and the sender, as one scrolling form."""

    BINDINGS = [
        *SettingsForm.BINDINGS,
        Binding("ctrl+t", "test_connection", tr("Test connection", "Verbindung testen"), id="settings.test"),
        Binding("ctrl+o", "oauth_sign_in", tr("Sign in", "Anmelden"), id="settings.oauth_sign_in"),
        Binding("ctrl+g", "oauth_sign_out", tr("Sign out", "Abmelden"), id="settings.oauth_sign_out"),
        *LETTER_PAGE_KEYS,
    ]
    COMMANDS = {ConnectionTestCommands}

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.store: SecretStore | None = None
        """The secret store, once a worker opened it (a keyring may keep it waiting for a while)."""
        self.store_error: OposError | None = None
        """Why the secret store cannot be opened, if it cannot."""
        self.store_reading = False
        self.secrets_saving: dict[str, str] = {}
        """The secrets typed when the save under way began."""
        self.signed_in_asked = self.signed_in_shown = 0
        """How often who is signed in was looked up, and which lookup shows."""
        self.signing_out = False
        self.completed = False
        """Whether the fields below the first screen are mounted (complete_form)."""

    def heading(self) -> str:
        return tr("E-mail settings", "E-Mail-Einstellungen")

    # --- building the form ----------------------------------------------------------------------------

    def field_labels(self) -> dict[str, str]:
        return labels.field_labels()

    def secret_field(self, name: str) -> FormField:
        # Whether it is stored shows once the store is open (open_secrets).
        editor = Input("", placeholder="…", password=True, id=widget_id(name), compact=True)
        return FormField(name, labels.field_labels()[name], editor)

    @work(thread=True, group="secret-store", exit_on_error=False)
    def open_secrets(self) -> None:
        """Open the secret store and look which of the form's secrets it holds, off the event loop."""
        try:
            store = secrets.open_store(self.home)
            stored = {name: store.get(name) is not None for name in FORM_SECRETS}
        except OposError as exc:
            tell(self, StoreOpened(None, {}, exc))
            return
        tell(self, StoreOpened(store, stored, None))

    @on(StoreOpened)
    def store_opened(self, message: StoreOpened) -> None:
        self.store, self.store_error = message.store, message.error
        self.store_reading = False
        where = self.query_one("#secret-store", Static)
        if message.store is None:
            where.update(Text(f"⚠ {message.error}"))
            return
        where.update(
            tr(f"Secrets are kept in: {message.store.describe()}", f"Geheimnisse liegen in: {message.store.describe()}")
        )
        for name, stored in message.stored.items():
            self.show_stored(name, stored)

    def show_stored(self, name: str, stored: bool) -> None:
        self.query_one(f"#{widget_id(name)}", Input).placeholder = (
            tr("stored; leave empty to keep it", "gespeichert; leer lassen, um es zu behalten")
            if stored
            else tr("not set", "nicht gesetzt")
        )

    def opened_store(self) -> SecretStore:
        """The secret store; why not if it cannot be opened (or is not open yet)."""
        if self.store is not None:
            return self.store
        raise self.store_error or OposError(
            "the secret store is still being opened: try again in a moment",
            "der Geheimnisspeicher wird noch geöffnet: gleich noch einmal versuchen",
        )

    @property
    def working(self) -> bool:
        """Whether a save, the secret store, a sign-in status or a sign-out is still under way."""
        return super().working or self.store_reading or self.signing_out or self.signed_in_shown != self.signed_in_asked

    def compose(self) -> ComposeResult:
        label = labels.field_labels()
        yield Header()
        # Not a tab stop itself: Tab goes from the last field straight back to the first.
        with VerticalScroll(id="form", can_focus=False):
            yield Static(
                tr(
                    "E-mail dispatch of payment advices and dunning letters",
                    "E-Mail-Versand von Zahlungsavisen und Mahnungen",
                ),
                classes="form-title",
            )
            yield Static("", id="form-error", classes="form-error")
            # What is wrong with config.toml, once it is checked (show_file_problems).
            yield Static("", id="file-problem", classes="form-error")
            yield Vertical(id="section-fix", classes="section")
            connections = offered_here()
            yield FormField(
                "connection",
                label["connection"],
                radio_set("connection", connections, self.choice("connection", connections)),
            )
            yield Static("", id="connection-note", classes="note")
            with Vertical(id="section-sendmail", classes="section"):
                yield self.text_field("sendmail.path", label["sendmail.path"], "/usr/sbin/sendmail")
            with Vertical(id="section-auth", classes="section"):
                methods = auth_labels()
                yield FormField(
                    "auth.method",
                    label["auth.method"],
                    radio_set("auth.method", methods, self.choice("auth.method", methods)),
                )
                yield self.text_field("auth.profile", label["auth.profile"])
                yield self.secret_field(secrets.PASSWORD)
            with Vertical(id="section-smtp", classes="section"):
                yield Static(tr("SMTP connection data", "SMTP-Verbindungsdaten"), classes="section-title")
                yield self.text_field("smtp.host", label["smtp.host"], "smtp.example.com")
                yield self.text_field("smtp.port", label["smtp.port"])
            # The SMTP section's other fields and the sections after it: once the form is on the screen
            # (complete_form). Below the first screen at 80x24, they cost half of the first paint.
        # Outcomes of saving and testing: a line above the footer, where a notification would cover the form.
        yield Static("", id="form-status")
        yield Footer()

    def smtp_details(self) -> list[Widget]:
        """The SMTP section's fields after the port (below the first screen)."""
        label = labels.field_labels()
        modes = security_labels()
        plain_auth = Tick(
            label["smtp.allow_plain_auth"],
            self.value("smtp.allow_plain_auth") is True,
            id=widget_id("smtp.allow_plain_auth"),
        )
        warning = tr(
            "⚠ Warning: the password can be read by anyone on the network path.",
            "⚠ Achtung: das Passwort ist auf dem Netzweg mitlesbar.",
        )
        return [
            FormField(
                "smtp.security",
                label["smtp.security"],
                radio_set("smtp.security", modes, self.choice("smtp.security", modes)),
            ),
            self.text_field("smtp.timeout", label["smtp.timeout"]),
            self.text_field("smtp.ca_file", label["smtp.ca_file"]),
            FormField("smtp.allow_plain_auth", "", plain_auth),
            Static(warning, id="plain-auth-warning", classes="warning"),
            self.text_field("smtp.max_message_mb", label["smtp.max_message_mb"]),
            self.text_field("smtp.connections", label["smtp.connections"]),
            self.text_field("smtp.max_per_minute", label["smtp.max_per_minute"]),
        ]

    def later_sections(self) -> list[Widget]:
        """OAuth 2.0, the sender and where the secrets are kept (below the first screen)."""
        label = labels.field_labels()
        providers = provider_labels()
        oauth = Vertical(
            Static("OAuth 2.0", classes="section-title"),
            FormField(
                "oauth.provider",
                label["oauth.provider"],
                radio_set("oauth.provider", providers, self.choice("oauth.provider", providers)),
            ),
            self.text_field("oauth.client_id", label["oauth.client_id"]),
            self.text_field("oauth.tenant_id", label["oauth.tenant_id"]),
            self.secret_field(secrets.GOOGLE_CLIENT_SECRET),
            Static("", id="oauth-signed-in", classes="note"),
            Static("", id="oauth-cache", classes="note", markup=False),
            id="section-oauth",
            classes="section",
        )
        sender = Vertical(
            Static(tr("Sender", "Absender"), classes="section-title"),
            self.text_field("sender.address", label["sender.address"], "buchhaltung@example.com"),
            self.text_field("sender.name", label["sender.name"]),
            self.text_field("sender.reply_to", label["sender.reply_to"]),
            self.text_field("sender.bcc", label["sender.bcc"]),
            id="section-sender",
            classes="section",
        )
        store = Static(
            tr("Opening the secret store…", "Öffne den Geheimnisspeicher…"), id="secret-store", classes="note"
        )
        return [oauth, sender, store]

    def on_mount(self) -> None:
        for hidden in ("#file-problem", "#section-fix"):
            self.query_one(hidden).display = False
        self.prepare_form()
        self.apply_visibility()
        self.query_one(f"#{widget_id('connection')}").focus()

    async def complete_form(self) -> None:
        """Once the form is on the screen: the fields below it, the secret store, and config.toml checked."""
        smtp_details, later = self.smtp_details(), self.later_sections()
        await self.query_one("#section-smtp").mount_all(smtp_details)
        await self.query_one("#form").mount_all(later)
        self.completed = True
        cursor_on_saved(radio for widget in (*smtp_details, *later) for radio in widget.query(RadioSet))
        self.apply_visibility()
        # After the choices have scrolled to their saved buttons: the form opens at its top, title and all.
        self.call_after_refresh(self.query_one("#form").scroll_home, animate=False)
        self.store_reading = True
        self.open_secrets()
        await super().complete_form()

    # --- a broken config.toml -------------------------------------------------------------------------

    def file_problem_text(self) -> str:
        """What is wrong with config.toml, for the banner at the top of the form ("" if nothing)."""
        if self.found.unreadable is not None:
            return tr(
                f"⚠ {self.found.unreadable.en}\nThe form shows the defaults. Saving replaces the whole file"
                " (you are asked first); Esc leaves it as it is.",
                f"⚠ {self.found.unreadable.de}\nDas Formular zeigt die Vorgaben. Speichern ersetzt die ganze"
                " Datei (nach Rückfrage); Esc lässt sie, wie sie ist.",
            )
        if not self.found.problems:
            return ""
        lines = []
        for problem in self.found.problems:
            where = tr(f" (line {problem.line})", f" (Zeile {problem.line})") if problem.line else ""
            what = problem.message
            if problem.raw is None:
                what = tr(f"{what}: dropped when saved", f"{what}: wird beim Speichern entfernt")
            elif problem.key in self.file_errors:
                what = tr(f"{problem.raw!r}: {what}; shown: the default", f"{problem.raw!r}: {what}; gezeigt: Vorgabe")
            lines.append(f"  {problem.key}{where}: {what}")
        return "\n".join(
            [
                tr(
                    f"⚠ {self.home.config_file} has invalid settings: correct the fields marked ⚠ and save"
                    " (Ctrl+S), or leave with Esc.",
                    f"⚠ {self.home.config_file} enthält ungültige Einstellungen: die mit ⚠ markierten Felder"
                    " korrigieren und speichern (Strg+S) oder mit Esc verlassen.",
                ),
                *lines,
            ]
        )

    async def show_file_problems(self) -> None:
        """Put each invalid value of config.toml where the admin can correct it."""
        fix = self.query_one("#section-fix", Vertical)
        for problem in self.found.problems:
            if problem.raw is None:
                continue
            found = self.query(f"#{widget_id(problem.key)}")
            if not found:  # a key this form does not show otherwise (retry, letters): a field of its own
                editor = Input(problem.raw, id=widget_id(problem.key), compact=True)
                await fix.mount(FormField(problem.key, problem.key, editor))
            elif not isinstance(found.first(), Input):
                self.file_errors[problem.key] = tr(
                    f"{problem.raw!r} in config.toml: {problem.message}",
                    f"{problem.raw!r} in config.toml: {problem.message}",
                )
        fix.display = bool(fix.children)
        banner = self.query_one("#file-problem", Static)
        banner.update(self.file_problem_text())
        banner.display = bool(self.found.unreadable or self.found.problems)

    def file_problems_solved(self) -> None:
        self.query_one("#file-problem", Static).display = False

    # --- reading the form -----------------------------------------------------------------------------

    def typed_secrets(self) -> dict[str, str]:
        typed = {name: self.query_one(f"#{widget_id(name)}", Input).value for name in FORM_SECRETS}
        return {name: value for name, value in typed.items() if value}

    def unsaved_extra(self) -> bool:
        return bool(self.typed_secrets())

    def extra_to_save(self) -> dict[str, str]:
        self.secrets_saving = self.typed_secrets()
        return self.secrets_saving

    def save_extra(self, extra: dict[str, str]) -> None:
        if extra:
            store = self.opened_store()
            for name, value in extra.items():
                store.set(name, value)

    def extra_saved(self) -> None:
        for name, value in self.secrets_saving.items():
            secret_input = self.query_one(f"#{widget_id(name)}", Input)
            if secret_input.value == value:  # not typed over while it was saved
                secret_input.value = ""
            self.show_stored(name, True)

    # --- reacting -------------------------------------------------------------------------------------

    def apply_visibility(self) -> None:
        connection = self.pressed("connection")
        allowed = AUTH_METHODS_FOR.get(connection, ())  # type: ignore[call-overload]
        auth_set = self.query_one(f"#{widget_id('auth.method')}", RadioSet)
        for button in auth_set.query(RadioButton):
            usable = button.name in allowed
            button.display = usable
            button.disabled = not usable
        method = self.pressed("auth.method")
        if method not in allowed:
            # The hidden choice cannot apply to this connection type: fall back visibly to "no login".
            # Not from inside this handler: RadioSet posts its Changed while it holds back RadioButton.Changed,
            # and that would keep the set from hearing of the new choice.
            none = auth_set.query_one("#auth-method-none", RadioButton)
            asyncio.get_running_loop().call_soon(setattr, none, "value", True)
            method = "none"
        is_smtp = connection == "smtp"
        note = connection_note(connection)
        self.query_one("#connection-note", Static).update(note)
        self.query_one("#connection-note").display = bool(note)
        self.query_one("#section-sendmail").display = connection == "sendmail"
        self.query_one("#section-auth").display = connection not in ("windows", "sendmail")
        self.query_one(f"#field-{widget_id('auth.profile')}").display = method != "none"
        self.query_one(f"#field-{widget_id(secrets.PASSWORD)}").display = method == "password"
        self.query_one("#section-smtp").display = is_smtp
        if self.completed:  # the fields below the first screen are there
            self.query_one("#section-oauth").display = is_smtp and method.startswith("oauth")
            provider = self.pressed("oauth.provider")
            self.query_one(f"#field-{widget_id('oauth.tenant_id')}").display = provider == "microsoft"
            self.query_one(f"#field-{widget_id(secrets.GOOGLE_CLIENT_SECRET)}").display = provider == "google"
            self.query_one("#field-smtp-allow-plain-auth").display = method == "password"
            self.query_one("#plain-auth-warning").display = (
                method == "password" and self.query_one("#smtp-allow-plain-auth", Checkbox).value
            )
        self.show_signed_in()
        self.refresh_bindings()

    def changed(self) -> None:
        self.apply_visibility()
        super().changed()

    # --- actions --------------------------------------------------------------------------------------

    async def action_test_connection(self) -> None:
        """Test the settings as typed (saved or not), in a panel under the form."""
        if self.unchecked(self.action_test_connection):
            return
        self.changed()
        if self.valid is None:
            self.refuse(
                tr(
                    "Not tested: the settings must be valid first; fix the fields marked ⚠.",
                    "Nicht getestet: die Einstellungen müssen erst gültig sein; bitte die mit ⚠ markierten "
                    "Felder korrigieren.",
                )
            )
            return
        from opos_tui.screens.connection_test import ConnectionTestPanel  # with the test's engine: when first used

        panels = self.query(ConnectionTestPanel)
        panel = panels.first() if panels else ConnectionTestPanel()
        if not panels:
            await self.mount(panel, after=self.query_one("#form"))
            # The form got shorter: keep the field being edited in view.
            focused = self.focused
            if focused is not None:
                self.call_after_refresh(focused.scroll_visible, animate=False)
        try:
            store = self.opened_store()
        except OposError as exc:
            self.say(tr(f"Not tested: {exc}", f"Nicht getestet: {exc}"), error=True)
            return
        panel.start(self.valid, store, self.typed_secrets().get(secrets.PASSWORD), self.home)

    def oauth_shown(self) -> bool:
        return self.completed and bool(self.query_one("#section-oauth").display)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("oauth_sign_in", "oauth_sign_out"):
            return self.oauth_shown()
        return super().check_action(action, parameters)

    def show_signed_in(self) -> None:
        """Who is signed in with the settings as typed (from the token cache, no network), looked up in a worker:
        the cache may be in a keyring that keeps it waiting."""
        if not self.checked:
            return  # shown once config.toml is checked
        current = self.valid or self.saved
        if current.uses_oauth():
            self.signed_in_asked += 1
            self.look_signed_in(current, self.signed_in_asked)

    @work(thread=True, group="oauth-status", exit_on_error=False)
    def look_signed_in(self, current: Settings, asked: int) -> None:
        from opos_tui.services import signin  # its HTTP client only where OAuth is used

        cache = ""
        try:
            found = signin.status(current, self.home)
        except OposError as exc:
            text = exc.message()
        else:
            kept = tr(f"Tokens kept in: {found.cache}", f"Tokens liegen in: {found.cache}")
            cache = "\n".join(filter(None, [kept, found.problem if found.configured else ""]))
            if not found.configured:
                text = found.problem
            elif found.signed_in:
                text = tr(
                    f"Signed in as {found.account} · Ctrl+G signs out",
                    f"Angemeldet als {found.account} · Strg+G meldet ab",
                )
            else:
                text = tr("Not signed in · Ctrl+O signs in", "Nicht angemeldet · Strg+O meldet an")
        tell(self, SignedIn(asked, text, cache))

    @on(SignedIn)
    def signed_in(self, message: SignedIn) -> None:
        if message.asked == self.signed_in_asked:  # not an answer for settings typed over since
            self.signed_in_shown = message.asked
            self.query_one("#oauth-signed-in", Static).update(message.text)
            self.query_one("#oauth-cache", Static).update(message.cache)

    def oauth_settings(self) -> Settings | None:
        if self.valid is None:
            self.notify(
                tr("The settings must be valid first.", "Die Einstellungen müssen erst gültig sein."), severity="error"
            )
        return self.valid

    def action_oauth_sign_in(self) -> None:
        if self.unchecked(self.action_oauth_sign_in):
            return
        current = self.oauth_settings()
        if current is not None:
            self.sign_in(current)

    @work(exclusive=True, group="oauth-sign-in", exit_on_error=False)
    async def sign_in(self, current: Settings) -> None:
        from opos_tui.services.signin import sign_in_for

        try:
            signin = await asyncio.to_thread(sign_in_for, current, self.home)  # may read the secret store
            await ask_sign_in(self.app, signin)
        except OposError as exc:
            self.notify(exc.message(), severity="error")
        self.show_signed_in()

    def action_oauth_sign_out(self) -> None:
        if self.unchecked(self.action_oauth_sign_out):
            return
        current = self.oauth_settings()
        if current is not None and not self.signing_out:
            self.signing_out = True
            self.sign_out(current)

    @work(thread=True, group="oauth-sign-out", exit_on_error=False)
    def sign_out(self, current: Settings) -> None:
        """Delete the cached tokens (in a keyring, perhaps) off the event loop."""
        from opos_tui.services.signin import sign_in_for

        try:
            was = sign_in_for(current, self.home).sign_out()
        except OposError as exc:
            tell(self, SignedOut(exc.message(), error=True))
            return
        tell(
            self,
            SignedOut(
                tr("Signed out; the cached tokens are deleted.", "Abgemeldet; die gespeicherten Tokens sind gelöscht.")
                if was
                else tr("Nobody was signed in.", "Niemand war angemeldet.")
            ),
        )

    @on(SignedOut)
    def signed_out(self, message: SignedOut) -> None:
        self.signing_out = False
        self.notify(message.text, severity="error" if message.error else "information")
        self.show_signed_in()

    def action_leave(self) -> None:
        # Esc first cancels a running connection test, then closes its panel, then leaves the form.
        if self.query("#connection-test"):  # imported with the panel, then
            from opos_tui.screens.connection_test import ConnectionTestPanel

            panel = self.query_one(ConnectionTestPanel)
            if panel.running:
                panel.cancel()
            else:
                panel.remove()
            return
        super().action_leave()

    def action_letter_page(self, page: str) -> None:
        from opos_tui.screens.letters import LettersScreen, page_of

        self.app.push_screen(LettersScreen(self.home, page_of(page)))
