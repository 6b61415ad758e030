"""The demo: a home folder, a capturing mail server and a queue of realistic letters, on any machine.

``opos-tui demo`` needs no mail server and no network. It makes (or reuses) a home folder, starts an SMTP
server on 127.0.0.1 inside the process (aiosmtpd, in its own thread so the TUI's event loop stays free),
with STARTTLS on a certificate made on the spot and trusted through ``smtp.ca_file`` for this home only, and
password login with a password kept in this home's file secret store. Then it configures the app for that
server and drops a dozen German payment advices and dunning letters (levels 1-3, real PDFs naming their
customer and document numbers) into the spool inbox and imports them, as the accounting system would.

Three of them show what goes wrong in real life: one mail carries another customer's PDF (the plausibility
check flags it), one recipient's server answers 451 (greylisting: deferred) and one 550 (no such user:
failed). Everything the server accepts is stored as ``demo/received/NNNN.eml``, and every answer it gives is
one line of ``demo/server.log`` (JSON), which ``opos-tui demo --received`` and the TUI's view read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets as random_secrets
import ssl
import tempfile
import textwrap
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass
from email import message_from_bytes, policy
from email.utils import format_datetime, localtime
from pathlib import Path
from typing import Any

from opos_tui.i18n import tr
from opos_tui.services import settings, spool
from opos_tui.services.errors import ConfigError
from opos_tui.services.files import make_folder, write_atomic
from opos_tui.services.home import Home
from opos_tui.services.pdf import PAGE_WIDTH, TextLine, page_pdf
from opos_tui.services.queue import open_queue
from opos_tui.services.secrets import PASSWORD, FileSecretStore

HOST = "127.0.0.1"
SERVER_NAME = "mail.opos-demo.localhost"
USER = "buchhaltung@nordlicht-handel.example"
SENDER_NAME = "Nordlicht Handel GmbH"
COMPANY_LINE = "Nordlicht Handel GmbH · Speicherstadt 12 · 20457 Hamburg"

GREYLISTED = "rechnung@kraemer-sanitaer.example"
UNKNOWN_USER = "info@becker-druck.example"
REFUSALS = {
    GREYLISTED: "451 4.7.1 Greylisted, please try again later",
    UNKNOWN_USER: "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
}
"""What the demo server answers at RCPT for these recipients: deferred and failed show in the queue."""


def demo_dir(home: Home) -> Path:
    """The demo's own folder in the home: its CA, the server log and the received mails."""
    return home.root / "demo"


def received_dir(home: Home) -> Path:
    return demo_dir(home) / "received"


def server_log(home: Home) -> Path:
    return demo_dir(home) / "server.log"


# --- the letters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    number: str
    name: str
    street: str
    city: str
    email: str


@dataclass(frozen=True)
class DemoLetter:
    customer: Customer
    level: int | None
    """1-3 for a dunning letter, None for a payment advice."""
    document: str
    invoice: str
    invoice_age: int
    """Days between the invoice and the letter."""
    amount: float
    cc: str = ""
    pdf_of: int | None = None
    """Attach the PDF of that letter (its index in LETTERS) instead: the swapped file."""

    @property
    def kind(self) -> str:
        return "Zahlungsavis" if self.level is None else f"{self.level}. Mahnung"

    @property
    def filename(self) -> str:
        return (
            f"Zahlungsavis_{self.document}.pdf" if self.level is None else f"Mahnung_{self.level}_{self.document}.pdf"
        )


