"""Real aiosmtpd servers on 127.0.0.1 for the tests: plain, STARTTLS and implicit TLS, trustme certificates.

Use the ``smtp_server`` fixture (a factory): ``server = smtp_server("starttls")`` starts one on a free port
and stops it after the test. ``server.received`` lists every message that arrived, with whether it came
over TLS and who was logged in; ``server.ca_file`` is the CA to put into ``smtp.ca_file``;
``server.settings(...)`` gives ``Settings`` pointing at it.

Recipients steer the server's answers (the local part before ``@``): ``busy`` 451 and ``unknown`` 550 at
RCPT, ``drop`` hangs up at RCPT, ``data-busy`` 451 and ``data-reject`` 554 after DATA, ``vanish`` hangs up
after the message data arrived, without a reply, ``slow`` holds its reply until ``server.gate`` is set (the
fixture sets it when the test ends, so nothing waits forever; ``server.holding`` says a reply is held).
Sender ``blocked@…`` gets 550 at MAIL FROM.
Logins: ``USER``/``PASSWORD`` accepted, ``DISABLED_USER`` gets Exchange Online's 5.7.139,
``BASIC_OFF_USER`` its 550 5.7.30 (Basic authentication refused), ``TOKEN``
accepted for XOAUTH2 (as long as a real one, so the raised line limits matter), or whatever
``accept_token(user, token)`` accepts (the local OAuth authority's tokens, tests/servers/oauth.py).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from opos_tui.services.settings import SecurityMode, Settings, check

HOST = "127.0.0.1"
SERVER_NAME = "mail.example.test"
USER = "opos@example.test"
PASSWORD = "Sehr-geheim#4711"
DISABLED_USER = "disabled@example.test"
BASIC_OFF_USER = "basic-off@example.test"
BASIC_AUTH_REFUSED = "550 5.7.30 Basic authentication is not supported for Client Submission"
TOKEN = "ya29." + base64.urlsafe_b64encode(bytes(range(256)) * 8).decode("ascii")  # ~2.7 KB, like Microsoft's
EXCHANGE_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    "Visit https://aka.ms/smtp_auth_disabled for more information."
)

Mode = Literal["plain", "starttls", "tls"]
CertKind = Literal["trusted", "untrusted", "wrong-host"]
MODES: tuple[Mode, ...] = ("plain", "starttls", "tls")
_LIMIT = 16384  # aiosmtpd's 512-byte command limit is too short for an XOAUTH2 token


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    user: str | None


@dataclass
class SmtpServer:
    host: str
    port: int
    mode: Mode
    ca_file: Path
    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    """Every user name a client tried to log in as (PLAIN, LOGIN or XOAUTH2), in order."""
    gate: threading.Event = field(default_factory=threading.Event)
    """Opens the replies held for ``slow@…`` recipients."""
    holding: threading.Event = field(default_factory=threading.Event)
    """Set once the data of a mail to ``slow@…`` arrived and its reply is being held."""

    def settings(self, security: SecurityMode | str | None = None, **values: Any) -> Settings:
        """Settings pointing at this server; ``values`` as dotted keys (``auth__method`` for ``auth.method``)."""
        default = {"plain": "None", "starttls": "StartTls", "tls": "SslOnConnect"}[self.mode]
        data: dict[str, Any] = {
            "smtp": {
                "host": self.host,
                "port": self.port,
                "security": str(security or default),
                "timeout": 5,
                "ca_file": str(self.ca_file),
            },
            "sender": {"address": "buchhaltung@example.test"},
        }
        for key, value in values.items():
            section, _, name = key.partition("__")
            data.setdefault(section, {})[name] = value
        return check(data)


def ehlo(session: Session, hostname: str, responses: list[str], pipelining: bool) -> list[str]:
    """A handler's ``handle_EHLO``: aiosmtpd's replies, with PIPELINING (RFC 2920) among them if ``pipelining``.
    aiosmtpd reads one command line after the other, so commands sent together work; it only never says so."""
    session.host_name = hostname
    return [responses[0], "250-PIPELINING", *responses[1:]] if pipelining else responses


class _RecordingHandler:
    def __init__(
        self,
        received: list[Received],
        logins: list[str],
        gate: threading.Event,
        holding: threading.Event,
        accept_token: Callable[[str, str], bool] | None = None,
        pipelining: bool = False,
    ):
        self.pipelining = pipelining
        self.accept_token = accept_token or (lambda user, token: user == USER and token == TOKEN)
        self.received = received
        self.logins = logins
        self.gate = gate
        self.holding = holding

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode()
        self.logins.append(login)
        if login == DISABLED_USER:
            return AuthResult(success=False, handled=False, message=EXCHANGE_AUTH_DISABLED)
        if login == BASIC_OFF_USER:
            return AuthResult(success=False, handled=False, message=BASIC_AUTH_REFUSED)
        if login == USER and data.password.decode() == PASSWORD:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        return ehlo(session, hostname, responses, self.pipelining)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("blocked@"):
            return "550 5.7.1 sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.partition("@")[0]
        if local == "busy":
            return "451 4.3.0 try again later"
        if local == "unknown":
            return "550 5.1.1 no such user here"
        if local == "drop":
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"  # never reaches the client
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str | None:
        locals_ = {rcpt.partition("@")[0] for rcpt in envelope.rcpt_tos}
        if "data-busy" in locals_:
            return "451 4.3.0 try again later"
        if "data-reject" in locals_:
            return "554 5.6.0 message content rejected"
        assert server.transport is not None
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or b""),
                tls=server.transport.get_extra_info("ssl_object") is not None,
                user=session.auth_data if isinstance(session.auth_data, str) else None,
            )
        )
        if "vanish" in locals_:
            server.transport.abort()
            return None
        if "slow" in locals_:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        return "250 2.0.0 Ok: queued as 4F2A1"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        try:
            fields = base64.b64decode(args[1]).decode().split("\x01")
            user = fields[0].removeprefix("user=")
            token = fields[1].removeprefix("auth=Bearer ")
        except (IndexError, ValueError):
            await server.push("501 5.5.2 cannot decode XOAUTH2")
            return AuthResult(success=False, handled=True)
        self.logins.append(user)
        if self.accept_token(user, token):
            return AuthResult(success=True, auth_data=user)
        # As Google and Microsoft do: an error challenge first, the final 535 after the client's empty line.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


class _LongLinesSMTP(SMTP):
    line_length_limit = _LIMIT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_size_limits = collections.defaultdict(lambda: _LIMIT)


class LocalController(Controller):
    """aiosmtpd's controller on 127.0.0.1, on a port the system picks when it binds (read ``port`` after
    ``start()``): no other test, in this process or a parallel one, can take the port in between."""

    def __init__(self, handler: Any, **options: Any) -> None:
        # Starting a thread and a server on a loaded machine can take longer than aiosmtpd's 5 s.
        super().__init__(handler, hostname=HOST, port=0, ready_timeout=60, **options)

    def factory(self) -> SMTP:
        return _LongLinesSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        return self._listen()

    async def _listen(self) -> asyncio.AbstractServer:
        server = await super()._create_server()
        assert isinstance(server, asyncio.Server)
        self.port = int(server.sockets[0].getsockname()[1])
        return server


_reserved: list[socket.socket] = []


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens, now or later in this test run: connecting is refused.

    The port stays bound (without listening) until the process ends, so no server started meanwhile, by
    this test process or a parallel one, can take it."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    _reserved.append(sock)
    return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    certs: dict[CertKind, trustme.LeafCert]

    def server_context(self, kind: CertKind) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.certs[kind].configure_cert(context)
        return context


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certs: dict[CertKind, trustme.LeafCert] = {
        "trusted": ca.issue_cert(HOST, SERVER_NAME),
        "untrusted": stranger.issue_cert(HOST, SERVER_NAME),
        "wrong-host": ca.issue_cert("other.example.test"),
    }
    return Pki(ca_file, certs)


def start_smtp_server(
    pki: Pki,
    mode: Mode,
    *,
    cert: CertKind = "trusted",
    data_size_limit: int = 33554432,
    auth_required: bool = False,
    smtputf8: bool = False,
    accept_token: Callable[[str, str], bool] | None = None,
    pipelining: bool = False,
) -> tuple[SmtpServer, Controller]:
    server = SmtpServer(HOST, 0, mode, pki.ca_file)
    handler = _RecordingHandler(server.received, server.logins, server.gate, server.holding, accept_token, pipelining)
    context = pki.server_context(cert)
    controller = LocalController(
        handler,
        server_hostname=SERVER_NAME,
        ssl_context=context if mode == "tls" else None,
        tls_context=context if mode == "starttls" else None,
        require_starttls=False,
        # aiosmtpd only knows STARTTLS: with implicit TLS (and on the plain server) it must not demand it.
        auth_require_tls=mode == "starttls",
        auth_required=auth_required,
        authenticator=handler.authenticate,
        data_size_limit=data_size_limit,
        enable_SMTPUTF8=smtputf8,
    )
    controller.start()
    server.port = controller.port
    return server, controller


StartServer = Callable[..., SmtpServer]
"""The ``smtp_server`` fixture: ``smtp_server("plain" | "starttls" | "tls", **options) -> SmtpServer``."""


@pytest.fixture
def smtp_server(smtp_pki: Pki) -> Iterator[StartServer]:
    """A factory: ``smtp_server("plain" | "starttls" | "tls", cert=..., data_size_limit=..., smtputf8=...,
    pipelining=...) -> SmtpServer`` (``smtputf8=True``: the server offers SMTPUTF8; ``pipelining=True``:
    PIPELINING, RFC 2920)."""
    controllers: list[Controller] = []

    servers: list[SmtpServer] = []

    def start(mode: Mode, **options: Any) -> SmtpServer:
        server, controller = start_smtp_server(smtp_pki, mode, **options)
        controllers.append(controller)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.gate.set()
    for controller in controllers:
        controller.stop()


async def read_data(reader: asyncio.StreamReader) -> bytes | None:
    """A message's data after 354, up to the line with the dot (dot-stuffed as sent); None if the client hung up
    before that line: then it is no message."""
    data = b""
    while (line := await reader.readline()) != b".\r\n":
        if not line:
            return None
        data += line
    return data


@dataclass
class WithholdingServer:
    """A raw SMTP server (PIPELINING, no TLS, no login) that answers a mail's data only once the client has sent
    the next mail's MAIL command, as a client that announces its next mail with the end of the data does; the
    last of ``count`` mails is answered at once. A client waiting for each reply gets none and times out."""

    count: int
    port: int = 0
    messages: list[bytes] = field(default_factory=list)
    """Each completed message's data, dot-stuffed as sent, in order."""
    sessions: int = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 withholding.example.test ESMTP\r\n")
        withheld = b""
        while line := await reader.readline():
            command = line.upper()
            if command.startswith((b"EHLO", b"HELO")):
                writer.write(b"250-withholding.example.test\r\n250 PIPELINING\r\n")
            elif command.startswith(b"MAIL"):
                writer.write(withheld + b"250 2.1.0 Ok\r\n")
                withheld = b""
            elif command.startswith(b"RCPT"):
                writer.write(b"250 2.1.5 Ok\r\n")
            elif command == b"DATA\r\n":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = await read_data(reader)
                if data is None:
                    break  # hung up within the data: never a message
                self.messages.append(data)
                withheld = b"250 2.0.0 Ok: queued\r\n"
                if len(self.messages) >= self.count:
                    writer.write(withheld)
                    withheld = b""
            elif command == b"QUIT\r\n":
                writer.write(b"221 Bye\r\n")
                break
            else:
                writer.write(b"250 Ok\r\n")
        writer.close()


@contextlib.asynccontextmanager
async def withholding_server(count: int) -> AsyncIterator[WithholdingServer]:
    """A :class:`WithholdingServer` on 127.0.0.1 for the block."""
    server = WithholdingServer(count)
    listener = await asyncio.start_server(server.session, HOST, 0)
    async with listener:
        server.port = listener.sockets[0].getsockname()[1]
        yield server
