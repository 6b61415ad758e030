"""The original dialog's two further pages: the global settings of the letter reports sent by e-mail, and the
settings of each report (payment advices, dunning letters by level), with a live preview of the mail.

One form over both pages: switching pages keeps what was typed, Ctrl+S saves both, Esc asks once.
"""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Footer, Header, Select, Static, TextArea

from opos_tui.i18n import tr
from opos_tui.screens.form import LETTER_PAGE_KEYS, FormField, SettingsForm, radio_set, widget_id
from opos_tui.services.compose import REPORT_SECTIONS, preview, report_of
from opos_tui.services.errors import OposError
from opos_tui.services.home import Home
from opos_tui.services.settings import FILE_VALUES, LETTER_VALUES, LEVEL_VALUE

Page = Literal["letters", "reports"]


def page_of(name: str) -> Page:
    """A page from its name in an action or on the command line; the global page unless it is ``reports``."""
    return "reports" if name == "reports" else "letters"


def report_name(section: str) -> str:
    _, level = report_of(section)
    if level is None:
        return tr("Payment advice (Zahlungsavis)", "Zahlungsavis")
    return tr(f"Dunning letter, level {level} ({level}. Mahnung)", f"{level}. Mahnung")


def placeholders(*names: str) -> str:
    return " ".join("${" + name + "}" for name in names)