LETTERS: tuple[DemoLetter, ...] = (
    DemoLetter(
        Customer("L20001", "Müller Stahlbau GmbH", "Industriestraße 14", "44147 Dortmund",
            "buchhaltung@mueller-stahlbau.example"),
        None, "ZA-2026-0412", "2026-118", 20, 12480.00,
    ),
    DemoLetter(
        Customer("K10002", "Bäckerei Schäfer KG", "Marktplatz 3", "97070 Würzburg",
            "info@baeckerei-schaefer.example"),
        1, "RE-2026-1187", "RE-2026-1187", 33, 846.30,
    ),
    DemoLetter(
        Customer("K10003", "Özdemir Logistik GmbH", "Hafenweg 21", "28197 Bremen",
            "rechnungen@oezdemir-logistik.example"),
        2, "RE-2026-1042", "RE-2026-1042", 46, 4312.80,
    ),
    DemoLetter(
        Customer("K10004", "Weiß Elektrotechnik e.K.", "Lindenallee 7", "04109 Leipzig",
            "weiss@weiss-elektro.example"),
        3, "RE-2025-0988", "RE-2025-0988", 88, 1975.00,
    ),
    DemoLetter(
        Customer("L20005", "Groß & Partner Steuerberatung", "Königstraße 55", "70173 Stuttgart",
            "kanzlei@gross-partner.example"),
        None, "ZA-2026-0415", "GP-2026-031", 14, 3250.00,
    ),
    DemoLetter(
        Customer("K10006", "Hoffmann Holzbau GmbH", "Am Sägewerk 2", "83022 Rosenheim",
            "buero@hoffmann-holzbau.example"),
        1, "RE-2026-1201", "RE-2026-1201", 31, 2104.50,
    ),
    DemoLetter(
        Customer("K10007", "Krämer Sanitär GmbH", "Brunnenstraße 9", "50667 Köln",
            GREYLISTED),
        2, "RE-2026-1066", "RE-2026-1066", 42, 689.00,
    ),
    DemoLetter(
        Customer("K10008", "Becker Druck GmbH", "Gutenbergring 11", "55116 Mainz",
            UNKNOWN_USER),
        1, "RE-2026-1215", "RE-2026-1215", 28, 1290.40,
    ),
    DemoLetter(
        Customer("K10009", "Fischer Gartenbau", "Gärtnerweg 5", "90402 Nürnberg",
            "post@fischer-gartenbau.example"),
        1, "RE-2026-1133", "RE-2026-1133", 38, 518.75, pdf_of=9,
    ),
    DemoLetter(
        Customer("K10010", "Schulz Metallbau GmbH & Co. KG", "Schmiedestraße 30", "30159 Hannover",
            "buchhaltung@schulz-metallbau.example"),
        2, "RE-2026-1150", "RE-2026-1150", 49, 7840.00,
    ),
    DemoLetter(
        Customer("K10011", "Wagner Autohaus GmbH", "Bahnhofstraße 88", "68159 Mannheim",
            "finanzen@wagner-autohaus.example"),
        3, "RE-2025-0951", "RE-2025-0951", 95, 15320.00,
    ),
    DemoLetter(
        Customer("L20012", "Neumann IT-Service", "Am Technologiepark 4", "01099 Dresden",
            "rechnungswesen@neumann-it.example"),
        None, "ZA-2026-0421", "NIT-4471", 10, 2380.00, cc="m.neumann@neumann-it.example",
    ),
)  # fmt: skip


def euro(amount: float) -> str:
    """1234.5 -> ``1.234,50`` (German notation)."""
    return f"{amount:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")


def german_date(day: dt.date) -> str:
    return day.strftime("%d.%m.%Y")


def invoice_date(letter: DemoLetter, today: dt.date) -> dt.date:
    return today - dt.timedelta(days=letter.invoice_age)


def due_date(letter: DemoLetter, today: dt.date) -> dt.date:
    return today + dt.timedelta(days=2 if letter.level is None else 14 - 3 * letter.level)


