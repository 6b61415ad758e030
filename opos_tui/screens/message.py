"""One mail in detail: what will go out, what its attachments say, and everything that happened to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from opos_tui.i18n import tr
from opos_tui.screens.follow import QueueChanged, QueueFailed, QueueFollower, tell
from opos_tui.screens.status import STATUS_SYMBOL, arrive_twice, status_text, status_word, type_label
from opos_tui.screens.widgets import ConfirmScreen, set_bindings
from opos_tui.services import plausibility
from opos_tui.services.addresses import AddressError, parse_mailbox
from opos_tui.services.compose import BadLetter, build_message
from opos_tui.services.errors import OposError
from opos_tui.services.queue import (
    EDITABLE,
    HOLDABLE,
    ActionResult,
    Queue,
    QueueError,
    QueueItem,
    Recipient,
    RecipientKind,
    Status,
    UnknownItems,
)

FIRST_PAGE_LINES = 12
SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")


def local_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def size_text(size: int) -> str:
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1048576:.1f} MB"


def headers_text(item: QueueItem) -> Text:
    """The headers exactly as compose will write them, decoded for reading; or why they cannot be written (an
    item queued by an older version, which did not check everything)."""
    try:
        raw = build_message(item, [])
    except BadLetter as exc:
        return Text(f"⚠ {exc}", style="red")
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    text = Text()
    for name in SHOWN_HEADERS:
        value = parsed.get(name)
        if value is None and name == "Date":
            value = tr("(set at the first send)", "(wird beim ersten Senden gesetzt)")
        if value is not None:
            text.append(f"{name}: ", style="bold")
            text.append(f"{value}\n")
    bcc = [r.formatted() for r in item.recipients if r.kind == "bcc"]
    if bcc:
        text.append("Bcc: ", style="bold")
        text.append(", ".join(bcc) + tr("  (envelope only)\n", "  (nur im Umschlag)\n"), style="")
    refused = [r for r in item.recipients if r.refused]
    for r in refused:
        text.append(tr(f"⚠ refused {r.address}: {r.refused}\n", f"⚠ abgelehnt {r.address}: {r.refused}\n"), "red")
    text.rstrip()
    return text


def verdict_text(verdict: plausibility.Verdict, item: QueueItem) -> Text:
    if verdict.ok:
        names = [item.document_number, item.customer_number]
        shown = ", ".join(n for n in names if n)
        return Text(
            tr(f"✓ Plausible: the attachment names {shown}", f"✓ Plausibel: der Anhang nennt {shown}"), style="green"
        )
    text = Text(tr("⚠ Plausibility check failed:", "⚠ Plausibilitätsprüfung nicht bestanden:"), style="bold red")
    for finding in verdict.findings:
        text.append(f"\n  • {finding.describe()}", style="red")
    return text


@dataclass
class AttachmentsRead(Message):
    attachments: Text
    verdict: plausibility.Verdict


@dataclass
class ItemRead(Message):
    """The mail as read in a worker, with the queue's change probe before the read; None if it was deleted."""

    version: int
    item: QueueItem | None


@dataclass
class Changed(Message):
    """An action on the mail is done (``result`` is None for new recipients), or failed (``error``)."""

    done: str
    result: ActionResult | None
    error: OposError | None
    then_send: bool


def message_keys() -> list[Binding]:
    """The keys of one mail; those that do not fit its status are left out of the footer, help and palette."""
    return [
        Binding(
            "escape,q",
            "back",
            tr("Back", "Zurück"),
            id="message.back",
            tooltip=tr("Back to the queue", "Zurück zur Warteschlange"),
        ),
        Binding(
            "e",
            "edit_recipients",
            tr("Recipients", "Empfänger"),
            id="message.recipients",
            tooltip=tr("Edit the recipients of this mail", "Empfänger dieser Mail ändern"),
        ),
        Binding(
            "h", "hold", tr("Hold", "Anhalten"), id="message.hold", tooltip=tr("Hold this mail", "Diese Mail anhalten")
        ),
        Binding(
            "u",
            "release",
            tr("Release", "Freigeben"),
            id="message.release",
            tooltip=tr("Release this mail", "Diese Mail freigeben"),
        ),
        Binding(
            "s",
            "send",
            tr("Send", "Senden"),
            id="message.send",
            tooltip=tr("Send this mail now", "Diese Mail jetzt senden"),
        ),
        Binding(
            "r",
            "resend",
            tr("Resend", "Neu senden"),
            id="message.resend",
            tooltip=tr(
                "Send this uncertain mail again (it may arrive twice)",
                "Diese unsichere Mail erneut senden (kommt evtl. doppelt an)",
            ),
        ),
        Binding(
            "m",
            "mark_sent",
            tr("Mark sent", "Als gesendet"),
            id="message.mark_sent",
            tooltip=tr(
                "Mark this uncertain mail as sent (it arrived)",
                "Diese unsichere Mail als gesendet markieren (sie kam an)",
            ),
        ),
        Binding(
            "question_mark",
            "app.help",
            tr("Help", "Hilfe"),
            id="message.help",
            tooltip=tr("Every key of this screen", "Alle Tasten dieses Bildschirms"),
        ),
    ]