class LettersScreen(SettingsForm):
    """Letter reports: global texts and sending limits on one page, each report's texts on the other."""

    BINDINGS = [*SettingsForm.BINDINGS, *LETTER_PAGE_KEYS]

    def __init__(self, home: Home, page: Page = "letters", report: str = "payment_advice") -> None:
        super().__init__(home)
        self.page: Page = page
        self.report = report

    def heading(self) -> str:
        if self.page == "letters":
            return tr("Letter reports: global settings", "Brief-Reports: globale Einstellungen")
        return tr("Letter reports: per report", "Brief-Reports: je Report")

    # --- building the form ----------------------------------------------------------------------------

    def text_area(self, key: str, label: str, hint: str, lines: int) -> FormField:
        """A field for text of several lines; Tab moves on to the next field (keyboard only), Enter breaks."""
        text = str(self.value(key))
        editor = TextArea(text, id=widget_id(key), compact=True, tab_behavior="focus", placeholder=hint)
        editor.styles.height = lines
        return FormField(key, label, editor)

    def compose(self) -> ComposeResult:
        values = placeholders(*LETTER_VALUES)
        shipped = tr("(empty = the shipped text)", "(leer = mitgelieferter Text)")
        yield Header()
        yield Static("", id="form-error", classes="form-error")
        with ContentSwitcher(initial=self.page, id="pages"):
            with VerticalScroll(id="letters", classes="page", can_focus=False):
                yield Static(
                    tr(
                        "Global settings for letter reports sent by e-mail",
                        "Globale Einstellungen für Brief-Reports im E-Mail-Versand",
                    ),
                    classes="form-title",
                )
                yield Static(
                    tr(f"Placeholders: {values} {placeholders(LEVEL_VALUE)}", f"Platzhalter: {values} ${{level}}"),
                    classes="note",
                )
                languages = {"de": "Deutsch", "en": "English"}
                yield FormField(
                    "letters.language",
                    tr("Language of the shipped texts", "Sprache der mitgelieferten Texte"),
                    radio_set("letters.language", languages, self.choice("letters.language", languages)),
                )
                yield self.text_field(
                    "letters.subject",
                    tr("Subject of every report without its own", "Betreff jedes Reports ohne eigenen"),
                    shipped,
                )
                yield self.text_area(
                    "letters.body",
                    tr("Body of every report without its own", "Text jedes Reports ohne eigenen"),
                    shipped,
                    6,
                )
                yield self.text_area(
                    "letters.signature",
                    tr("Signature below every body (after '-- ')", "Signatur unter jedem Text (nach '-- ')"),
                    tr("(empty = none)", "(leer = keine)"),
                    3,
                )
                yield self.text_field(
                    "letters.attachment_name",
                    tr(
                        f"Attachment name; also {placeholders(*FILE_VALUES)}",
                        f"Name des Anhangs; auch {placeholders(*FILE_VALUES)}",
                    ),
                )
                yield self.text_field(
                    "letters.max_recipients",
                    tr("Most recipients of one mail (To and Cc)", "Höchstens Empfänger einer Mail (An und Cc)"),
                )
                with Vertical(classes="section"):
                    yield Static(tr("Sending", "Versand"), classes="section-title")
                    yield self.text_field(
                        "retry.backoff_minutes",
                        tr(
                            "First wait after a temporary failure (minutes; then doubles)",
                            "Erste Wartezeit nach vorübergehendem Fehler (Minuten; dann doppelt)",
                        ),
                    )
                    yield self.text_field(
                        "retry.max_backoff_minutes",
                        tr(
                            "Longest wait between two tries (minutes)", "Längste Wartezeit zwischen Versuchen (Minuten)"
                        ),
                    )
                    yield self.text_field(
                        "retry.give_up_days",
                        tr(
                            "Mark failed after (days since the first try)",
                            "Als fehlgeschlagen nach (Tage seit 1. Versuch)",
                        ),
                    )
                    yield self.text_field(
                        "smtp.connections",
                        tr("Parallel connections (Exchange Online: 3)", "Parallele Verbindungen (Exchange Online: 3)"),
                    )
                    yield self.text_field(
                        "smtp.max_per_minute",
                        tr(
                            "Mails per minute, 0 = unlimited (Exchange Online: 30)",
                            "Mails pro Minute, 0 = unbegrenzt (Exchange Online: 30)",
                        ),
                    )
            with VerticalScroll(id="reports", classes="page", can_focus=False):
                yield Static(
                    tr(
                        "Settings of each report: payment advices and dunning letters",
                        "Report-spezifische Einstellungen: Zahlungsavise und Mahnungen",
                    ),
                    classes="form-title",
                )
                yield FormField(
                    "report",
                    tr("Report", "Report"),
                    Select(
                        [(report_name(section), section) for section in REPORT_SECTIONS],
                        value=self.report,
                        allow_blank=False,
                        compact=True,
                        id="report",
                    ),
                )
                global_text = tr("(empty = the global text)", "(leer = globaler Text)")
                for section in REPORT_SECTIONS:
                    with Vertical(id=f"report-{widget_id(section)}", classes="report"):
                        level = "" if report_of(section)[1] is None else " " + placeholders(LEVEL_VALUE)
                        yield Static(
                            tr(f"Placeholders: {values}{level}", f"Platzhalter: {values}{level}"), classes="note"
                        )
                        yield self.text_field(f"{section}.subject", tr("Subject", "Betreff"), global_text)
                        yield self.text_area(f"{section}.body", tr("Body", "Text"), global_text, 6)
        with VerticalScroll(id="preview"):
            yield Static("", id="preview-mail", markup=False)
        yield Static("", id="form-status")
        yield Footer()

    def on_mount(self) -> None:
        self.prepare_form()
        self.show_report()
        self.show_page()

    # --- reacting -------------------------------------------------------------------------------------

    def changed(self) -> None:
        super().changed()
        self.show_preview()

    @on(TextArea.Changed)
    def text_edited(self) -> None:
        self.on_edit()

    def editor_value(self, editor: Widget) -> str | bool | None:
        return editor.text if isinstance(editor, TextArea) else super().editor_value(editor)

    def show_value(self, key: str, editor: Widget, value: object) -> None:
        if isinstance(editor, TextArea):
            editor.text = str(value)
        else:
            super().show_value(key, editor, value)

    @on(Select.Changed, "#report")
    def report_chosen(self, event: Select.Changed) -> None:
        self.report = str(event.value)
        self.show_report()

    def show_report(self) -> None:
        for section in REPORT_SECTIONS:
            self.query_one(f"#report-{widget_id(section)}").display = section == self.report
        self.show_preview()

    def show_page(self) -> None:
        self.query_one("#pages", ContentSwitcher).current = self.page
        self.sub_title = self.heading() + (" *" if self.dirty else "")
        self.query_one("#letters-language" if self.page == "letters" else "#report").focus()
        # After the choices have scrolled to their saved buttons: the page opens at its top, title and all.
        self.call_after_refresh(self.query_one(f"#{self.page}").scroll_home, animate=False)

    def show_preview(self) -> None:
        """The mail of the chosen report for a sample item, made by the same code as every queued mail."""
        panel = self.query_one("#preview", VerticalScroll)
        panel.border_title = tr(f"Preview: {report_name(self.report)}", f"Vorschau: {report_name(self.report)}")
        mail = self.query_one("#preview-mail", Static)
        if not self.checked:
            return  # shown once config.toml is checked
        if self.valid is None:
            invalid = ", ".join(f"'{f.label}'" for f in self.query(FormField) if f.has_class("-invalid"))
            mail.update(
                tr(
                    f"⚠ No preview until this is fixed: {invalid}",
                    f"⚠ Keine Vorschau, bis dies korrigiert ist: {invalid}",
                )
            )
            return
        try:
            shown = preview(self.valid, self.report)
        except OposError as exc:
            mail.update(f"⚠ {exc}")
            return
        sender = shown.sender or tr("(no sender yet: E-mail settings)", "(noch kein Absender: E-Mail-Einstellungen)")
        headers = [
            (tr("From", "Von"), sender),
            (tr("To", "An"), shown.to),
            (tr("Subject", "Betreff"), shown.subject),
            (tr("Attachment", "Anhang"), shown.attachment),
        ]
        mail.update("\n".join(f"{name}: {value}" for name, value in headers) + "\n\n" + shown.body.rstrip("\n"))

    def reveal_invalid(self) -> None:
        for form_field in self.query(FormField):
            if not form_field.has_class("-invalid"):
                continue
            section = form_field.key.partition(".")[0]
            if section in REPORT_SECTIONS:
                self.query_one("#report", Select).value = section
                self.report = section
                self.show_report()
            self.page = "reports" if section in REPORT_SECTIONS else "letters"
            self.show_page()
            form_field.editor.focus()
            return

    # --- actions --------------------------------------------------------------------------------------

    def action_letter_page(self, page: str) -> None:
        self.page = page_of(page)
        self.show_page()
