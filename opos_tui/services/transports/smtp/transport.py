"""SMTP submission on aiosmtplib: MailKit's five security modes, password or XOAUTH2 login, clear errors.

One ``SmtpTransport`` is one session: ``connect()`` runs the handshake stage by stage (connect and greeting,
EHLO, TLS, EHLO again, AUTH), ``send()`` then submits many messages over the same connection. Every
failure is raised as an ``OposError`` whose class says what went wrong and whose category says what the
dispatcher does next. An optional observer receives each stage as a ``HandshakeEvent``: the connection
test prints them; nothing secret is ever put into one (AUTH payloads appear as ``***``).

The handshake is driven step by step rather than by aiosmtplib's ``connect(start_tls=...)`` so that each
mode behaves exactly as MailKit's ``SecureSocketOptions`` documents, and so each step can be reported.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiosmtplib
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPException,
    SMTPHeloError,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from opos_tui.i18n import tr
from opos_tui.services.errors import ConfigError, OposError, TransportUnavailable
from opos_tui.services.secrets import PASSWORD, SecretStore
from opos_tui.services.settings import SecurityMode, Settings
from opos_tui.services.transports.base import (
    CertificateInfo,
    Envelope,
    EventStatus,
    HandshakeEvent,
    Observer,
    SendResult,
    SessionState,
    Stage,
    Then,
    TokenProvider,
    envelope_address,
)
from opos_tui.services.transports.smtp.errors import (
    AuthenticationFailed,
    AuthenticationRequired,
    AuthNotOffered,
    BasicAuthRefused,
    ConnectionLost,
    ConnectionRefused,
    ConnectionTimedOut,
    HostNotFound,
    MessageRejected,
    MessageTooLarge,
    NotSmtp,
    PlainAuthRefused,
    RecipientsRefused,
    ReplyLost,
    ServerDeferred,
    ServerRefused,
    ServerUnreachable,
    SmtpAuthDisabled,
    StartTlsNotOffered,
    StartTlsRefused,
    TlsFailed,
    TlsFault,
    TlsMismatch,
    reply_text,
)
from opos_tui.services.transports.smtp.replies import Replies
from opos_tui.services.transports.smtp.tls import (
    TlsSession,
    certificate_error,
    client_context,
    unverified_context,
)


@dataclass(frozen=True)
class PasswordLogin:
    """Anmelden with Profil/Passwort: AUTH PLAIN or LOGIN, whichever the server offers."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class OAuthLogin:
    """OAuth 2.0: AUTH XOAUTH2 with a token asked from ``token_provider`` on every login."""

    user: str
    token_provider: TokenProvider = field(repr=False)


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how the SMTP transport connects and logs in, taken from the settings."""

    host: str
    port: int
    security: SecurityMode
    timeout: float = 30
    ca_file: str = ""
    allow_plain_auth: bool = False
    login: PasswordLogin | OAuthLogin | None = None


def effective_mode(security: SecurityMode, port: int) -> SecurityMode:
    """MailKit's ``Auto``: SslOnConnect on port 465, StartTlsWhenAvailable on any other port."""
    if security is SecurityMode.AUTO:
        return SecurityMode.SSL_ON_CONNECT if port == 465 else SecurityMode.START_TLS_WHEN_AVAILABLE
    return security


_FQDN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# Enhanced status codes with which Exchange Online says "SMTP AUTH is disabled for this mailbox/tenant".
_AUTH_DISABLED = re.compile(r"\b5\.7\.(139|3)\b")
# Exchange Online's "Basic authentication is not supported for Client Submission": only OAuth is accepted.
_BASIC_AUTH_REFUSED = re.compile(r"\b5\.7\.30\b")
# OpenSSL's reasons when a TLS client reads plain SMTP ("220 …") where a TLS record should be.
_PLAIN_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)