def outcome_word(outcome: str) -> str:
    """An entry of the history: what happened (stored as a word of the program, shown in the user's language)."""
    words = {
        "held": tr("held", "angehalten"),
        "released": tr("released", "freigegeben"),
        "retry": tr("retry", "wiederholt"),
        "marked-sent": tr("marked sent", "als gesendet"),
        "not-sent": tr("not sent", "nicht gesendet"),
    }
    if outcome in words:
        return words[outcome]
    return status_word(Status(outcome)) if outcome in set(Status) else outcome


class MessageScreen(Screen[None]):
    """The detail of one queued mail, with the actions that fit its status."""

    def __init__(self, queue: Queue, item_id: int, send: Callable[[Sequence[int]], None]) -> None:
        super().__init__()
        self.queue = queue
        self.item_id = item_id
        self.send = send
        self.item: QueueItem | None = None
        self.reading = False
        """Whether a read of the mail is under way."""
        self.again = False
        """Read once more when the read under way is back: the queue changed meanwhile."""
        self.acting = False
        """Whether an action on the mail is under way: its key, or another action's, does nothing meanwhile."""
        self.follower: QueueFollower | None = None
        """Follows other processes' changes; started by the first read."""
        self.verdict: plausibility.Verdict | None = None
        set_bindings(self, message_keys())

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Static("", id="summary")
            yield Static(tr("Checking the attachment…", "Prüfe den Anhang…"), id="check")
            yield Static(tr("Headers", "Kopfzeilen"), classes="section-title")
            yield Static("", id="headers")
            yield Static(tr("Body", "Text"), classes="section-title")
            yield Static("", id="body")
            yield Static(tr("Attachments", "Anhänge"), classes="section-title")
            yield Static(tr("Reading…", "Lese…"), id="attachments")
            yield Static(tr("History", "Verlauf"), classes="section-title")
            yield Static("", id="history")
        yield Footer(compact=True, show_command_palette=False)  # as on the queue: ^p is in the help (?)

    def on_mount(self) -> None:
        self.title = "opos-tui"
        self.load()
        self.read_attachments()
        self.query_one("#detail").focus()

    def on_unmount(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    @property
    def working(self) -> bool:
        """Whether a read or an action of this screen is still under way."""
        return self.reading or self.acting

    def load(self) -> None:
        """Read the mail again, in a worker; once more after the read under way if one is."""
        if self.reading:
            self.again = True
            return
        self.reading, self.again = True, False
        self.read_item()

    @work(thread=True, group="message-read", exit_on_error=False)
    def read_item(self) -> None:
        try:
            version = self.queue.version()
            try:
                item: QueueItem | None = self.queue.get(self.item_id)
            except UnknownItems:
                item = None
        except QueueError as exc:
            tell(self, QueueFailed(exc))
            return
        tell(self, ItemRead(version, item))

    @on(QueueChanged)
    def queue_changed(self) -> None:
        self.load()

    @on(QueueFailed)
    def queue_failed(self, message: QueueFailed) -> None:
        # The queue file is gone (the queue screen below says so), or the queue cannot be read.
        self.reading = False
        self.notify(str(message.error), severity="error")
        self.dismiss()

    @on(ItemRead)
    def item_read(self, message: ItemRead) -> None:
        self.reading = False
        item = self.item = message.item
        if item is None:
            self.notify(tr(f"#{self.item_id} was deleted.", f"#{self.item_id} wurde gelöscht."), severity="warning")
            self.dismiss()
            return
        if self.follower is None:
            self.follower = QueueFollower(self, self.queue, message.version)
        if self.again:
            self.load()
        self.show_item(item)

    def show_item(self, item: QueueItem) -> None:
        self.sub_title = tr(f"Mail #{item.id}", f"Mail #{item.id}")
        summary = Text.assemble(
            (f"#{item.id}  ", "bold"),
            status_text(item.status),
            f"  {type_label(item.type, item.level)}",
            tr(f"  · queued {local_time(item.created_at)}", f"  · eingereiht {local_time(item.created_at)}"),
        )
        if item.sent_at:
            summary.append(tr(f" · sent {local_time(item.sent_at)}", f" · gesendet {local_time(item.sent_at)}"))
        if item.status is Status.UNCERTAIN:
            summary.append(
                tr(
                    "\nIt may have arrived. r: resend (it may arrive twice) · m: mark as sent (it arrived)",
                    "\nSie kam evtl. an. r: neu senden (evtl. doppelt) · m: als gesendet markieren (kam an)",
                ),
                style=STATUS_SYMBOL[Status.UNCERTAIN][1],
            )
        if item.error:
            summary.append(tr(f"\nLast error: {item.error}", f"\nLetzter Fehler: {item.error}"), style="red")
        self.query_one("#summary", Static).update(summary)
        self.query_one("#headers", Static).update(headers_text(item))
        self.query_one("#body", Static).update(Text(item.body.rstrip()))
        self.show_verdict()
        history = Text()
        for attempt in item.history:
            history.append(f"{local_time(attempt.at)}  ", style="dim")
            history.append(f"{outcome_word(attempt.outcome):<14}", style="bold")
            history.append(f" {attempt.reply}\n")
        history.rstrip()
        self.query_one("#history", Static).update(
            history if item.history else Text(tr("not sent yet", "noch nicht gesendet"), style="dim")
        )
        self.refresh_bindings()

    @work(thread=True, exit_on_error=False)
    def read_attachments(self) -> None:
        with self.queue.another() as q:
            verdict = plausibility.verdict(q, self.item_id)
            text = Text()
            for attachment in q.attachments(self.item_id):
                text.append(f"{attachment.filename}", style="bold")
                text.append(f"  {size_text(attachment.size)}  {attachment.content_type}")
                if attachment.data.startswith(b"%PDF-"):
                    _, summary = plausibility.read_pdf(attachment.data)
                    if summary.error:
                        text.append(tr(f"  ⚠ unreadable: {summary.error}", f"  ⚠ unlesbar: {summary.error}"), "red")
                    else:
                        text.append(tr(f"  {summary.pages} page(s)", f"  {summary.pages} Seite(n)"))
                        lines = [line for line in summary.first_page_text.splitlines() if line.strip()]
                        if not lines:
                            text.append(tr("\n  (no text on page 1)", "\n  (kein Text auf Seite 1)"), "dim")
                        for line in lines[:FIRST_PAGE_LINES]:
                            text.append(f"\n  │ {line}", style="italic")
                        if len(lines) > FIRST_PAGE_LINES:
                            text.append("\n  │ …", style="dim")
                text.append("\n")
        text.rstrip()
        self.post_message(AttachmentsRead(text, verdict))

    @on(AttachmentsRead)
    def attachments_read(self, message: AttachmentsRead) -> None:
        self.query_one("#attachments", Static).update(message.attachments)
        self.verdict = message.verdict
        self.show_verdict()

    def show_verdict(self) -> None:
        """The plausibility check's verdict, once both it and the mail are read."""
        if self.item is not None and self.verdict is not None:
            self.query_one("#check", Static).update(verdict_text(self.verdict, self.item))

    # --- actions ------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        status = self.item.status if self.item else None
        allowed = {
            "edit_recipients": status in EDITABLE,
            "hold": status in HOLDABLE,
            "release": status is Status.HELD,
            "send": status in (Status.PENDING, Status.DEFERRED),
            "resend": status is Status.UNCERTAIN,
            "mark_sent": status is Status.UNCERTAIN,
        }
        return allowed.get(action, True)

    def action_back(self) -> None:
        self.dismiss()

    def act(self, action: str, done: str, then_send: bool = False) -> None:
        """Apply ``action`` (hold, release, retry, mark_sent) to this mail in a worker, then say what it did;
        ``then_send``: send it once that worked. Nothing while an action is under way (a key pressed twice)."""
        if self.acting:
            return
        self.acting = True
        self.change(action, done, then_send)

    @work(thread=True, group="message-act", exit_on_error=False)
    def change(self, action: str, done: str, then_send: bool) -> None:
        try:
            with self.queue.another() as q:
                method: Callable[[list[int]], ActionResult] = getattr(q, action)
                tell(self, Changed(done, method([self.item_id]), None, then_send))
        except OposError as exc:
            tell(self, Changed(done, None, exc, then_send))

    @work(thread=True, group="message-act", exit_on_error=False)
    def save_recipients(self, recipients: list[Recipient]) -> None:
        try:
            with self.queue.another() as q:
                q.set_recipients(self.item_id, recipients)
        except OposError as exc:
            tell(self, Changed("", None, exc, False))
            return
        tell(self, Changed(tr("Recipients saved.", "Empfänger gespeichert."), None, None, False))

    @on(Changed)
    def changed(self, message: Changed) -> None:
        self.acting = False
        if message.error is not None:
            self.notify(str(message.error), severity="error")
            return
        skipped = message.result.skipped if message.result is not None else {}
        if skipped:
            word = status_word(skipped[self.item_id])
            self.notify(tr(f"Not changed: the mail is {word}.", f"Nicht geändert: die Mail ist {word}."))
        else:
            self.notify(message.done)
        if message.then_send and not skipped:
            self.action_send()
            return
        self.load()

    def action_hold(self) -> None:
        self.act("hold", tr("Held.", "Angehalten."))

    def action_release(self) -> None:
        self.act("release", tr("Released.", "Freigegeben."))

    def action_send(self) -> None:
        self.dismiss()
        self.send([self.item_id])

    def action_resend(self) -> None:
        def decided(answer: str | None) -> None:
            if answer == "resend":
                self.act("retry", tr("Back to pending.", "Wieder wartend."), then_send=True)

        self.app.push_screen(
            ConfirmScreen(
                arrive_twice([self.item_id]) + tr(" Resend?", " Neu senden?"),
                {"cancel": tr("Cancel", "Abbrechen"), "resend": tr("Resend", "Neu senden")},
            ),
            decided,
        )

    def action_mark_sent(self) -> None:
        def decided(answer: str | None) -> None:
            if answer == "sent":
                self.act("mark_sent", tr("Marked as sent.", "Als gesendet markiert."))

        self.app.push_screen(
            ConfirmScreen(
                tr(
                    "Mark as sent? Only if you know it arrived (e.g. the customer confirmed it).",
                    "Als gesendet markieren? Nur wenn sicher ist, dass sie ankam (z. B. vom Kunden bestätigt).",
                ),
                {"cancel": tr("Cancel", "Abbrechen"), "sent": tr("Mark as sent", "Als gesendet")},
            ),
            decided,
        )

    def action_edit_recipients(self) -> None:
        if self.item is None or self.acting:
            return

        def edited(recipients: list[Recipient] | None) -> None:
            if recipients is not None and not self.acting:
                self.acting = True
                self.save_recipients(recipients)

        self.app.push_screen(RecipientsScreen(self.item.recipients), edited)


def parse_list(kind: RecipientKind, value: str) -> list[Recipient]:
    """``Name <addr>; other@example.com``: separated by ";" since names often hold commas (Müller, Hans)."""
    found: list[Recipient] = []
    for part in value.split(";"):
        if not part.strip():
            continue
        try:
            mailbox = parse_mailbox(part)
        except AddressError as exc:
            raise ValueError(f"{part.strip()}: {exc}") from None
        found.append(Recipient(kind, mailbox.addr_spec, mailbox.display_name))
    return found


class RecipientsScreen(ModalScreen[list[Recipient] | None]):
    """To and Cc of one mail, validated as typed; the archive Bcc stays as it is."""

    BINDINGS = [
        Binding("escape", "cancel", tr("Cancel", "Abbrechen"), show=False),
        Binding("ctrl+s", "save", tr("Save", "Speichern"), show=False),
    ]

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        super().__init__()
        self.recipients = recipients

    def compose(self) -> ComposeResult:
        def joined(kind: str) -> str:
            return "; ".join(r.formatted() for r in self.recipients if r.kind == kind)

        with Vertical(id="recipients"):
            yield Static(tr("Recipients (separate with ;)", "Empfänger (mit ; trennen)"), classes="section-title")
            yield Label("To")
            yield Input(joined("to"), id="to", select_on_focus=False)  # editing adds or fixes, rarely replaces
            yield Label("Cc")
            yield Input(joined("cc"), id="cc", select_on_focus=False)
            yield Static("", id="recipients-error", classes="form-error")
            with Horizontal():
                yield Button(tr("Save", "Speichern"), id="save", variant="primary")
                yield Button(tr("Cancel", "Abbrechen"), id="cancel")

    def on_mount(self) -> None:
        self.query_one("#to", Input).focus()

    def parsed(self) -> list[Recipient] | None:
        error = self.query_one("#recipients-error", Static)
        try:
            to = parse_list("to", self.query_one("#to", Input).value)
            cc = parse_list("cc", self.query_one("#cc", Input).value)
        except ValueError as exc:
            error.update(Text(f"⚠ {exc}"))  # Text: the address typed is never taken for markup
            error.display = True
            return None
        if not to:
            error.update(tr("⚠ at least one To recipient", "⚠ mindestens ein Empfänger (To)"))
            error.display = True
            return None
        error.display = False
        return [*to, *cc, *(r for r in self.recipients if r.kind == "bcc")]

    @on(Input.Changed)
    def typed(self) -> None:
        self.parsed()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        recipients = self.parsed()
        if recipients is not None:
            self.dismiss(recipients)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
