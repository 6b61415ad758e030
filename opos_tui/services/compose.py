"""From a request (type, recipients, files, values) to a queued item, and from a queued item to RFC 5322 bytes.

Everything that can be wrong with a mail is found here, when it is queued ("at the door"), never when it is
sent: unknown type or level, bad addresses, line breaks in header values (header injection), missing,
unreadable or fake PDFs, too large attachments, and template placeholders without a value.

Headers follow RFC 5322 with RFC 2047 encoded words for names and subjects with umlauts, and RFC 2231 for
attachment file names (``email.policy.SMTP``). Bcc recipients are only in the envelope, never in a header.
"""

from __future__ import annotations

import base64
import mimetypes
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from string import Template

from opos_tui.services.addresses import AddressError, has_line_break, parse_mailbox
from opos_tui.services.errors import ConfigError, ConfigurationFault
from opos_tui.services.queue import Attachment, LetterType, NewAttachment, NewItem, QueueItem, Recipient, RecipientKind
from opos_tui.settings import ReportTemplate, Settings

MAX_LEVEL = 9
PDF_MAGIC = b"%PDF-"

# The shipped texts, used where neither the report nor the global letter settings have their own. They use
# ${customer_name} and ${document_number} only: every item must bring those unless it has its own texts.
_GREETING = {"de": "Sehr geehrte Damen und Herren,", "en": "Dear Sir or Madam,"}
_CLOSING = {"de": "Mit freundlichen Grüßen", "en": "Kind regards"}
_ORDINAL_EN = {1: "First", 2: "Second", 3: "Third", 4: "Fourth", 5: "Fifth", 6: "Sixth", 7: "Seventh", 8: "Eighth"}


def shipped_template(section: str, language: str) -> tuple[str, str]:
    """The shipped (subject, body) of one report section in ``de`` or ``en``."""
    lang = "de" if language == "de" else "en"
    if section == "payment_advice":
        subject = {"de": "Zahlungsavis ${document_number}", "en": "Payment advice ${document_number}"}[lang]
        text = {
            "de": "anbei erhalten Sie unser Zahlungsavis ${document_number} für ${customer_name}.",
            "en": "please find attached our payment advice ${document_number} for ${customer_name}.",
        }[lang]
    else:
        level = int(section.removeprefix("dunning_"))
        ordinal = _ORDINAL_EN.get(level, "Final")
        subject = {"de": f"{level}. Mahnung ${{document_number}}", "en": f"{ordinal} reminder ${{document_number}}"}[
            lang
        ]
        text = {
            "de": f"anbei erhalten Sie unsere {level}. Mahnung ${{document_number}} für ${{customer_name}}. Bitte"
            " begleichen Sie den offenen Betrag umgehend. Sollten Sie inzwischen gezahlt haben, betrachten Sie"
            " dieses Schreiben bitte als gegenstandslos.",
            "en": f"please find attached our {ordinal.lower()} reminder ${{document_number}} for ${{customer_name}}."
            " Please settle the amount due without delay. If you have paid in the meantime, please disregard"
            " this letter.",
        }[lang]
    return subject, f"{_GREETING[lang]}\n\n{text}\n\n{_CLOSING[lang]}\n"


def report_section(letter_type: LetterType, level: int | None) -> str:
    return "payment_advice" if letter_type is LetterType.PAYMENT_ADVICE else f"dunning_{level}"


class BadLetter(ConfigError):
    """A mail that cannot be queued as given (exit 2 on the command line; ``rejected/`` in the spool)."""


def _bad(en: str, de: str) -> BadLetter:
    return BadLetter(en, de)


@dataclass
class LetterRequest:
    """A mail as the accounting system or an operator asks for it, not yet checked."""

    type: str
    level: int | None = None
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    attachments: Sequence[Path] = ()
    subject: str | None = None
    """Own subject, used as given (no placeholders); None = from the templates."""
    body: str | None = None
    """Own body, used as given (no placeholders); None = from the templates."""
    vars: Mapping[str, object] = field(default_factory=dict)
    source_key: str | None = None