def ehlo_name(local_address: str | None) -> str:
    """The name this client gives in EHLO: the host's FQDN if it has one, else its address as a literal.

    RFC 5321 asks for a FQDN or an address literal. ``socket.getfqdn()`` is avoided: without DNS it hangs.
    """
    name = socket.gethostname()
    if _FQDN.match(name):
        return name
    address = local_address or "127.0.0.1"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def dot_stuffed(data: bytes) -> bytes:
    """``data`` (CRLF line ends) with each line that starts with a dot given one more (RFC 5321 4.5.2), so that
    no line of the message ends its DATA: a plain byte replacement, made only where a line starts with a dot."""
    if not _dot_at_line_start(data):
        return data
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _dot_at_line_start(data: bytes) -> bool:
    """Whether a line of ``data`` starts with a dot. A mail is mostly base64, which has no dots but a line end
    every 78 bytes: looking at each dot is ten times faster than looking at each line end."""
    find = data.find
    at = find(b".")
    while at != -1:
        if at == 0 or data[at - 1] == 0x0A:
            return True
        at = find(b".", at + 1)
    return False


def _data_line(message: bytes) -> str:
    """The client's line for a message's data in an exchange shown to the user."""
    return tr(f"C: ({len(message):,} bytes of message data)", f"C: ({len(message):,} Bytes Nachricht)")


