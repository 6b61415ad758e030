"""The parts every settings form shares: a field per key, validation as typed, saving with merge.

A form holds a draft; every change is validated against the whole settings model at once and shown inline
where it was typed. Saving is refused while anything is invalid and merges with what was saved elsewhere
meanwhile; leaving with unsaved changes asks first.

A broken config.toml does not keep a form shut: it opens with what can be read, shows each invalid value in
its field to be corrected, and replaces a file that is not TOML at all only once the admin agreed. Saving
reads, merges and writes under config.toml's lock.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, RadioButton, RadioSet, Static

from opos_tui.i18n import tr
from opos_tui.screens import labels
from opos_tui.screens.follow import tell
from opos_tui.screens.widgets import Choice, ConfirmScreen, PageShown, once_painted
from opos_tui.services.config_file import parse
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.home import Home
from opos_tui.services.setting_choices import format_value
from opos_tui.services.setting_defaults import DEFAULTS

if TYPE_CHECKING:  # the settings model is imported once the form is on the screen
    from opos_tui.services.settings import Salvaged, Settings

REPLACE = ""
"""In ``SettingsForm.save``'s ``agreed``: the admin agreed to replace a config.toml that is not TOML."""


@dataclass
class SaveOutcome(Message):
    """What saving found, from its worker: ``saved`` as these settings, or why not (``failed``, ``invalid``
    together with someone else's changes), or what the admin must decide first (``unreadable``: replace a
    file that is not TOML; ``both``: keys someone else changed too). ``mine``, ``then_close`` and ``agreed``
    as the save was asked for."""

    mine: Settings
    then_close: bool
    agreed: frozenset[str]
    saved: Settings | None = None
    failed: str = ""
    invalid: str | None = None
    unreadable: OposError | None = None
    both: list[str] = field(default_factory=list)


@dataclass
class SettingsRead(Message):
    """config.toml as saved now, read in a worker."""

    settings: Settings


@dataclass
class SettingsChecked(Message):
    """config.toml as far as the settings model takes it, checked in a worker once the form is on the screen."""

    found: Salvaged


def widget_id(key: str) -> str:
    return key.replace(".", "-").replace("_", "-")


def file_values(home: Home) -> dict[str, Any]:
    """config.toml's values over the defaults, as plain data, before the settings model has checked any of them
    (a file that cannot be read gives the defaults): what a form shows first. Building the model costs as much as
    the rest of a form's start, so it checks them once the form is on the screen (:class:`SettingsChecked`)."""
    values = copy.deepcopy(DEFAULTS)
    with contextlib.suppress(ConfigError):
        parsed = parse(home.config_file)
        for key, value in (parsed[1] if parsed else {}).items():
            if isinstance(values.get(key), dict):
                if isinstance(value, dict):
                    values[key].update(value)
            elif key in values:
                values[key] = value
    return values


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
        # The place for an error is made with the first error (show_error): most fields never have one.

    # A class, not :focus-within: Textual does not restyle the label when focus moves on.
    def on_descendant_focus(self) -> None:
        self.add_class("-focused")
        # The whole field in view, its label and its error too, not just the line being edited.
        self.call_after_refresh(self.scroll_visible, animate=False)

    def on_descendant_blur(self) -> None:
        self.remove_class("-focused")

    def show_error(self, message: str | None) -> None:
        self.set_class(bool(message), "-invalid")
        text = Text(f"⚠ {message}" if message else "")  # Text: a value quoted in it is never taken for markup
        if found := self.query(".field-error"):
            found.first(Static).update(text)
        elif message and self.is_attached:  # not while the form is being taken down (the app ending)
            self.mount(Static(text, classes="field-error"))


def radio_set(key: str, labels: dict[str, str], current: str) -> RadioSet:
    return RadioSet(
        *(
            Choice(label, value=(value == current), name=value, id=f"{widget_id(key)}-{value}")
            for value, label in labels.items()
        ),
        id=widget_id(key),
        compact=True,
    )


LETTER_PAGE_KEYS = [
    Binding(
        "ctrl+l",
        "letter_page('letters')",
        tr("Letters", "Briefe"),
        id="settings.letters",
        tooltip=tr(
            "Letter reports: global texts, signature, attachment name, retry and send limits",
            "Brief-Reports: globale Texte, Signatur, Anhangname, Wiederholung und Sendegrenzen",
        ),
    ),
    Binding(
        "ctrl+r",
        "letter_page('reports')",
        tr("Reports", "Reports"),
        id="settings.reports",
        tooltip=tr(
            "Per report: subject and body of payment advices and each dunning level, with a preview",
            "Je Report: Betreff und Text von Zahlungsavisen und jeder Mahnstufe, mit Vorschau",
        ),
    ),
]
"""The keys to the letter report pages, the same on every settings screen."""