def _paragraphs(letter: DemoLetter, today: dt.date) -> list[str]:
    invoiced = german_date(invoice_date(letter, today))
    invoice = f"unsere Rechnung {letter.invoice} vom {invoiced}"
    due = german_date(due_date(letter, today))
    total = f"{euro(letter.amount)} EUR"
    if letter.level is None:
        return [
            f"wir haben heute die Zahlung zu Ihrer Rechnung {letter.invoice} vom {invoiced}"
            f" über {total} veranlasst. Der Betrag wird Ihrem Konto mit Wertstellung {due} gutgeschrieben.",
            "Bitte prüfen Sie den Zahlungseingang. Bei Rückfragen nennen Sie uns bitte die Avisnummer.",
        ]
    if letter.level == 1:
        return [
            f"sicher haben Sie übersehen, dass {invoice} über {total} noch offen ist.",
            f"Bitte überweisen Sie den Betrag bis zum {due}. Sollten Sie inzwischen gezahlt haben, betrachten Sie"
            " dieses Schreiben bitte als gegenstandslos.",
        ]
    if letter.level == 2:
        return [
            f"leider konnten wir zu {invoice} über {total} trotz unserer Zahlungserinnerung noch keinen"
            " Zahlungseingang feststellen.",
            f"Bitte überweisen Sie den Betrag zuzüglich 5,00 EUR Mahngebühr bis zum {due}.",
        ]
    return [
        f"trotz zweier Mahnungen ist {invoice} über {total} weiterhin offen. Dies ist unsere letzte Mahnung.",
        f"Geht der Betrag zuzüglich 10,00 EUR Mahngebühren nicht bis zum {due} bei uns ein, übergeben wir die"
        " Forderung ohne weitere Ankündigung einem Inkassounternehmen.",
    ]


def letter_pdf(letter: DemoLetter, today: dt.date) -> bytes:
    """The letter as the accounting system prints it: letterhead, address, reference block, text, footer."""
    c = letter.customer
    right = PAGE_WIDTH - 225
    number_label = "Lieferantennummer" if letter.level is None else "Kundennummer"
    document_label = "Avisnummer" if letter.level is None else "Rechnung"
    lines = [
        TextLine(right, 790, SENDER_NAME, size=15, bold=True),
        TextLine(right, 776, "Forderungsmanagement", size=9),
        TextLine(72, 712, COMPANY_LINE, size=7),
        TextLine(72, 696, c.name, size=11),
        TextLine(72, 682, c.street, size=11),
        TextLine(72, 668, c.city, size=11),
        TextLine(right, 696, f"{number_label}: {c.number}", size=9),
        TextLine(right, 684, f"{document_label}: {letter.document}", size=9),
        TextLine(right, 672, f"Datum: {german_date(today)}", size=9),
        TextLine(72, 610, f"{letter.kind} {letter.document}", size=14, bold=True),
        TextLine(72, 580, "Sehr geehrte Damen und Herren,", size=10),
    ]
    y = 558
    for paragraph in _paragraphs(letter, today):
        for row in textwrap.wrap(paragraph, 95):
            lines.append(TextLine(72, y, row, size=10))
            y -= 14
        y -= 8
    y -= 6
    for label, value in (
        ("Beleg", letter.invoice),
        ("Belegdatum", german_date(invoice_date(letter, today))),
        ("Betrag", f"{euro(letter.amount)} EUR"),
        ("Fällig" if letter.level else "Wertstellung", german_date(due_date(letter, today))),
    ):
        lines += [TextLine(90, y, label, size=10, bold=True), TextLine(200, y, value, size=10)]
        y -= 14
    y -= 20
    lines += [TextLine(72, y, "Mit freundlichen Grüßen", size=10), TextLine(72, y - 28, SENDER_NAME, size=10)]
    footer = "Sitz Hamburg · HRB 123456 · IBAN DE89 3704 0044 0532 0130 00 · BIC COBADEFFXXX"
    lines.append(TextLine(72, 40, footer, size=7))
    return page_pdf(lines)


def manifest(letter: DemoLetter, today: dt.date) -> dict[str, Any]:
    """The spool manifest the accounting system would drop for this letter."""
    c = letter.customer
    data: dict[str, Any] = {
        "type": "payment-advice" if letter.level is None else "dunning",
        "to": [f"{c.name} <{c.email}>"],
        "attachments": [letter.filename],
        "vars": {
            "customer_name": c.name,
            "customer_number": c.number,
            "document_number": letter.document,
            "amount": euro(letter.amount),
            "currency": "EUR",
            "due_date": german_date(due_date(letter, today)),
        },
    }
    if letter.level is not None:
        data["level"] = letter.level
    if letter.cc:
        data["cc"] = [letter.cc]
    return data


