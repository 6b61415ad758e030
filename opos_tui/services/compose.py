"""From a request (type, recipients, files, values) to a queued item, and from a queued item to RFC 5322 bytes.

Everything that can be wrong with a mail is found here, when it is queued ("at the door"), never when it is
sent: unknown type or level, bad addresses (``addresses``), more recipients than letters.max_recipients, line
breaks and control characters in header values (header injection), missing, unreadable, empty or fake PDFs,
attachments that are not regular files (a device or pipe is never read) or are given twice, too large
attachments (by their size, before they are read), and template placeholders without a value. Last, the mail
is written once as ``send`` will write it: what cannot be written is refused, whatever the reason.

Headers follow RFC 5322 with RFC 2047 encoded words for names and subjects with umlauts, and RFC 2231 for
attachment file names (``email.policy.SMTP``); international domains in IDNA form (``xn--…``). Bcc
recipients are only in the envelope, never in a header.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email import policy
from email.errors import MessageError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from pathlib import Path, PurePath
from string import Template

from opos_tui.services.addresses import AddressError, check_one_line, header_address, parse_mailbox
from opos_tui.services.errors import BadInput, ConfigurationFault, OposError
from opos_tui.services.files import FileProblem, FileTooLarge, Snapshot, StillWriting, read_regular
from opos_tui.services.queue import (
    Attachment,
    LetterType,
    NewAttachment,
    NewItem,
    QueueItem,
    Recipient,
    RecipientKind,
    Rendered,
)
from opos_tui.services.settings import ReportTemplate, Settings

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


REPORT_SECTIONS: tuple[str, ...] = ("payment_advice", *(f"dunning_{level}" for level in range(1, MAX_LEVEL + 1)))
"""The settings section of every report: payment advices, then dunning letters by level."""


def report_of(section: str) -> tuple[LetterType, int | None]:
    """The letter type and level of a report section (the reverse of ``report_section``)."""
    if section == "payment_advice":
        return LetterType.PAYMENT_ADVICE, None
    return LetterType.DUNNING, int(section.removeprefix("dunning_"))


class BadLetter(BadInput):
    """A mail that cannot be queued as given (exit 2 on the command line; ``rejected/`` in the spool)."""


def _bad(en: str, de: str) -> BadLetter:
    return BadLetter(en, de)


ATTACHMENT = ("attachment", "Anhang")

Reader = Callable[[Path, int], Snapshot]
"""Reads one attachment of at most so many bytes (a FileProblem if it is not a file to send)."""


def read_attachment(path: Path, limit: int) -> Snapshot:
    """An attachment named on the command line: a link is followed (the operator chose it)."""
    return read_regular(path, limit, ATTACHMENT)


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
    read: Reader = read_attachment
    """How the attachments are read: the spool reads only regular files of its folder, without links."""


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


def _check_header(value: str, what: str, what_de: str) -> str:
    try:
        return check_one_line(value)
    except AddressError as exc:
        raise _bad(f"{what} {exc.en}", f"{what_de} {exc.de}") from None


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


def _too_large(total: int, settings: Settings) -> BadLetter:
    size, most = f"{total / 1048576:.1f} MB", settings.smtp.max_message_mb
    return _bad(
        f"attachments total {size}, more than smtp.max_message_mb ({most})",
        f"Anhänge zusammen {size}, mehr als smtp.max_message_mb ({most})",
    )


def _read_attachments(settings: Settings, request: LetterRequest) -> list[tuple[Path, bytes]]:
    """Every attachment's bytes: each a regular, non-empty file, none twice, all together within
    smtp.max_message_mb (checked on each file's size before it is read)."""
    limit = settings.smtp.max_message_mb * 1024 * 1024
    found: list[tuple[Path, bytes]] = []
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in request.attachments:
        _check_header(path.name, f"the file name {path.name!r}", f"der Dateiname {path.name!r}")
        try:
            snapshot = request.read(path, limit - total)
        except FileTooLarge as exc:
            raise _too_large(total + exc.size, settings) from None
        except StillWriting:
            raise
        except FileProblem as exc:
            raise _bad(exc.en, exc.de) from None
        if snapshot.identity in seen:
            raise _bad(
                f"attachment {path.name} is given twice: each file goes once",
                f"Anhang {path.name} ist zweimal angegeben: jede Datei geht einmal mit",
            )
        seen.add(snapshot.identity)
        if path.suffix.lower() == ".pdf" and not snapshot.data.startswith(PDF_MAGIC):
            raise _bad(
                f"attachment {path.name} is not a PDF (it does not start with %PDF-)",
                f"Anhang {path.name} ist kein PDF (beginnt nicht mit %PDF-)",
            )
        total += len(snapshot.data)
        found.append((path, snapshot.data))
    return found


def _check_text(value: str, what: str, what_de: str) -> str:
    """``value`` if it is text that can be stored and sent (UTF-8), e.g. no unpaired surrogate from a file name
    or argument that was not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = f"U+{ord(value[exc.start]):04X}"
        raise _bad(
            f"{what} is not valid text (it holds {code}, a byte that is not UTF-8)",
            f"{what_de} ist kein gültiger Text (enthält {code}, ein Byte, das kein UTF-8 ist)",
        ) from None
    return value


def _values(raw: Mapping[str, object]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in raw.items():
        if not str(key).isidentifier():
            raise _bad(f"bad value name '{key}' (letters, digits, _)", f"ungültiger Name '{key}' (Buchstaben, _)")
        if value is None:
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _bad(f"value of {key} must be text or a number", f"Wert von {key} muss Text oder Zahl sein")
        values[str(key)] = _check_text(str(value), f"the value of {key}", f"der Wert von {key}")
    return values


def template_values(letter_type: LetterType, level: int | None, raw: Mapping[str, object]) -> dict[str, str]:
    """The values a mail's templates are filled with: its own, and for a dunning letter its level."""
    values = _values(raw)
    if letter_type is LetterType.DUNNING:
        values.setdefault("level", str(level))
    return values


def letter_texts(
    settings: Settings,
    letter_type: LetterType,
    level: int | None,
    values: Mapping[str, str],
    subject: str | None = None,
    body: str | None = None,
) -> tuple[str, str]:
    """Subject and body exactly as the mail carries them: its own texts as given, else from the templates;
    the signature below the body. ``BadLetter`` if a template cannot be filled or the subject cannot go."""
    texts = render_texts(settings, letter_type, level, values) if None in (subject, body) else None
    subject = subject if subject is not None else texts[0] if texts else ""
    body = body if body is not None else texts[1] if texts else ""
    _check_text(body, "the body", "der Text")
    _check_header(subject, "the subject", "der Betreff")
    if not subject.strip():
        raise _bad("the subject is empty", "der Betreff ist leer")
    if settings.letters.signature:
        body = f"{body.rstrip()}\n\n-- \n{fill(settings.letters.signature, values, 'letters.signature')}\n"
    return subject, body


def attachment_name(settings: Settings, filename: str, values: Mapping[str, str]) -> str:
    """The name the recipient sees for an attachment file (``letters.attachment_name`` filled)."""
    path = PurePath(filename)
    name_values = {**values, "filename": path.name, "stem": path.stem, "ext": path.suffix.lstrip(".")}
    name = fill(settings.letters.attachment_name, name_values, "letters.attachment_name")
    return _check_header(name, f"the attachment name {name!r}", f"der Anhangsname {name!r}")


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
    count, most = len(request.to) + len(request.cc), settings.letters.max_recipients
    if count > most:
        raise _bad(
            f"{count} recipients (To and Cc), more than letters.max_recipients ({most}): one letter goes to one"
            " customer",
            f"{count} Empfänger (An und Cc), mehr als letters.max_recipients ({most}): ein Brief geht an einen Kunden",
        )
    recipients = _recipients("to", request.to) + _recipients("cc", request.cc)
    if not any(r.kind == "to" for r in recipients):
        raise _bad("no recipient (--to)", "kein Empfänger (--to)")
    if settings.sender.bcc:
        recipients.append(Recipient("bcc", settings.sender.bcc))
    if not request.attachments:
        raise _bad("no attachment (--attach)", "kein Anhang (--attach)")

    values = template_values(letter_type, level, request.vars)
    subject, body = letter_texts(settings, letter_type, level, values, request.subject, request.body)

    attachments: list[NewAttachment] = []
    for path, data in _read_attachments(settings, request):
        name = attachment_name(settings, path.name, values)
        # A PDF is known by its content, anything else by its name (only then is the system's table of types read).
        content_type = "application/pdf" if data.startswith(PDF_MAGIC) else mimetypes.guess_type(name)[0]
        attachments.append(NewAttachment(name, data, content_type or "application/octet-stream"))
    item = NewItem(
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
    # The checks above give the precise reasons; writing it now, once, as it will go out (its Message-ID and
    # Date, made by the queue, are ASCII), makes sure that nothing send would fail on gets in.
    return replace(item, rendered=render(item, item.attachments))


def default_sender(settings: Settings) -> str:
    """The configured From (``Name <address>``), or "" while none is set.

    An item queued before a sender is configured keeps "" and takes the sender in force when it is sent;
    sending without any sender stops the run (``NoSender``), it never makes one up.
    """
    if not settings.sender.address:
        return ""
    local, _, domain = settings.sender.address.rpartition("@")
    return str(Address(display_name=settings.sender.name, username=local, domain=domain))


# A plausible item for the preview of the templates, with values as the accounting system sends them.
SAMPLE_VALUES: dict[str, dict[str, str]] = {
    "de": {
        "customer_name": "Hartmann Stahlbau GmbH",
        "customer_number": "K10042",
        "document_number": "RE-2025-0815",
        "amount": "1.234,56",
        "currency": "EUR",
        "due_date": "31.03.2025",
    },
    "en": {
        "customer_name": "Hartmann Steel Ltd",
        "customer_number": "K10042",
        "document_number": "RE-2025-0815",
        "amount": "1,234.56",
        "currency": "EUR",
        "due_date": "2025-03-31",
    },
}
SAMPLE_RECIPIENT = "buchhaltung@hartmann-stahlbau.example"


@dataclass(frozen=True)
class Preview:
    """One report's mail for a sample item, filled exactly as a queued mail is."""

    sender: str
    to: str
    subject: str
    body: str
    attachment: str


def preview(settings: Settings, section: str) -> Preview:
    """The mail a report's templates make for a sample item; ``BadLetter`` names a template that cannot be
    filled, as it would when such a mail is queued."""
    letter_type, level = report_of(section)
    values = template_values(letter_type, level, SAMPLE_VALUES["de" if settings.letters.language == "de" else "en"])
    subject, body = letter_texts(settings, letter_type, level, values)
    stem = "Zahlungsavis" if level is None else f"Mahnung_{level}"
    name = attachment_name(settings, f"{stem}_{values['document_number']}.pdf", values)
    to = f"{values['customer_name']} <{SAMPLE_RECIPIENT}>"
    return Preview(default_sender(settings), to, subject, body, name)


class _HeaderClasses(HeaderRegistry):
    """The email package's own header factory, except that each kind of header gets its class once. The
    stock factory makes a new class (``type(...)``) for every header of every mail, which was a third of the
    time it takes to write one; the headers it makes, and so the bytes written, are the same."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]


WIRE = policy.SMTP.clone(header_factory=_HeaderClasses())
"""``email.policy.SMTP`` (CRLF line ends, RFC 2047 for non-ASCII), writing faster."""


def _boundary() -> str:
    """A MIME boundary in the email package's own form. The package, left to choose one, compiles a regular
    expression per mail to make sure its boundary is in no line of the text; here no line can hold it: the
    text is quoted-printable (``=`` written as ``=3D``), the attachments base64 (no ``=`` but at the end, no
    ``-``), and folded header lines start with a space."""
    return f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="


class NoSender(ConfigurationFault):
    def __init__(self) -> None:
        super().__init__(
            "no sender address: set one with: opos-tui config set sender.address ADDRESS",
            "keine Absenderadresse: festlegen mit: opos-tui config set sender.address ADRESSE",
        )


def build_message(item: QueueItem, attachments: Sequence[Attachment]) -> bytes:
    """The mail as it goes on the wire: RFC 5322 with CRLF line ends, its stable Message-ID and Date.
    BadLetter if it cannot be written (only an item queued by an older version that did not check everything)."""
    return _write_message(item, attachments, item.date, item.message_id)


_PLACE = "<place-of-the-message-id@opos-tui.invalid>"
"""Stands for the Message-ID while a mail is rendered: where it was is where Date and Message-ID go."""


def render(item: QueueItem | NewItem, attachments: Sequence[Attachment] | Sequence[NewAttachment]) -> Rendered:
    """The mail written once, as :func:`build_message` writes it but without the headers fixed when it is sent
    (Date and Message-ID; From while the item has no sender): :func:`wire_message` puts them in. BadLetter if it
    cannot be written."""
    raw = _write_message(item, attachments, None, _PLACE)
    line = f"Message-ID: {_PLACE}\r\n".encode()
    at = raw.index(line)
    return Rendered(raw[:at] + raw[at + len(line) :], at)


def wire_message(item: QueueItem, rendered: Rendered, sender: str = "", date: str | None = None) -> bytes:
    """The bytes that go out for a claimed ``item`` from its ``rendered`` mail: byte for byte what
    :func:`build_message` writes, with the item's Date and Message-ID, and ``sender`` as From when the item has
    none (the one in force when it is sent). ``date``: the Date of an item that has none yet (one looked at to
    send next, whose claim will give it this one)."""
    when = item.date or date
    fixed = _header_line("Date", when) if when else b""
    fixed += _header_line("Message-ID", item.message_id)
    data, at = memoryview(rendered.data), rendered.at  # its parts are joined without copying them first
    start = b""
    if not item.sender:
        mailbox = parse_mailbox(sender)
        start = _header_lines({"From": header_address(mailbox.display_name, mailbox.addr_spec)})
    return b"".join((start, data[:at], fixed, data[at:]))


def _header_line(name: str, value: str) -> bytes:
    """One header line as the email package writes it (``WIRE``): a short ASCII value as it is, without asking
    the package (which parses it first, the time of a whole header block)."""
    line = f"{name}: {value}"
    if len(line) <= (WIRE.max_line_length or sys.maxsize) and line.isascii() and "\r" not in line and "\n" not in line:
        return line.encode("ascii") + b"\r\n"
    return _header_lines({name: value})


def _header_lines(headers: Mapping[str, object]) -> bytes:
    """Header lines written by the email package (``WIRE``), folded and encoded as in a whole mail."""
    message = EmailMessage(policy=WIRE)
    for name, value in headers.items():
        message[name] = value
    return message.as_bytes().removesuffix(b"\r\n")


def _write_message(
    item: QueueItem | NewItem,
    attachments: Sequence[Attachment] | Sequence[NewAttachment],
    date: str | None,
    message_id: str,
) -> bytes:
    try:
        return _message_bytes(item, attachments, date, message_id)
    except (ValueError, MessageError) as exc:  # AddressError, the email package's defects, UnicodeEncodeError
        en, de = (exc.en, exc.de) if isinstance(exc, OposError) else (str(exc), str(exc))
        raise _bad(
            f"this mail cannot be written as an e-mail: {en}", f"diese Mail lässt sich nicht als E-Mail schreiben: {de}"
        ) from exc


def _message_bytes(
    item: QueueItem | NewItem,
    attachments: Sequence[Attachment] | Sequence[NewAttachment],
    date: str | None,
    message_id: str,
) -> bytes:
    message = EmailMessage(policy=WIRE)
    if item.sender:  # empty only in a preview or trial before a sender is set: send takes the one then in force
        sender = parse_mailbox(item.sender)
        message["From"] = header_address(sender.display_name, sender.addr_spec)
    message["To"] = [header_address(r.name, r.address) for r in item.recipients if r.kind == "to"]
    cc = [header_address(r.name, r.address) for r in item.recipients if r.kind == "cc"]
    if cc:
        message["Cc"] = cc
    if item.reply_to:
        message["Reply-To"] = header_address("", item.reply_to)
    message["Subject"] = item.subject
    if date:  # fixed at the first send; a preview before that has none
        message["Date"] = date
    message["Message-ID"] = message_id
    # Quoted-printable keeps umlauts intact through relays without 8BITMIME.
    message.set_content(item.body, cte="quoted-printable")
    # The email package writes base64 bodies line by line, the bulk of the time for a PDF; the attachment
    # bodies are encoded in one go instead and put in place of a unique token in the generated message.
    encoded: dict[bytes, bytes] = {}
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(b"", maintype=maintype, subtype=subtype, filename=attachment.filename)
        token = f"opos-attachment-{os.urandom(16).hex()}"
        *_, part = message.iter_parts()
        part.set_payload(token)
        encoded[token.encode()] = base64.encodebytes(attachment.data).replace(b"\n", b"\r\n")
    if message.is_multipart():
        message.set_boundary(_boundary())
    raw = message.as_bytes()
    for marker, body in encoded.items():
        raw = raw.replace(marker, body, 1)
    return raw