def cursor_on_saved(radios: Iterable[RadioSet]) -> None:
    """Put each choice's keyboard cursor on its saved button, not on the first one."""
    for radio in radios:
        for _ in range(max(radio.pressed_index, 0)):
            radio.action_next_button()


def pressed_name(radio: RadioSet) -> str:
    """The value (button name) of a choice, or "" while none is pressed."""
    button = radio.pressed_button
    return str(button.name) if button is not None else ""


class SettingsForm(Screen[None]):
    """A form over some of the settings keys: each editor's id is its key's ``widget_id``.

    It holds a draft; every change is validated against the whole settings model and shown where it was typed.
    Saving merges with what was saved elsewhere meanwhile; leaving with unsaved changes asks first.
    """

    BINDINGS = [
        Binding("ctrl+s", "save", tr("Save", "Speichern"), id="settings.save"),
        Binding("escape", "leave", tr("Back", "Zurück"), id="settings.leave"),
    ]

    found: Salvaged
    """config.toml as the settings model takes it, once checked (:attr:`checked`)."""
    saved: Settings
    """The settings as saved, once checked (:attr:`checked`)."""

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home
        self.values = file_values(home)
        """What the form shows first: config.toml's values over the defaults, not checked yet. Invalid values
        stay in their fields, to be corrected."""
        self.shown = False
        """Whether the form was shown (on_screen_resume), to be completed once it is painted."""
        self.checked = False
        """Whether config.toml was checked against the settings model (in a worker, once the form is shown):
        until then the form shows the file's values but neither validates nor saves them."""
        self.after_check: list[Callable[[], object]] = []
        """What keys asked for before config.toml was checked (saving, leaving, testing), done once it is."""
        self.file_errors: dict[str, str] = {}
        """Invalid values of choices (which cannot show them), marked on their field until it is changed."""
        self.dirty = False
        self.valid: Settings | None = None
        self.saving = False
        """Whether a save is under way in a worker."""
        self.edits_pending = False
        """Whether the form is to be revalidated for edits that arrived meanwhile."""

    def heading(self) -> str:
        """The form's name, shown in the header (with `*` while anything is unsaved)."""
        raise NotImplementedError

    def unsaved_extra(self) -> bool:
        """Whether the form holds anything unsaved besides settings keys (typed secrets)."""
        return False

    def extra_to_save(self) -> dict[str, str]:
        """What the form holds besides settings keys (typed secrets), to be saved with them."""
        return {}

    def save_extra(self, extra: dict[str, str]) -> None:
        """Save ``extra`` right after config.toml, in the saving worker, under config.toml's lock."""

    def extra_saved(self) -> None:
        """``extra_to_save`` was saved: the form shows that."""

    def file_problems_solved(self) -> None:
        """config.toml was just written whole: whatever the form showed about a broken file is past."""

    def reveal_invalid(self) -> None:
        """Take the cursor to the first field marked ⚠ that can take it, when saving is refused because of it."""
        reachable = self.focus_chain
        for form_field in self.query(FormField).filter(".-invalid"):
            if form_field.editor in reachable:
                form_field.editor.focus()
                # Also when the cursor is in it already: the line saying so must not push its error out of view.
                form_field.call_after_refresh(form_field.scroll_visible, animate=False)
                return

    def field_labels(self) -> dict[str, str]:
        """This form's fields by key, as its labels name them."""
        return {form_field.key: form_field.label for form_field in self.query(FormField) if form_field.label}

    def name_fields(self, text: str) -> str:
        """``text`` (a message about settings) with the keys of this form's fields named by their labels."""
        return labels.name_fields(text, self.field_labels())

    def value(self, key: str) -> Any:
        """A key's value as the form shows it first (:attr:`values`)."""
        section, _, name = key.rpartition(".")
        return (self.values[section] if section else self.values)[name]

    def choice(self, key: str, choices: dict[str, str]) -> str:
        """The choice the form shows first: the file's, or the default if the file's is none of them."""
        section, _, name = key.rpartition(".")
        value = self.value(key)
        return (
            value
            if isinstance(value, str) and value in choices
            else str((DEFAULTS[section] if section else DEFAULTS)[name])
        )

    def text_field(self, key: str, label: str, placeholder: str = "") -> FormField:
        value = format_value(self.value(key))
        # A compact field has no border: an empty one would be invisible without a placeholder.
        hint = placeholder or tr("(empty)", "(leer)")
        return FormField(key, label, Input(value, placeholder=hint, id=widget_id(key), compact=True))

    def prepare_form(self) -> None:
        """Once mounted: the title, and the keyboard cursor of each choice on its saved value; the rest once the
        form is on the screen (:meth:`complete_form`)."""
        self.title = "opos-tui"
        self.sub_title = self.heading()
        cursor_on_saved(self.query(RadioSet))

    async def complete_form(self) -> None:
        """Once the form is painted: config.toml checked against the settings model, in a worker (importing
        pydantic would hold up the first paint even in a thread)."""
        self.check_file()
        self.post_message(PageShown())

    @work(thread=True, group="settings-check", exit_on_error=False)
    def check_file(self) -> None:
        from opos_tui.services import settings

        settings.ready_checks()  # here, not at the first change: a config.toml read as noted, or none, needs none
        tell(self, SettingsChecked(settings.salvage(self.home)))

    @on(SettingsChecked)
    async def file_checked(self, message: SettingsChecked) -> None:
        """config.toml is checked: the form holds it as the model takes it, marks what is invalid, and shows a
        valid value where the model reads the file's otherwise (a choice the file misspelt: its default)."""
        from opos_tui.services import settings

        self.found = message.found
        self.saved = self.valid = message.found.settings
        self.checked = True
        await self.show_file_problems()
        invalid = {problem.key for problem in message.found.problems if problem.raw is not None}
        self.show_values(
            self.saved,
            [
                key
                for key in settings.KEYS
                if key not in invalid and settings.get_value(self.saved, key) != self.value(key)
            ],
        )
        self.changed()
        while self.after_check:
            self.after_check.pop(0)()

    def unchecked(self, action: Callable[[], object]) -> bool:
        """Whether config.toml is still being checked; if so, ``action`` (what a key asked for) is done once it
        is, as if the key had come then."""
        if not self.checked:
            self.after_check.append(action)
        return not self.checked

    async def show_file_problems(self) -> None:
        """Show what is wrong with config.toml (:attr:`found`), once it is checked."""

    # --- reading the form -----------------------------------------------------------------------------

    def pressed(self, key: str) -> str:
        return pressed_name(self.query_one(f"#{widget_id(key)}", RadioSet))

    def draft(self) -> dict[str, Any]:
        """The form's values as a nested dict, in the shape of config.toml.

        Keys this form does not show (letter templates, retry) are kept as saved. One walk over the fields, not
        one query per key: this runs at every key typed.
        """
        from opos_tui.services import settings

        data: dict[str, Any] = self.saved.data()
        for form_field in self.query(FormField):
            key, editor = form_field.key, form_field.editor
            if key not in settings.KEYS:
                continue  # a secret, or a choice that is not a setting
            section, _, name = key.rpartition(".")
            target = data[section] if section else data
            value = self.editor_value(editor)
            if value is not None:
                target[name] = value
        return data

    def editor_value(self, editor: Widget) -> str | bool | None:
        """What ``editor`` holds, as config.toml keeps it; None for an editor of no setting. (A form with other
        kinds of editor adds them: the letters form its text areas, whose module a form without one need not
        import.)"""
        if isinstance(editor, RadioSet):
            return pressed_name(editor)
        if isinstance(editor, (Checkbox, Input)):
            return editor.value
        return None

    def show_value(self, key: str, editor: Widget, value: object) -> None:
        """Put ``value``, saved for ``key``, into ``editor`` (the counterpart of :meth:`editor_value`)."""
        if isinstance(editor, RadioSet):
            self.query_one(f"#{widget_id(key)}-{value}", RadioButton).value = True
        elif isinstance(editor, Checkbox):
            editor.value = bool(value)
        elif isinstance(editor, Input):
            editor.value = format_value(value)

    # --- reacting -------------------------------------------------------------------------------------

    def revalidate(self) -> None:
        from pydantic import ValidationError

        from opos_tui.services import settings

        errors: dict[str, str] = {}
        data = self.draft()
        try:
            self.valid = settings.check(data, check_files=True)
        except ValidationError as exc:
            self.valid = None
            errors = settings.field_errors(exc)
        for key in list(self.file_errors):
            section, _, name = key.rpartition(".")
            if (data[section] if section else data)[name] != settings.get_value(self.saved, key):
                del self.file_errors[key]  # the admin chose a value: the file's is gone
        errors = {**self.file_errors, **errors}
        for form_field in self.query(FormField):
            form_field.show_error(errors.get(form_field.key))
        form_error = self.query_one("#form-error", Static)
        form_error.update(Text(f"⚠ {self.name_fields(errors[''])}" if "" in errors else ""))
        form_error.display = "" in errors

    def changed(self) -> None:
        if not self.checked:
            return  # the form is checked as a whole once config.toml is (file_checked)
        self.revalidate()
        self.dirty = self.valid != self.saved or self.unsaved_extra()
        self.sub_title = self.heading() + (" *" if self.dirty else "")
        status = self.query_one("#form-status")
        if (status.has_class("-refused") and self.valid is not None) or (self.dirty and not status.has_class("-error")):
            self.say("")  # the fields it asked for are fixed, or "saved" no longer holds

    @on(Input.Changed)
    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
    def on_edit(self) -> None:
        # Once for the edits that arrive together (every field posts one as the form is mounted): each
        # revalidates the whole form.
        if not self.edits_pending:
            self.edits_pending = True
            self.call_later(self.edited)

    def edited(self) -> None:
        self.edits_pending = False
        self.changed()

    # --- telling the outcome ---------------------------------------------------------------------------
    # A line above the footer (``#form-status``, in every form's compose), where a notification would cover
    # the form's labels at 80x24.

    def say(self, text: str, error: bool = False) -> None:
        status = self.query_one("#form-status", Static)
        status.update(Text(text))
        status.display = bool(text)
        status.set_class(error, "-error")
        status.remove_class("-refused")

    def refuse(self, text: str) -> None:
        """Say why the form cannot be saved (or tested), and take the cursor to the first field marked ⚠."""
        self.say(text, error=True)
        self.query_one("#form-status").add_class("-refused")
        self.reveal_invalid()

    # --- actions --------------------------------------------------------------------------------------

    def action_save(self) -> None:
        self.save()

    def save(self, then_close: bool = False, agreed: frozenset[str] = frozenset()) -> None:
        """Save what the form holds, merged with what someone else saved since the form was opened.

        Reading, merging and writing happen under config.toml's lock, in a worker: another program may hold the
        lock, and the form keeps taking keys meanwhile (Ctrl+S again does nothing until this save is done). Where
        the admin must decide first (keys both changed; a file that is not TOML), the lock is let go while they
        do, and all is done again after. ``agreed``: the keys they chose their value for, and REPLACE if they
        agreed to replace the file.
        """
        if self.saving:
            return
        if self.unchecked(lambda: self.save(then_close, agreed)):
            return
        self.changed()
        if self.valid is None:
            self.refuse(
                tr(
                    "Not saved: fix the fields marked ⚠ first.",
                    "Nicht gespeichert: zuerst die mit ⚠ markierten Felder korrigieren.",
                )
            )
            return
        self.saving = True
        self.write_settings(self.saved, self.valid, self.extra_to_save(), then_close, agreed)

    @property
    def working(self) -> bool:
        """Whether config.toml is still being checked, or a save is under way."""
        return not self.checked or self.saving

    @work(thread=True, group="settings-save", exit_on_error=False)
    def write_settings(
        self, base: Settings, mine: Settings, extra: dict[str, str], then_close: bool, agreed: frozenset[str]
    ) -> None:
        from pydantic import ValidationError

        from opos_tui.services import settings

        try:
            with settings.write_lock(self.home):
                found = settings.salvage(self.home)
                if found.unreadable is not None and REPLACE not in agreed:
                    tell(self, SaveOutcome(mine, then_close, agreed, unreadable=found.unreadable))
                    return
                data, both = settings.merge(base, mine, found.settings)
                try:
                    merged = settings.check(data, check_files=True)
                except ValidationError as exc:
                    tell(
                        self,
                        SaveOutcome(mine, then_close, agreed, invalid=next(iter(settings.field_errors(exc).values()))),
                    )
                    return
                if set(both) - agreed:
                    tell(self, SaveOutcome(mine, then_close, agreed, both=both))
                    return
                settings.save(self.home, merged)
                self.save_extra(extra)
        except (OSError, OposError) as exc:  # the lock file cannot be made, the file or a secret not written
            tell(self, SaveOutcome(mine, then_close, agreed, failed=str(exc)))
            return
        tell(self, SaveOutcome(mine, then_close, agreed, saved=merged))

    @on(SaveOutcome)
    def save_done(self, message: SaveOutcome) -> None:
        """What the saving worker found: saved, failed, or a question for the admin first."""
        self.saving = False
        if message.saved is not None:
            self.saved_as(message.saved, message.mine, message.then_close)
        elif message.unreadable is not None:
            self.ask_replace(message.unreadable, message.then_close, message.agreed)
        elif message.both:
            self.ask_clash(message.both, message.then_close, message.agreed)
        elif message.invalid is not None:
            problem = self.name_fields(message.invalid)
            self.say(
                tr(
                    f"Not saved: config.toml was changed elsewhere meanwhile, and together with this form: {problem}",
                    "Nicht gespeichert: config.toml wurde inzwischen anderswo geändert, zusammen mit"
                    f" diesem Formular gilt: {problem}",
                ),
                error=True,
            )
        else:
            problem = self.name_fields(message.failed)
            self.say(tr(f"Not saved: {problem}", f"Nicht gespeichert: {problem}"), error=True)

    def ask_clash(self, both: list[str], then_close: bool, agreed: frozenset[str]) -> None:
        keys = ", ".join(self.name_fields(key) for key in both)

        def decided(choice: str | None) -> None:
            if choice == "mine":
                self.save(then_close, agreed | set(both))

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

    def ask_replace(self, why: OposError, then_close: bool, agreed: frozenset[str]) -> None:
        def decided(choice: str | None) -> None:
            if choice == "replace":
                self.save(then_close, agreed | {REPLACE})

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    f"{why.en}\nSaving replaces the whole file with this form's values; settings not on this form"
                    " get their defaults. Replace it?",
                    f"{why.de}\nSpeichern ersetzt die ganze Datei durch die Werte dieses Formulars; Einstellungen,"
                    " die es nicht zeigt, erhalten ihre Vorgaben. Ersetzen?",
                ),
                {"replace": tr("Replace the file", "Datei ersetzen"), "cancel": tr("Cancel", "Abbrechen")},
            ),
            decided,
        )

    def saved_as(self, new: Settings, mine: Settings, then_close: bool) -> None:
        """The form's values are saved as ``new`` (with what someone else saved meanwhile): show that."""
        from opos_tui.services import settings

        self.extra_saved()
        theirs = [key for key in settings.KEYS if settings.get_value(new, key) != settings.get_value(mine, key)]
        self.saved = new
        self.found = settings.Salvaged(new)
        self.file_errors.clear()
        self.file_problems_solved()
        self.show_values(new, theirs)
        self.changed()
        kept = ", ".join(self.name_fields(key) for key in theirs)
        note = tr(f"; kept from elsewhere: {kept}", f"; von anderswo übernommen: {kept}")
        self.say(
            tr(f"Saved to {self.home.config_file}", f"Gespeichert in {self.home.config_file}")
            + (note if theirs else "")
        )
        if then_close:
            self.close()

    def show_values(self, values: Settings, keys: list[str]) -> None:
        """Put saved values into the form's fields (those someone else changed meanwhile)."""
        from opos_tui.services import settings

        for key in keys:
            found = self.query(f"#{widget_id(key)}")
            if not found:
                continue
            self.show_value(key, found.first(), settings.get_value(values, key))

    def close(self) -> None:
        if len(self.app.screen_stack) > 1:  # opened from another page (the first one is the start's)
            self.dismiss()
        else:
            self.app.exit()

    def action_leave(self) -> None:
        if self.unchecked(self.action_leave):
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

    def on_screen_resume(self) -> None:
        if not self.shown:
            self.shown = True
            once_painted(self, self.complete_form)
        # Back from another form or page that may have saved: show what it saved, unless this form holds
        # unsaved edits (saving merges those with it anyway). Read in a worker: another program may hold the file.
        # Not when the form is first shown: it is read once it is painted (check_file).
        elif self.checked and not self.dirty:
            self.read_saved()

    @work(thread=True, group="settings-read", exclusive=True, exit_on_error=False)
    def read_saved(self) -> None:
        from opos_tui.services import settings

        with contextlib.suppress(OposError):
            tell(self, SettingsRead(settings.load(self.home)))

    @on(SettingsRead)
    def settings_read(self, message: SettingsRead) -> None:
        from opos_tui.services import settings

        current = message.settings
        if self.dirty:
            return
        changed = [k for k in settings.KEYS if settings.get_value(current, k) != settings.get_value(self.saved, k)]
        if changed:
            self.saved = current
            self.show_values(current, changed)
            self.changed()