def _server_lines(code: int, message: str) -> tuple[str, ...]:
    lines = message.splitlines() or [""]
    return tuple(f"S: {code}{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines))


def _reply(response: aiosmtplib.SMTPResponse) -> str:
    return reply_text(response.code, response.message)


class SmtpTransport:
    """A session with one SMTP server; implements ``transports.base.Transport``."""

    def __init__(self, config: SmtpConfig, *, observer: Observer | None = None) -> None:
        self.config = config
        self.mode = effective_mode(config.security, config.port)
        self.observer = observer
        self._stage = Stage.CONNECT
        self.tls: TlsSession | None = None
        """The TLS in use, once encrypted."""
        self._failed_exchange: tuple[str, ...] = ()
        """The protocol lines of the step that failed last (AUTH, MAIL, RCPT, DATA), secrets as ``***``."""
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self._ahead: _Ahead | None = None
        """The next mail, announced with the end of the last one's data: its replies not read yet."""

    # --- the Transport interface ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def state(self) -> SessionState:
        """The stage in progress (or the one that failed), whether TLS was set up (and the server's certificate),
        the exchange that failed."""
        certificate = self.tls.certificate if self.tls else None
        return SessionState(self._stage, self.tls is not None, self._failed_exchange, certificate)

    async def connect(self) -> None:
        """Connect, greet, encrypt as ``smtp.security`` says and log in; on any failure nothing stays open."""
        if self.connected:
            return
        try:
            await self._handshake()
        except BaseException:
            self._drop()
            raise

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        """Submit one message (the end of its data once ``ready`` is done). Recipients refused while others were
        accepted come back in ``refused``. ``then``: see ``Transport.send``; with PIPELINING the next mail's MAIL,
        RCPT and DATA go right after this one's data, as RFC 2920 allows."""
        async with self._lock:
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead.mail.message is not message:
                self._drop()  # another mail than the one announced: the server may wait for that one's data
                ahead = None
            if ahead is not None:
                try:
                    return await self._submit(message, envelope, ready, then, ahead)
                except _AheadLost:
                    pass  # the server closed the session after the last mail, before any reply to this one
            if not self.connected:
                # The server may close an idle connection between two mails; nothing was sent yet.
                await self.connect()
            return await self._submit(message, envelope, ready, then, None)

    async def close(self) -> None:
        if self._ahead is not None:
            self._drop()  # the server may wait for an announced mail's data: QUIT would be taken for it
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit(timeout=min(self.config.timeout, 5))
        except (SMTPException, OSError, TimeoutError):
            pass  # the server goes away anyway; QUIT is a courtesy
        finally:
            client.close()

    # --- reporting ------------------------------------------------------------------------------------

    def _report(self, stage: Stage, status: EventStatus, summary: str, exchange: tuple[str, ...] = ()) -> None:
        if self.observer is not None:
            self.observer(HandshakeEvent(stage, status, summary, exchange))

    def _drop(self) -> None:
        if self._ahead is not None:
            self._ahead.replies.close()
            self._ahead = None
        if self._client is not None:
            self._client.close()
        self._client = None

    # --- the handshake --------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        cfg = self.config
        self._stage = Stage.CONNECT
        self.tls = None
        self._failed_exchange = ()
        context = await client_context(cfg.ca_file) if self.mode is not SecurityMode.NONE else None
        implicit = self.mode is SecurityMode.SSL_ON_CONNECT
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            local_hostname="localhost",  # replaced below; given so aiosmtplib never calls getfqdn()
            timeout=cfg.timeout,
            use_tls=implicit,
            start_tls=False,
            tls_context=context,
        )
        self._client = client
        try:
            greeting = await client.connect()
        except (SMTPException, OSError) as exc:
            error = await self._connect_error(exc, implicit)
            if isinstance(error, TlsFault):
                self._stage = Stage.SECURE
            raise error from exc
        peer = client.get_transport_info("peername")
        local = client.get_transport_info("sockname")
        client.local_hostname = ehlo_name(local[0] if local else None)
        self._report(
            Stage.CONNECT,
            "ok",
            tr(
                f"Connected to {cfg.host} port {cfg.port} ({peer[0] if peer else '?'}); security {cfg.security}"
                + (f" = {self.mode}" if self.mode is not cfg.security else ""),
                f"Verbunden mit {cfg.host} Port {cfg.port} ({peer[0] if peer else '?'}); Sicherheit "
                f"{cfg.security}" + (f" = {self.mode}" if self.mode is not cfg.security else ""),
            ),
            _server_lines(greeting.code, greeting.message),
        )
        if implicit:
            self._stage = Stage.SECURE
            self._tls_established(tr("TLS from the first byte", "TLS ab dem ersten Byte"), ())
        await self._ehlo()
        if self.mode in (SecurityMode.START_TLS, SecurityMode.START_TLS_WHEN_AVAILABLE):
            self._stage = Stage.SECURE
            if client.supports_extension("starttls"):
                assert context is not None
                await self._starttls(context)
                await self._ehlo()
            elif self.mode is SecurityMode.START_TLS:
                raise StartTlsNotOffered(cfg.host, cfg.port)
            else:
                self._report(
                    Stage.SECURE,
                    "warning",
                    tr(
                        "The server does not offer STARTTLS: continuing unencrypted (StartTlsWhenAvailable)",
                        "Der Server bietet kein STARTTLS an: weiter unverschlüsselt (StartTlsWhenAvailable)",
                    ),
                )
        elif self.mode is SecurityMode.NONE:
            self._report(
                Stage.SECURE,
                "warning",
                tr("Not encrypted (security None)", "Nicht verschlüsselt (Sicherheit None)"),
            )
        self._stage = Stage.SIGN_IN
        await self._login()

    def _tls_established(self, how: str, exchange: tuple[str, ...]) -> None:
        assert self._client is not None
        ssl_object = self._client.get_transport_info("ssl_object")
        self.tls = TlsSession.of(ssl_object)
        self._report(Stage.SECURE, "ok", f"{how}: {self.tls.describe()}", exchange)

    async def _ehlo(self) -> None:
        client = self._client
        assert client is not None
        self._stage = Stage.INTRODUCE
        name = client.local_hostname or "localhost"
        try:
            try:
                response = await client.ehlo(hostname=name)
                command = "EHLO"
            except SMTPHeloError as exc:
                if not client.is_connected or 400 <= exc.code < 500:
                    raise
                # A server without ESMTP (rare, old relays): HELO, and no extensions at all.
                response = await client.helo(hostname=name)
                command = "HELO"
        except SMTPResponseException as exc:
            raise self._session_refused(exc.code, exc.message) from exc
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            raise ConnectionLost(self.config.host, self.config.port, str(exc)) from exc
        extensions = response.message.splitlines()[1:]
        self._report(
            Stage.INTRODUCE,
            "ok",
            tr(f"{command} accepted; offered: ", f"{command} angenommen; angeboten: ")
            + (", ".join(extensions) or tr("no extensions", "keine Erweiterungen")),
            (f"C: {command} {name}", *_server_lines(response.code, response.message)),
        )

    async def _starttls(self, context: ssl.SSLContext) -> None:
        client = self._client
        assert client is not None
        cfg = self.config
        self._stage = Stage.SECURE
        try:
            response = await client.starttls(server_hostname=cfg.host, tls_context=context)
        except ssl.SSLCertVerificationError as exc:
            # aiosmtplib lets this one through raw from the STARTTLS upgrade.
            raise certificate_error(exc, cfg.host, await self._refused_certificate(implicit=False)) from exc
        except ssl.SSLError as exc:
            raise TlsFailed(cfg.host, cfg.port, exc.reason or str(exc), str(exc)) from exc
        except SMTPResponseException as exc:
            raise StartTlsRefused(exc.code, exc.message, cfg.host) from exc
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            reason = tr("the server broke off the TLS handshake", "der Server brach den TLS-Aufbau ab")
            raise TlsFailed(cfg.host, cfg.port, reason, str(exc)) from exc
        self._tls_established("STARTTLS", ("C: STARTTLS", *_server_lines(response.code, response.message)))

    async def _connect_error(self, exc: BaseException, implicit: bool) -> OposError:
        """What went wrong while connecting (TCP, implicit TLS, greeting), as an error an admin can act on."""
        cfg = self.config
        cause = exc.__cause__
        detail = str(exc)
        if isinstance(exc, SMTPConnectResponseError):
            return self._session_refused(exc.code, exc.message)
        if isinstance(exc, SMTPTimeoutError):
            if isinstance(cause, SMTPReadTimeoutError) and not implicit:
                # Connected, but no "220" came: the server waits for a TLS ClientHello.
                return TlsMismatch(cfg.host, cfg.port, True, SecurityMode.SSL_ON_CONNECT.value, detail)
            return ConnectionTimedOut(cfg.host, cfg.port, cfg.timeout, detail)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return certificate_error(cause, cfg.host, await self._refused_certificate(implicit=True))
        if isinstance(cause, ssl.SSLError):
            if cause.reason in _PLAIN_NOT_TLS:
                return TlsMismatch(cfg.host, cfg.port, False, SecurityMode.START_TLS.value, detail)
            return TlsFailed(cfg.host, cfg.port, cause.reason or str(cause), detail)
        if isinstance(cause, ConnectionRefusedError):
            return ConnectionRefused(cfg.host, cfg.port, detail)
        if isinstance(cause, socket.gaierror):
            return HostNotFound(cfg.host, detail)
        if isinstance(exc, SMTPResponseException):
            # A reply that is not SMTP at all (an HTTP or POP3 server on that port).
            return NotSmtp(cfg.host, cfg.port, detail)
        if isinstance(exc, SMTPConnectError) and isinstance(cause, (SMTPServerDisconnected, ConnectionError)):
            if implicit:
                # A plain SMTP server hangs up on the TLS ClientHello it cannot parse.
                return TlsMismatch(cfg.host, cfg.port, False, SecurityMode.START_TLS.value, detail)
            return ConnectionLost(cfg.host, cfg.port, detail)
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause or exc)
        os_error = cause.errno if isinstance(cause, OSError) else None
        return ServerUnreachable.because(cfg.host, cfg.port, reason, detail, os_error)

    async def _refused_certificate(self, implicit: bool) -> CertificateInfo | None:
        """Fetch the certificate the server showed, without trusting it, only to describe it to the admin."""
        cfg = self.config
        probe = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            local_hostname=(self._client.local_hostname if self._client else None) or "localhost",
            timeout=cfg.timeout,
            use_tls=implicit,
            start_tls=not implicit,
            tls_context=unverified_context(),
        )
        try:
            await probe.connect()
            der = probe.get_transport_info("ssl_object").getpeercert(binary_form=True)
            return CertificateInfo.from_der(der) if der else None
        except (SMTPException, OSError, ValueError):
            return None
        finally:
            probe.close()

    def _session_refused(self, code: int, message: str) -> OposError:
        if 400 <= code < 500:
            return ServerDeferred(code, message, self._stage.value)
        if code >= 500:
            return ServerRefused(code, message, self.config.host)
        return NotSmtp(self.config.host, self.config.port, reply_text(code, message))

    # --- login ----------------------------------------------------------------------------------------

    async def _login(self) -> None:
        client = self._client
        assert client is not None
        cfg = self.config
        login = cfg.login
        offered = [m.upper() for m in client.server_auth_methods]
        shown = " ".join(offered) or tr("none", "keine")
        if login is None:
            self._report(
                Stage.SIGN_IN,
                "ok",
                tr(f"No login configured (offered: {shown})", f"Keine Anmeldung eingestellt (angeboten: {shown})"),
            )
            return
        if self.tls is None and not cfg.allow_plain_auth:
            raise PlainAuthRefused(cfg.host)
        if isinstance(login, PasswordLogin):
            mechanism: str | None = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
            if mechanism is None:
                raise AuthNotOffered(cfg.host, "PLAIN/LOGIN", offered, self.tls is not None)
            authenticate = client.auth_plain if mechanism == "PLAIN" else client.auth_login
            secret = login.password
        else:
            mechanism = "XOAUTH2"
            if mechanism not in offered:
                raise AuthNotOffered(cfg.host, mechanism, offered, self.tls is not None)
            secret = await login.token_provider()
            authenticate = client.auth_xoauth2
        exchange: tuple[str, ...] = (f"C: AUTH {mechanism} ***",)
        try:
            response = await authenticate(login.user, secret)
        except SMTPAuthenticationError as exc:
            self._failed_exchange = exchange + _server_lines(exc.code, exc.message)
            raise self._auth_error(exc.code, exc.message, login.user, mechanism) from exc
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            raise ConnectionLost(cfg.host, cfg.port, str(exc)) from exc
        self._report(
            Stage.SIGN_IN,
            "ok",
            tr(
                f"Logged in as {login.user} with {mechanism} (offered: {shown})",
                f"Angemeldet als {login.user} mit {mechanism} (angeboten: {shown})",
            ),
            exchange + _server_lines(response.code, response.message),
        )

    def _auth_error(self, code: int, message: str, user: str, mechanism: str) -> OposError:
        if mechanism != "XOAUTH2" and _BASIC_AUTH_REFUSED.search(message):
            return BasicAuthRefused(code, message, user, mechanism)
        if _AUTH_DISABLED.search(message):
            return SmtpAuthDisabled(code, message, user, mechanism)
        if code == 530:
            return AuthenticationRequired(code, message, self.config.host)
        if 400 <= code < 500:
            return ServerDeferred(code, message, "auth")
        return AuthenticationFailed(code, message, user, mechanism)

    # --- sending --------------------------------------------------------------------------------------

    def _reply_error(self, code: int, message: str, stage: str) -> OposError:
        login = self.config.login
        if isinstance(login, PasswordLogin) and _BASIC_AUTH_REFUSED.search(message):
            return BasicAuthRefused(code, message, login.user, "password")  # not this mail's fault: stop the run
        if code == 530:
            return AuthenticationRequired(code, message, self.config.host)
        if code >= 500:
            return MessageRejected(code, message, stage)
        return ServerDeferred(code, message, stage)

    def _check_recipients(self, refused: dict[str, str], recipients: dict[str, str], exchange: list[str]) -> None:
        """Raise if every recipient was refused: permanently if all refusals were, else for a later try."""
        if len(refused) < len(recipients):
            return
        self._failed_exchange = tuple(exchange)
        if all(r.startswith("5") for r in refused.values()):
            raise RecipientsRefused(refused)
        first = next(r for r in refused.values() if not r.startswith("5"))
        code, _, text = first.partition(" ")
        raise ServerDeferred(int(code), text, "rcpt", refused)

    async def _complete(self, ready: Awaitable[None] | None) -> None:
        """Wait for ``ready`` before the end of the message data; if it fails, drop the session, so that the server
        never takes the message, and raise its error as it is."""
        if ready is None:
            return
        try:
            await ready
        except BaseException:
            self._drop()
            raise

    async def _abandon(self, replies: Replies, start: aiosmtplib.SMTPResponse) -> None:
        """End a pipelined transaction before its message: RSET, or, where the server already waits for the
        message data (354 to DATA), hang up, since no data may go."""
        replies.close()
        if start.code == 354:
            self._drop()
        else:
            await self._reset()

    async def _reset(self) -> None:
        """RSET after a refused envelope, so the connection serves the next mail."""
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.rset()
            except (SMTPException, OSError):
                self._drop()

    def _prepare(self, client: aiosmtplib.SMTP, message: bytes, envelope: Envelope) -> _Mail:
        """A message's envelope as it goes out; MessageTooLarge if the server said it takes none so large."""
        limit = int(client.esmtp_extensions.get("size", "0") or "0") if client.supports_extension("size") else 0
        if limit and len(message) > limit:
            raise MessageTooLarge(len(message), limit)
        options = [f"SIZE={len(message)}"] if client.supports_extension("size") else []
        if client.supports_extension("8bitmime") and not message.isascii():
            options.append("BODY=8BITMIME")
        recipients = {envelope_address(r): r for r in envelope.recipients}
        return _Mail(message, envelope_address(envelope.sender), options, recipients)

    def _announce(self, client: aiosmtplib.SMTP, replies: Replies, then: Then | None) -> bytes:
        """The commands of the mail ``then`` names, to go with the end of the current data (their replies are
        read when it is sent); nothing if there is none or it cannot be announced (it fails on its own then)."""
        upcoming = then() if then is not None else None
        if upcoming is None:
            return b""
        try:
            mail = self._prepare(client, upcoming.message, upcoming.envelope)
        except OposError:
            return b""
        self._ahead = _Ahead(mail, replies)
        return mail.commands()

    async def _submit(
        self,
        message: bytes,
        envelope: Envelope,
        ready: Awaitable[None] | None,
        then: Then | None,
        ahead: _Ahead | None,
    ) -> SendResult:
        client = self._client
        assert client is not None
        self._stage = Stage.SEND
        self._failed_exchange = ()
        replies: Replies | None = None
        try:
            if ahead is not None:
                mail, replies = ahead.mail, ahead.replies
            else:
                mail = self._prepare(client, message, envelope)
                if client.supports_extension("pipelining") and client.protocol is not None:
                    replies = Replies(client.protocol)
            return await self._transaction(client, replies, mail, ready, then, ahead is not None)
        finally:
            if (
                replies is not None
                and (self._ahead is None or self._ahead.replies is not replies)
                and not replies.close()
            ):
                self._drop()  # the server said more than it was asked: the session is out of step

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        replies: Replies | None,
        mail: _Mail,
        ready: Awaitable[None] | None,
        then: Then | None,
        announced: bool,
    ) -> SendResult:
        """MAIL, RCPT for each recipient, DATA and the message: one command after the other, or, with
        ``replies`` (the server offers PIPELINING), the commands up to DATA in one write (already written with
        the last mail's data if ``announced``) and their replies read in order. Either way the end of the
        message goes only once ``ready`` is done."""
        cfg = self.config
        message, sender, options, recipients = mail.message, mail.sender, mail.options, mail.recipients
        exchange: list[str] = [f"C: MAIL FROM:<{sender}>"]
        refused: dict[str, str] = {}
        try:
            if replies is None:
                try:
                    await client.mail(sender, options=options, encoding="ascii")
                except SMTPSenderRefused as exc:
                    self._failed_exchange = (*exchange, *_server_lines(exc.code, exc.message))
                    await self._reset()
                    raise self._reply_error(exc.code, exc.message, "mail") from exc
                for address, original in recipients.items():
                    exchange.append(f"C: RCPT TO:<{address}>")
                    try:
                        await client.rcpt(address, encoding="ascii")
                    except SMTPRecipientRefused as exc:
                        refused[original] = reply_text(exc.code, exc.message)
                        exchange.extend(_server_lines(exc.code, exc.message))
                if len(refused) == len(recipients):
                    await self._reset()
                self._check_recipients(refused, recipients, exchange)
                data = dot_stuffed(message)
                exchange.append("C: DATA")
                start = await client.execute_command(b"DATA")
            else:
                if not announced:
                    replies.write(mail.commands())
                data = dot_stuffed(message)  # while the server answers
                try:
                    first = await replies.read(cfg.timeout)
                except SMTPServerDisconnected as exc:
                    if announced:
                        self._drop()
                        raise _AheadLost from exc
                    raise
                for address, original in recipients.items():
                    exchange.append(f"C: RCPT TO:<{address}>")
                    rcpt = await replies.read(cfg.timeout)
                    if rcpt.code not in (250, 251):
                        refused[original] = reply_text(rcpt.code, rcpt.message)
                        exchange.extend(_server_lines(rcpt.code, rcpt.message))
                start = await replies.read(cfg.timeout)
                if first.code != 250:
                    self._failed_exchange = (exchange[0], *_server_lines(first.code, first.message))
                    await self._abandon(replies, start)
                    raise self._reply_error(first.code, first.message, "mail")
                if len(refused) == len(recipients):
                    await self._abandon(replies, start)
                self._check_recipients(refused, recipients, exchange)
                exchange.append("C: DATA")
            if start.code != 354:
                self._failed_exchange = (*exchange, *_server_lines(start.code, start.message))
                if replies is not None:
                    replies.close()
                await self._reset()
                raise self._reply_error(start.code, start.message, "data")
            protocol = client.protocol
            if protocol is None:
                raise SMTPServerDisconnected("Connection lost")
            protocol.write(data)
            await self._complete(ready)
            protocol.write(b".\r\n" + (b"" if replies is None else self._announce(client, replies, then)))
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            self._drop()
            raise ConnectionLost(cfg.host, cfg.port, str(exc)) from exc
        # From here on the message may have arrived: a lost connection is no reason to send it again.
        try:
            final = await (protocol.read_response if replies is None else replies.read)(cfg.timeout)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            self._drop()
            raise ReplyLost(cfg.host, str(exc)) from exc
        # The line for the data is written only where the exchange is shown: a send run shows none that went well.
        if final.code != 250:
            self._failed_exchange = (*exchange, _data_line(message), *_server_lines(final.code, final.message))
            raise self._reply_error(final.code, final.message, "data")
        result = SendResult(reply=_reply(final), refused=refused)
        if self.observer is not None:  # a send run has none: no need to write it for every mail
            self._report(
                Stage.SEND,
                "warning" if refused else "ok",
                tr(
                    f"Accepted for {len(recipients) - len(refused)} of {len(recipients)} recipients: {result.reply}",
                    f"Angenommen für {len(recipients) - len(refused)} von {len(recipients)} Empfängern: {result.reply}",
                ),
                (*exchange, _data_line(message), *_server_lines(final.code, final.message)),
            )
        return result


