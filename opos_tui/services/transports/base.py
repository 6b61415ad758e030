"""The one interface every transport offers, and what it reports back.

A transport is a session: ``connect()`` once (reach the server or the mail program, encrypt, sign in), then
``send()`` many rendered messages over it, each to an :class:`Envelope`, then ``close()``. SMTP is one; a
Simple MAPI, an Outlook, a local ``sendmail`` and a Microsoft Graph transport fit the same shape. Nothing here
is particular to one protocol.

Failures are raised as ``OposError`` subclasses whose ``category`` tells the dispatcher what to do (transient:
defer and retry; permanent: this mail failed; uncertain: the data went out without confirmation, never
resent by itself; configuration: stop the run; interaction: a person must sign in). The other side's reply
and the refused recipients travel on the error (``reply``, ``refused``), as on a :class:`SendResult`.

While it works, a transport reports each step to an optional observer as a :class:`HandshakeEvent`; its
:attr:`Transport.state` says at any time which step it is at (or failed at) and whether its channel is
encrypted. The connection test is built on these two alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Literal, Protocol, Self

from opos_tui.i18n import tr
from opos_tui.services.addresses import AddressError, ascii_addr_spec
from opos_tui.services.errors import OposError, PermanentError


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and whom it goes to (To, Cc and Bcc; Bcc never appears in the headers)."""

    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Upcoming:
    """The mail a send run will hand over next on the same session, announced while the current one goes out."""

    message: bytes
    envelope: Envelope


Then = Callable[[], Upcoming | None]
"""Asked once the current message is complete: the mail that follows it, if the run knows it already."""


@dataclass(frozen=True)
class SendResult:
    """What the other side said to one message."""

    reply: str
    """The final reply, e.g. ``250 2.0.0 Ok: queued as 4F2A1``, or what the mail program said."""
    refused: dict[str, str] = field(default_factory=dict)
    """Recipients refused while others were accepted: address -> reply."""


class Stage(StrEnum):
    """The steps of a session, as every transport reports them; the values are what the connection test shows
    and puts in its ``--json``. A transport reports the steps it has and skips the others."""

    CONNECT = "connect"
    """Reach the server (or load the mail program) and hear its greeting."""
    SECURE = "tls"
    """Encrypt the channel."""
    INTRODUCE = "ehlo"
    """Introduce this client and learn what the other side offers (SMTP's EHLO)."""
    SIGN_IN = "auth"
    """Log in or sign in."""
    SEND = "send"
    """Hand over a message."""
    DONE = "done"
    """The session works: the last step of the connection test."""


EventStatus = Literal["ok", "warning", "failed"]


@dataclass(frozen=True)
class HandshakeEvent:
    """One step of the conversation with the other side, as it happens."""

    stage: Stage
    status: EventStatus
    summary: str
    """One line for a person, in the current language."""
    exchange: tuple[str, ...] = ()
    """The protocol lines of this step (``C: EHLO …`` / ``S: 250 …``); secrets appear as ``***``."""

    def to_json(self) -> dict[str, object]:
        return {"stage": self.stage, "status": self.status, "summary": self.summary, "exchange": list(self.exchange)}


Observer = Callable[[HandshakeEvent], None]
"""Receives each step of a session as it happens."""

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable returning a current OAuth 2.0 access token, asked on every sign-in. It raises
``InteractionNeeded`` when a person must sign in first. A sign-in service implements it as a plain async
function; it needs nothing from the transports."""


@dataclass(frozen=True)
class CertificateInfo:
    """What the other side's X.509 certificate says (an SMTP server's, an HTTPS endpoint's), for an admin."""

    subject: str
    issuer: str
    not_after: datetime
    names: tuple[str, ...]

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        from cryptography import x509  # only needed when a certificate is shown

        cert = x509.load_der_x509_certificate(der)
        try:
            alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(str(n.value) for n in alt if isinstance(n, (x509.DNSName, x509.IPAddress)))
        except x509.ExtensionNotFound:
            names = ()
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.not_valid_after_utc, names)

    def describe(self) -> str:
        valid = self.not_after.strftime("%Y-%m-%d")
        names = ", ".join(self.names) or "-"
        return tr(
            f"certificate '{self.subject}' for {names}, issued by '{self.issuer}', valid until {valid}",
            f"Zertifikat '{self.subject}' für {names}, ausgestellt von '{self.issuer}', gültig bis {valid}",
        )


@dataclass(frozen=True)
class SessionState:
    """Where a session is: what a connection test reports when it ends."""

    stage: Stage = Stage.CONNECT
    """The step in progress, or the one that failed."""
    encrypted: bool = False
    """Whether the channel was encrypted in this session (TLS, HTTPS), even if it broke since. A transport
    that opens no channel of its own (it hands over to a program on this computer) says True."""
    failed_exchange: tuple[str, ...] = ()
    """The protocol lines of the step that failed last, secrets as ``***``."""
    certificate: CertificateInfo | None = None
    """The other side's certificate, when the channel is encrypted with one."""


class Transport(Protocol):
    @property
    def state(self) -> SessionState: ...

    async def connect(self) -> None: ...

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        """Hand over ``message``: RFC 5322 bytes with CRLF line ends, ending in CRLF, as ``compose`` writes them
        (not dot-stuffed). A transport passes them on as they are, without normalising them again.

        ``ready`` (the commit of the mail's claim) is awaited before the message is complete on the other side:
        before it is handed over at all, or (SMTP) before the end of its data, which the server waits for before
        it takes the message. If it raises, the message is not complete (an SMTP session with part of it is
        dropped) and its error is raised as it is.

        ``then``: asked once the message is complete, for the mail that will follow it on this session. A
        transport may announce that one at once (SMTP with PIPELINING: its envelope goes with the end of this
        message's data); the next :meth:`send` of that very message then goes on from there. Any other next
        mail, or :meth:`close`, drops what was announced (nothing of a message goes before its ``ready``)."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class AddressNotSupported(PermanentError):
    """An address that cannot go into the envelope (queued by an older version that did not check it)."""

    def __init__(self, address: str, reason: OposError) -> None:
        self.address = address
        super().__init__(
            f"The address {address} cannot be sent: {reason.en}. Correct the recipients and retry.",
            f"Die Adresse {address} lässt sich nicht senden: {reason.de}. Empfänger korrigieren und neu senden.",
        )


def envelope_address(address: str) -> str:
    """An address as it goes into an envelope (MAIL FROM / RCPT TO, a mail program's recipients): ASCII, its
    domain in IDNA form (``xn--…``), so that no server on the way needs SMTPUTF8. Addresses that cannot be
    written so are refused when queued; one queued by an older version fails here, before anything is sent."""
    try:
        return ascii_addr_spec(address)
    except AddressError as exc:
        raise AddressNotSupported(address, exc) from None