def fill(template: str, values: Mapping[str, str], where: str, where_de: str = "") -> str:
    """``${name}`` placeholders filled with string.Template's rules; a placeholder without a value (or with an
    empty one) is an error naming the template (``where``, in German ``where_de`` if it differs) and the
    placeholder."""
    where_de = where_de or where
    parsed = Template(template)
    if not parsed.is_valid():
        raise _bad(f"{where} has a bad placeholder", f"{where_de} hat einen fehlerhaften Platzhalter")
    missing = [name for name in parsed.get_identifiers() if not values.get(name)]
    if missing:
        names = ", ".join("${" + m + "}" for m in dict.fromkeys(missing))
        raise _bad(
            f"{where} uses {names}, but this mail has no value for it (give it with --var or in the manifest's vars)",
            f"{where_de} verwendet {names}, aber diese Mail hat keinen Wert dafür (mit --var oder in vars angeben)",
        )
    return parsed.substitute(values)


def render_texts(
    settings: Settings, letter_type: LetterType, level: int | None, values: Mapping[str, str]
) -> tuple[str, str]:
    """Subject and body from the templates: the report's own, else the global one, else the shipped text."""
    section = report_section(letter_type, level)
    own: ReportTemplate = settings.report(section)
    shipped_subject, shipped_body = shipped_template(section, settings.letters.language)
    subject_key = f"{section}.subject" if own.subject else "letters.subject" if settings.letters.subject else ""
    body_key = f"{section}.body" if own.body else "letters.body" if settings.letters.body else ""
    subject_template = own.subject or settings.letters.subject or shipped_subject
    body_template = own.body or settings.letters.body or shipped_body
    subject = fill(
        subject_template,
        values,
        subject_key or f"the shipped subject of {section}",
        subject_key or f"der mitgelieferte Betreff von {section}",
    )
    body = fill(
        body_template,
        values,
        body_key or f"the shipped body of {section}",
        body_key or f"der mitgelieferte Text von {section}",
    )
    return subject, body


def _check_header(value: str, what: str) -> str:
    if has_line_break(value):
        raise _bad(
            f"{what} contains a line break (not allowed in a mail header)",
            f"{what} enthält einen Zeilenumbruch (in einer Kopfzeile nicht erlaubt)",
        )
    return value


def _recipients(kind: RecipientKind, values: Sequence[str]) -> list[Recipient]:
    found: list[Recipient] = []
    for value in values:
        try:
            mailbox = parse_mailbox(value)
        except AddressError as exc:
            shown = value.strip()
            raise _bad(
                f"invalid {kind} address {shown!r}: {exc.en}", f"ungültige {kind}-Adresse {shown!r}: {exc.de}"
            ) from None
        found.append(Recipient(kind, mailbox.addr_spec, mailbox.display_name))
    return found


