"""The E-Mail settings form: the original dialog, keyboard-only.

The form holds a draft; every change is validated against the settings model at once and shown inline
where it was typed. Saving is refused while anything is invalid; leaving with unsaved changes asks first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Checkbox, Footer, Header, Input, Label, RadioButton, RadioSet, Static

from opos_tui import settings
from opos_tui.i18n import tr
from opos_tui.screens.connection_test import ConnectionTestCommands, ConnectionTestPanel
from opos_tui.screens.labels import field_labels, name_fields
from opos_tui.screens.widgets import Choice, ConfirmScreen, Tick
from opos_tui.services import secrets
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.settings import AUTH_METHODS_FOR, SecurityMode, Settings


def widget_id(key: str) -> str:
    return key.replace(".", "-").replace("_", "-")


def connection_labels() -> dict[str, str]:
    return {
        "windows": "Windows-Standard (Simple MAPI)",
        "outlook": "Outlook (Extended MAPI)",
        "smtp": "SMTP",
    }


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


class FormField(Vertical):
    """A label, the widget that edits one key, and the place its error is shown."""

    DEFAULT_CSS = """
    FormField { height: auto; margin: 0 0 1 0; }
    FormField > .field-error { color: $error; display: none; }
    FormField.-invalid > .field-error { display: block; }
    """

    def __init__(self, key: str, label: str, editor: Widget) -> None:
        super().__init__(id=f"field-{widget_id(key)}")
        self.key = key
        self.label = label
        self.editor = editor

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="field-label")
        yield self.editor
        yield Static("", classes="field-error")

    # A class, not :focus-within: Textual does not restyle the label when focus moves on.
    def on_descendant_focus(self) -> None:
        self.add_class("-focused")
        # The whole field in view, its label and its error too, not just the line being edited.
        self.call_after_refresh(self.scroll_visible, animate=False)

    def on_descendant_blur(self) -> None:
        self.remove_class("-focused")

    def show_error(self, message: str | None) -> None:
        self.set_class(bool(message), "-invalid")
        self.query_one(".field-error", Static).update(f"⚠ {message}" if message else "")


def radio_set(key: str, labels: dict[str, str], current: str) -> RadioSet:
    return RadioSet(
        *(
            Choice(label, value=(value == current), name=value, id=f"{widget_id(key)}-{value}")
            for value, label in labels.items()
        ),
        id=widget_id(key),
        compact=True,
    )


class SettingsScreen(Screen[None]):
    """Verbindungsart, Anmelden, SMTP connection data, OAuth 2.0 and the sender, as one scrolling form."""

    BINDINGS = [
        Binding("ctrl+s", "save", tr("Save", "Speichern"), id="settings.save"),
        Binding("escape", "leave", tr("Back", "Zurück"), id="settings.leave"),
        Binding("ctrl+t", "test_connection", tr("Test connection", "Verbindung testen"), id="settings.test"),
    ]
    COMMANDS = {ConnectionTestCommands}

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home
        self.store = secrets.open_store(home)
        self.saved = settings.load(home)
        self.dirty = False
        self.valid: Settings | None = self.saved

    # --- building the form ----------------------------------------------------------------------------

    def text_field(self, key: str, placeholder: str = "") -> FormField:
        value = settings.format_value(settings.get_value(self.saved, key))
        # A compact field has no border: an empty one would be invisible without a placeholder.
        hint = placeholder or tr("(empty)", "(leer)")
        return FormField(key, field_labels()[key], Input(value, placeholder=hint, id=widget_id(key), compact=True))

    def secret_field(self, name: str) -> FormField:
        stored = self.store.get(name) is not None
        hint = (
            tr("stored; leave empty to keep it", "gespeichert; leer lassen, um es zu behalten")
            if stored
            else tr("not set", "nicht gesetzt")
        )
        editor = Input("", placeholder=hint, password=True, id=widget_id(name), compact=True)
        return FormField(name, field_labels()[name], editor)

    def compose(self) -> ComposeResult:
        s = self.saved
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
            label = field_labels()
            yield FormField(
                "connection", label["connection"], radio_set("connection", connection_labels(), s.connection)
            )
            with Vertical(id="section-auth", classes="section"):
                yield FormField(
                    "auth.method", label["auth.method"], radio_set("auth.method", auth_labels(), s.auth.method)
                )
                yield self.text_field("auth.profile")
                yield self.secret_field(secrets.PASSWORD)
            with Vertical(id="section-smtp", classes="section"):
                yield Static(tr("SMTP connection data", "SMTP-Verbindungsdaten"), classes="section-title")
                yield self.text_field("smtp.host", "smtp.example.com")
                yield self.text_field("smtp.port")
                yield FormField(
                    "smtp.security",
                    label["smtp.security"],
                    radio_set("smtp.security", security_labels(), s.smtp.security.value),
                )
                yield self.text_field("smtp.timeout")
                yield self.text_field("smtp.ca_file")
                yield FormField(
                    "smtp.allow_plain_auth",
                    "",
                    Tick(
                        label["smtp.allow_plain_auth"], s.smtp.allow_plain_auth, id=widget_id("smtp.allow_plain_auth")
                    ),
                )
                yield Static(
                    tr(
                        "⚠ Warning: the password can be read by anyone on the network path.",
                        "⚠ Achtung: das Passwort ist auf dem Netzweg mitlesbar.",
                    ),
                    id="plain-auth-warning",
                    classes="warning",
                )
                yield self.text_field("smtp.max_message_mb")
                yield self.text_field("smtp.connections")
                yield self.text_field("smtp.max_per_minute")
            with Vertical(id="section-oauth", classes="section"):
                yield Static("OAuth 2.0", classes="section-title")
                yield FormField(
                    "oauth.provider",
                    label["oauth.provider"],
                    radio_set("oauth.provider", provider_labels(), s.oauth.provider),
                )
                yield self.text_field("oauth.client_id")
                yield self.text_field("oauth.tenant_id")
                yield self.secret_field(secrets.GOOGLE_CLIENT_SECRET)
            with Vertical(id="section-sender", classes="section"):
                yield Static(tr("Sender", "Absender"), classes="section-title")
                yield self.text_field("sender.address", "buchhaltung@example.com")
                yield self.text_field("sender.name")
                yield self.text_field("sender.reply_to")
                yield self.text_field("sender.bcc")
            yield Static(
                tr(f"Secrets are kept in: {self.store.describe()}", f"Geheimnisse liegen in: {self.store.describe()}"),
                id="secret-store",
                classes="note",
            )
        # Outcomes of saving and testing: a line above the footer, where a notification would cover the form.
        yield Static("", id="form-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "opos-tui"
        self.sub_title = tr("E-mail settings", "E-Mail-Einstellungen")
        for radio in self.query(RadioSet):
            # Put the keyboard cursor on the saved choice, not on the first one.
            for _ in range(max(radio.pressed_index, 0)):
                radio.action_next_button()
        self.apply_visibility()
        self.query_one(f"#{widget_id('connection')}").focus()
        # After the choices have scrolled to their saved buttons: the form opens at its top, title and all.
        self.call_after_refresh(self.query_one("#form").scroll_home, animate=False)

    # --- reading the form -----------------------------------------------------------------------------

    def pressed(self, key: str) -> str:
        button = self.query_one(f"#{widget_id(key)}", RadioSet).pressed_button
        return str(button.name) if button is not None else ""

    def draft(self) -> dict[str, Any]:
        """The form's values as a nested dict, in the shape of config.toml."""
        data: dict[str, Any] = self.saved.model_dump(mode="json")
        for key in settings.KEYS:
            section, _, name = key.rpartition(".")
            target = data[section] if section else data
            found = self.query(f"#{widget_id(key)}")
            if not found:
                continue  # a key this form does not show (letter templates, retry): kept as saved
            editor = found.first()
            if isinstance(editor, RadioSet):
                target[name] = self.pressed(key)
            elif isinstance(editor, (Checkbox, Input)):
                target[name] = editor.value
        return data

    def typed_secrets(self) -> dict[str, str]:
        typed = {name: self.query_one(f"#{widget_id(name)}", Input).value for name in secrets.SECRET_NAMES}
        return {name: value for name, value in typed.items() if value}

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
        self.query_one("#section-auth").display = connection != "windows"
        self.query_one(f"#field-{widget_id('auth.profile')}").display = method != "none"
        self.query_one(f"#field-{widget_id(secrets.PASSWORD)}").display = method == "password"
        self.query_one("#section-smtp").display = is_smtp
        self.query_one("#section-oauth").display = is_smtp and method.startswith("oauth")
        provider = self.pressed("oauth.provider")
        self.query_one(f"#field-{widget_id('oauth.tenant_id')}").display = provider == "microsoft"
        self.query_one(f"#field-{widget_id(secrets.GOOGLE_CLIENT_SECRET)}").display = provider == "google"
        self.query_one("#field-smtp-allow-plain-auth").display = method == "password"
        self.query_one("#plain-auth-warning").display = (
            method == "password" and self.query_one("#smtp-allow-plain-auth", Checkbox).value
        )

    def revalidate(self) -> None:
        errors: dict[str, str] = {}
        try:
            self.valid = Settings.model_validate(self.draft(), context={"check_files": True})
        except ValidationError as exc:
            self.valid = None
            errors = settings.field_errors(exc)
        for form_field in self.query(FormField):
            form_field.show_error(errors.get(form_field.key))
        form_error = self.query_one("#form-error", Static)
        form_error.update(f"⚠ {name_fields(errors[''])}" if "" in errors else "")
        form_error.display = "" in errors

    def changed(self) -> None:
        self.apply_visibility()
        self.revalidate()
        self.dirty = self.valid != self.saved or bool(self.typed_secrets())
        self.sub_title = tr("E-mail settings", "E-Mail-Einstellungen") + (" *" if self.dirty else "")
        status = self.query_one("#form-status")
        if (status.has_class("-refused") and self.valid is not None) or (self.dirty and not status.has_class("-error")):
            self.say("")  # the fields it asked for are fixed, or "saved" no longer holds

    @on(Input.Changed)
    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
    def on_edit(self) -> None:
        self.changed()

    # --- telling the outcome ---------------------------------------------------------------------------

    def say(self, text: str, error: bool = False) -> None:
        status = self.query_one("#form-status", Static)
        status.update(text)
        status.display = bool(text)
        status.set_class(error, "-error")
        status.remove_class("-refused")

    def refuse(self, text: str) -> None:
        """Say why the form cannot be saved or tested, and take the cursor to the first field marked ⚠."""
        self.say(text, error=True)
        self.query_one("#form-status").add_class("-refused")
        reachable = self.focus_chain
        for form_field in self.query(FormField).filter(".-invalid"):
            if form_field.editor in reachable:
                form_field.editor.focus()
                return

    # --- actions --------------------------------------------------------------------------------------

    def action_save(self) -> None:
        self.save()

    def save(self, then_close: bool = False) -> None:
        """Save what the form holds, merged with what someone else saved since the form was opened."""
        self.changed()
        if self.valid is None:
            self.refuse(
                tr(
                    "Not saved: fix the fields marked ⚠ first.",
                    "Nicht gespeichert: zuerst die mit ⚠ markierten Felder korrigieren.",
                )
            )
            return
        mine = self.valid
        try:
            theirs = settings.load(self.home)
        except OposError:
            theirs = self.saved  # an unreadable file is replaced by this form's valid values
        data, both = settings.merge(self.saved, mine, theirs)
        try:
            merged = Settings.model_validate(data, context={"check_files": True})
        except ValidationError as exc:
            problem = next(iter(settings.field_errors(exc).values()))
            self.say(
                tr(
                    f"Not saved: config.toml was changed elsewhere meanwhile, and together with this form: {problem}",
                    f"Nicht gespeichert: config.toml wurde inzwischen anderswo geändert, zusammen mit diesem"
                    f" Formular gilt: {problem}",
                ),
                error=True,
            )
            return
        if not both:
            self.write(merged, mine, then_close)
            return
        keys = ", ".join(name_fields(key) for key in both)

        def decided(choice: str | None) -> None:
            if choice == "mine":
                self.write(merged, mine, then_close)

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    f"Someone else changed {keys} in config.toml since this form was opened. Save your values"
                    " for these over theirs? (Their other changes are kept either way.)",
                    f"Jemand anderes hat {keys} in config.toml geändert, seit dieses Formular offen ist. Ihre"
                    " Werte darüber speichern? (Die übrigen Änderungen bleiben so oder so erhalten.)",
                ),
                {"mine": tr("Save mine", "Meine speichern"), "cancel": tr("Cancel", "Abbrechen")},
            ),
            decided,
        )

    def write(self, new: Settings, mine: Settings, then_close: bool) -> None:
        try:
            settings.save(self.home, new)
            for name, value in self.typed_secrets().items():
                self.store.set(name, value)
        except (OSError, OposError) as exc:
            problem = name_fields(str(exc))
            self.say(tr(f"Not saved: {problem}", f"Nicht gespeichert: {problem}"), error=True)
            return
        for name in secrets.SECRET_NAMES:
            secret_input = self.query_one(f"#{widget_id(name)}", Input)
            secret_input.value = ""
            if self.store.get(name) is not None:
                secret_input.placeholder = tr(
                    "stored; leave empty to keep it", "gespeichert; leer lassen, um es zu behalten"
                )
        theirs = [key for key in settings.KEYS if settings.get_value(new, key) != settings.get_value(mine, key)]
        self.saved = new
        self.show_values(new, theirs)
        self.changed()
        kept = ", ".join(name_fields(key) for key in theirs)
        note = tr(f"; kept from elsewhere: {kept}", f"; von anderswo übernommen: {kept}")
        self.say(
            tr(f"Saved to {self.home.config_file}", f"Gespeichert in {self.home.config_file}")
            + (note if theirs else "")
        )
        if then_close:
            self.close()

    def show_values(self, values: Settings, keys: list[str]) -> None:
        """Put saved values into the form's fields (those someone else changed meanwhile)."""
        for key in keys:
            found = self.query(f"#{widget_id(key)}")
            if not found:
                continue
            editor, value = found.first(), settings.get_value(values, key)
            if isinstance(editor, RadioSet):
                self.query_one(f"#{widget_id(key)}-{value}", RadioButton).value = True
            elif isinstance(editor, Checkbox):
                editor.value = bool(value)
            elif isinstance(editor, Input):
                editor.value = settings.format_value(value)

    def close(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.dismiss()
        else:
            self.app.exit()

    async def action_test_connection(self) -> None:
        """Test the settings as typed (saved or not), in a panel under the form."""
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
        panels = self.query(ConnectionTestPanel)
        panel = panels.first() if panels else ConnectionTestPanel()
        if not panels:
            await self.mount(panel, after=self.query_one("#form"))
            # The form got shorter: keep the field being edited in view.
            focused = self.focused
            if focused is not None:
                self.call_after_refresh(focused.scroll_visible, animate=False)
        panel.start(self.valid, self.store, self.typed_secrets().get(secrets.PASSWORD))

    def action_leave(self) -> None:
        # Esc first cancels a running connection test, then closes its panel, then leaves the form.
        for panel in self.query(ConnectionTestPanel):
            if panel.running:
                panel.cancel()
            else:
                panel.remove()
            return
        if not self.dirty:
            self.close()
            return

        def decided(choice: str | None) -> None:
            if choice == "save":
                self.save(then_close=True)
            elif choice == "discard":
                self.close()

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    "Unsaved changes. Save them before leaving?",
                    "Ungespeicherte Änderungen. Vor dem Verlassen speichern?",
                ),
                {
                    "save": tr("Save", "Speichern"),
                    "discard": tr("Discard", "Verwerfen"),
                    "cancel": tr("Cancel", "Abbrechen"),
                },
            ),
            decided,
        )