def fill_queue(home: Home, current: settings.Settings, today: dt.date | None = None) -> int:
    """Drop the demo letters (dated ``today``) into the spool inbox and import them; returns how many were
    queued."""
    today = today or dt.date.today()
    inbox = spool.default_inbox(home)
    for n, letter in enumerate(LETTERS, start=1):
        source = LETTERS[letter.pdf_of] if letter.pdf_of is not None else letter
        write_atomic(inbox / letter.filename, letter_pdf(source, today))
        body = json.dumps(manifest(letter, today), ensure_ascii=False, indent=2).encode()
        write_atomic(inbox / f"{n:02d}_{letter.customer.number}_{letter.document}.json", body)
    with open_queue(home) as queue:
        report = spool.import_spool(current, queue, inbox)
    return len(report.imported)


# --- the certificate ----------------------------------------------------------------------------------


def make_certificates(folder: Path) -> ssl.SSLContext:
    """A CA (written to ``folder/ca.pem``) and a server certificate for 127.0.0.1 and localhost signed by it;
    returns the server's TLS context. Made anew on each start, valid for a year."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opos-tui demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [
        x509.DNSName(SERVER_NAME),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address(HOST)),
    ]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_atomic(folder / "ca.pem", ca.public_bytes(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # load_cert_chain reads files only: the key lives on disk for a moment, owner-only, then goes.
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".server-", suffix=".pem") as chain:
        chain.write(leaf.public_bytes(pem) + key_pem)
        chain.flush()
        context.load_cert_chain(chain.name)
    return context


# --- the server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerEvent:
    """One answer of the demo server to one mail: accepted (with the file it was stored in) or refused."""

    at: str
    accepted: bool
    mail_from: str
    recipients: list[str]
    reply: str
    subject: str = ""
    attachments: list[str] | None = None
    file: str = ""
    tls: bool = False
    user: str = ""


class _Handler:
    """aiosmtpd's handler: checks the login, refuses the demo's bad recipients, stores everything else."""

    def __init__(self, home: Home, password: str) -> None:
        self.home = home
        self.password = password

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if (
            isinstance(data, LoginPassword)
            and data.login.decode() == USER
            and random_secrets.compare_digest(data.password, self.password.encode())
        ):
            return AuthResult(success=True, auth_data=USER)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        refusal = REFUSALS.get(address.lower())
        if refusal is not None:
            self._log(ServerEvent(_now(), False, envelope.mail_from or "", [address], refusal))
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content or b"")
        tls = server.transport.get_extra_info("ssl_object") is not None
        user = session.auth_data if isinstance(session.auth_data, str) else ""
        message = message_from_bytes(content, policy=policy.default)
        attachments = [part.get_filename() or "" for part in message.iter_attachments()]
        # The handlers all run in the server's one event loop: one mail after the other, no lock needed.
        folder = received_dir(self.home)
        folder.mkdir(parents=True, exist_ok=True)
        queued = f"{len(list(folder.glob('*.eml'))) + 1:04d}"
        # Delivered as a mail server would: Return-Path and one Delivered-To per envelope recipient.
        trace = f"Return-Path: <{envelope.mail_from}>\r\n"
        trace += "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        trace += (
            f"Received: from [{session.peer[0]}] by {SERVER_NAME} with ESMTP{'SA' if user else ''}"
            f"{' (TLS)' if tls else ''} id {queued}; {format_datetime(localtime())}\r\n"
        )
        write_atomic(folder / f"{queued}.eml", trace.encode() + content)
        reply = f"250 2.0.0 Ok: queued as {queued}"
        subject = str(message.get("Subject", ""))
        mail_from = envelope.mail_from or ""
        self._log(
            ServerEvent(
                _now(),
                True,
                mail_from,
                list(envelope.rcpt_tos),
                reply,
                subject,
                attachments,
                f"{queued}.eml",
                tls,
                user,
            )
        )
        return reply

    def _log(self, event: ServerEvent) -> None:
        with server_log(self.home).open("a", encoding="utf-8") as log:
            log.write(json.dumps(asdict(event), ensure_ascii=False) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


class DemoServer:
    """The capturing SMTP server on 127.0.0.1: aiosmtpd's controller runs it in its own thread and event loop,
    so a TUI in the same process keeps its loop to itself."""

    def __init__(self, home: Home, password: str, tls: ssl.SSLContext) -> None:
        from aiosmtpd.controller import Controller

        # aiosmtpd logs (deprecation notes, dropped connections) would garble the TUI: the server log says it all.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)

        class OwnPort(Controller):
            """The port is the one the system picks as the server binds (read after ``start()``): probing for a
            free port first and binding it later could lose it to another program in between."""

            async def _bind(self) -> asyncio.AbstractServer:
                server = await Controller._create_server(self)
                assert isinstance(server, asyncio.Server)
                self.port = int(server.sockets[0].getsockname()[1])
                return server

            def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
                return self._bind()

        handler = _Handler(home, password)
        self.port = 0
        """Known once started."""
        self._controller = OwnPort(
            handler,
            hostname=HOST,
            port=0,
            server_hostname=SERVER_NAME,
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=handler.authenticate,
        )

    def start(self) -> None:
        self._controller.start()
        self.port = int(self._controller.port)

    def stop(self) -> None:
        self._controller.stop()


# --- setting up ---------------------------------------------------------------------------------------


@dataclass
class Demo:
    home: Home
    server: DemoServer
    queued: int
    """Letters queued by this start (0 when a kept demo home already had its queue)."""

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_demo_home(home: Home) -> None:
    """Refuse a folder that holds something else: the demo must never rewrite a real installation."""
    root = home.root
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not demo_dir(home).is_dir())):
        raise ConfigError(
            f"{root} is not empty and not a demo home: the demo would overwrite its settings."
            " Give an empty or new folder with --home.",
            f"{root} ist nicht leer und kein Demo-Ordner: die Demo würde seine Einstellungen überschreiben."
            " Bitte mit --home einen leeren oder neuen Ordner angeben.",
        )


def configure(home: Home, port: int, password: str) -> settings.Settings:
    """Point this home's settings at the demo server (other settings of a kept demo home stay)."""
    data = settings.load(home).data()
    data["connection"] = "smtp"
    data["auth"].update(method="password", profile=USER)
    data["smtp"].update(host=HOST, port=port, security="StartTls", timeout=10, ca_file=str(demo_dir(home) / "ca.pem"))
    data["sender"].update(address=USER, name=SENDER_NAME)
    current = settings.validate(data)
    settings.save(home, current)
    FileSecretStore(home.secrets_file).set(PASSWORD, password)
    return current