@dataclass(frozen=True)
class _Mail:
    """One message with its envelope as it goes out."""

    message: bytes
    sender: str
    options: list[str]
    recipients: dict[str, str]
    """The envelope address of each recipient -> the address as queued."""

    def commands(self) -> bytes:
        """MAIL, RCPT for each recipient and DATA, to be written at once (PIPELINING)."""
        commands = [" ".join((f"MAIL FROM:<{self.sender}>", *self.options))]
        commands += [f"RCPT TO:<{address}>" for address in self.recipients]
        return ("\r\n".join((*commands, "DATA")) + "\r\n").encode("ascii")


@dataclass(frozen=True)
class _Ahead:
    """A mail announced with the end of the last one's data, its replies to be read from ``replies``."""

    mail: _Mail
    replies: Replies


class _AheadLost(Exception):
    """Internal: the session ended before the first reply to an announced mail (nothing of it went out)."""


def smtp_config(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
) -> SmtpConfig:
    """The SMTP connection data of ``settings``, with the Passwort from ``store`` (or ``password``, typed
    but not saved yet). ConfigError when something needed is not set."""
    smtp = settings.smtp
    if not smtp.host:
        raise ConfigError(
            "smtp.host is not set: opos-tui config set smtp.host mail.example.com",
            "smtp.host ist nicht gesetzt: opos-tui config set smtp.host mail.example.com",
        )
    method = settings.auth.method
    user = settings.auth.profile
    if method != "none" and not user:
        raise ConfigError(
            f"auth.method is {method}, but auth.profile (Profil, the user name) is empty",
            f"auth.method ist {method}, aber auth.profile (Profil, der Benutzername) ist leer",
        )
    login: PasswordLogin | OAuthLogin | None = None
    if method == "password":
        secret = password or store.get(PASSWORD)
        if not secret:
            raise ConfigError(
                "auth.method is password, but no password (Passwort) is stored: opos-tui config set-password",
                "auth.method ist password, aber kein Passwort gespeichert: opos-tui config set-password",
            )
        login = PasswordLogin(user, secret)
    elif method in ("oauth", "oauth-dialog"):
        if token_provider is None:
            raise TransportUnavailable(
                f"auth.method is {method}, but this connection was made without an OAuth 2.0 sign-in to ask for "
                "tokens (`opos-tui send` and `test-connection` use the one of `opos-tui oauth login`)",
                f"auth.method ist {method}, aber diese Verbindung wurde ohne OAuth-2.0-Anmeldung erstellt, die "
                "Tokens liefert (`opos-tui send` und `test-connection` nutzen die von `opos-tui oauth login`)",
            )
        login = OAuthLogin(user, token_provider)
    return SmtpConfig(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        timeout=smtp.timeout,
        ca_file=smtp.ca_file,
        allow_plain_auth=smtp.allow_plain_auth,
        login=login,
    )


def build(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> SmtpTransport:
    """The transport for ``connection = smtp`` (the registry's builder), not yet connected."""
    return SmtpTransport(
        smtp_config(settings, store, password=password, token_provider=token_provider), observer=observer
    )