def _read_attachment(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _bad(f"attachment not found: {path}", f"Anhang nicht gefunden: {path}") from None
    except IsADirectoryError:
        raise _bad(f"attachment is a folder: {path}", f"Anhang ist ein Ordner: {path}") from None
    except OSError as exc:
        raise _bad(
            f"cannot read attachment {path}: {exc.strerror}", f"Anhang {path} nicht lesbar: {exc.strerror}"
        ) from None
    if path.suffix.lower() == ".pdf" and not data.startswith(PDF_MAGIC):
        raise _bad(
            f"attachment {path.name} is not a PDF (it does not start with %PDF-)",
            f"Anhang {path.name} ist kein PDF (beginnt nicht mit %PDF-)",
        )
    return data


def _values(raw: Mapping[str, object]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in raw.items():
        if not str(key).isidentifier():
            raise _bad(f"bad value name '{key}' (letters, digits, _)", f"ungültiger Name '{key}' (Buchstaben, _)")
        if value is None:
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _bad(f"value of {key} must be text or a number", f"Wert von {key} muss Text oder Zahl sein")
        values[str(key)] = str(value)
    return values


def prepare(settings: Settings, request: LetterRequest) -> NewItem:
    """Check everything about a requested mail and turn it into a queue item; ``BadLetter`` if anything is
    wrong (nothing is queued then)."""
    try:
        letter_type = LetterType(request.type)
    except ValueError:
        kinds = ", ".join(t.value for t in LetterType)
        raise _bad(
            f"unknown type '{request.type}' (one of {kinds})", f"unbekannte Art '{request.type}' ({kinds})"
        ) from None
    level = request.level
    if letter_type is LetterType.DUNNING:
        if level is None:
            level = 1  # a dunning letter that names no level is the first reminder
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= MAX_LEVEL:
            raise _bad(
                f"dunning level must be a whole number from 1 to {MAX_LEVEL}, not {level}",
                f"Mahnstufe muss eine ganze Zahl von 1 bis {MAX_LEVEL} sein, nicht {level}",
            )
    elif level is not None:
        raise _bad("a payment advice has no level", "ein Zahlungsavis hat keine Mahnstufe")
    recipients = _recipients("to", request.to) + _recipients("cc", request.cc)
    if not any(r.kind == "to" for r in recipients):
        raise _bad("no recipient (--to)", "kein Empfänger (--to)")
    if settings.sender.bcc:
        recipients.append(Recipient("bcc", settings.sender.bcc))
    if not request.attachments:
        raise _bad("no attachment (--attach)", "kein Anhang (--attach)")

    values = _values(request.vars)
    if letter_type is LetterType.DUNNING:
        values.setdefault("level", str(level))
    texts = render_texts(settings, letter_type, level, values) if None in (request.subject, request.body) else None
    subject = request.subject if request.subject is not None else texts[0] if texts else ""
    body = request.body if request.body is not None else texts[1] if texts else ""
    _check_header(subject, "the subject")
    if not subject.strip():
        raise _bad("the subject is empty", "der Betreff ist leer")
    if settings.letters.signature:
        body = f"{body.rstrip()}\n\n-- \n{fill(settings.letters.signature, values, 'letters.signature')}\n"

    attachments: list[NewAttachment] = []
    total = 0
    for path in request.attachments:
        _check_header(path.name, f"the file name {path.name!r}")
        data = _read_attachment(path)
        total += len(data)
        name_values = {**values, "filename": path.name, "stem": path.stem, "ext": path.suffix.lstrip(".")}
        name = fill(settings.letters.attachment_name, name_values, "letters.attachment_name")
        _check_header(name, f"the attachment name {name!r}")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if data.startswith(PDF_MAGIC):
            content_type = "application/pdf"
        attachments.append(NewAttachment(name, data, content_type))
    limit = settings.smtp.max_message_mb * 1024 * 1024
    if total > limit:
        size, most = f"{total / 1048576:.1f} MB", settings.smtp.max_message_mb
        raise _bad(
            f"attachments total {size}, more than smtp.max_message_mb ({most})",
            f"Anhänge zusammen {size}, mehr als smtp.max_message_mb ({most})",
        )
    return NewItem(
        type=letter_type,
        level=level,
        sender=default_sender(settings),
        recipients=tuple(recipients),
        subject=subject,
        body=body,
        attachments=tuple(attachments),
        reply_to=settings.sender.reply_to,
        vars=values,
        source_key=request.source_key,
    )


def default_sender(settings: Settings) -> str:
    """The configured From (``Name <address>``), or "" while none is set.

    An item queued before a sender is configured keeps "" and takes the sender in force when it is sent;
    sending without any sender stops the run (``NoSender``), it never makes one up.
    """
    if not settings.sender.address:
        return ""
    local, _, domain = settings.sender.address.rpartition("@")
    return str(Address(display_name=settings.sender.name, username=local, domain=domain))


class NoSender(ConfigurationFault):
    def __init__(self) -> None:
        super().__init__(
            "no sender address: set one with: opos-tui config set sender.address ADDRESS",
            "keine Absenderadresse: festlegen mit: opos-tui config set sender.address ADRESSE",
        )


def build_message(item: QueueItem, attachments: Sequence[Attachment]) -> bytes:
    """The mail as it goes on the wire: RFC 5322 with CRLF line ends, its stable Message-ID and Date."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = parse_mailbox(item.sender)
    message["To"] = [Address(r.name, addr_spec=r.address) for r in item.recipients if r.kind == "to"]
    cc = [Address(r.name, addr_spec=r.address) for r in item.recipients if r.kind == "cc"]
    if cc:
        message["Cc"] = cc
    if item.reply_to:
        message["Reply-To"] = item.reply_to
    message["Subject"] = item.subject
    if item.date:  # fixed at the first send; a preview before that has none
        message["Date"] = item.date
    message["Message-ID"] = item.message_id
    # Quoted-printable keeps umlauts intact through relays without 8BITMIME.
    message.set_content(item.body, cte="quoted-printable")
    # The email package writes base64 bodies line by line, the bulk of the time for a PDF; the attachment
    # bodies are encoded in one go instead and put in place of a unique token in the generated message.
    encoded: dict[bytes, bytes] = {}
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(b"", maintype=maintype, subtype=subtype, filename=attachment.filename)
        token = f"opos-attachment-{uuid.uuid4().hex}"
        *_, part = message.iter_parts()
        part.set_payload(token)
        encoded[token.encode()] = base64.encodebytes(attachment.data).replace(b"\n", b"\r\n")
    raw = message.as_bytes()
    for marker, body in encoded.items():
        raw = raw.replace(marker, body, 1)
    return raw