def start(home: Home) -> Demo:
    """Set up (or reuse) a demo home, start its server and fill its queue if it is empty.

    The password is kept in the home's file secret store: run the app with ``OPOS_TUI_SECRETS=file``
    (the ``demo`` command does) so that it never touches the user's keyring.
    """
    check_demo_home(home)
    home.ensure()
    make_folder(demo_dir(home))
    password = random_secrets.token_urlsafe(18)
    server = DemoServer(home, password, make_certificates(demo_dir(home)))
    server.start()
    try:
        current = configure(home, server.port, password)
        with open_queue(home) as queue:
            empty = queue.count() == 0
        queued = fill_queue(home, current) if empty else 0
    except BaseException:
        server.stop()
        raise
    return Demo(home, server, queued)


def received(home: Home) -> Iterator[ServerEvent]:
    """Every answer the demo server gave, oldest first."""
    try:
        lines = server_log(home).read_text("utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        if line.strip():
            yield ServerEvent(**json.loads(line))


def received_summary(events: list[ServerEvent]) -> str:
    accepted = sum(e.accepted for e in events)
    refused = len(events) - accepted
    return tr(
        f"The demo mail server accepted {accepted} mails and refused {refused}.",
        f"Der Demo-Mailserver hat {accepted} Mails angenommen und {refused} abgewiesen.",
    )
