"""The SMTP transport against real aiosmtpd servers on 127.0.0.1: modes, certificates, logins, replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opos_tui.i18n import LANGS
from opos_tui.services.errors import Category, ConfigError, DeliveryUncertain, OposError, TransportUnavailable
from opos_tui.services.queue import QueueError
from opos_tui.services.secrets import PASSWORD as PASSWORD_KEY
from opos_tui.services.secrets import FileSecretStore
from opos_tui.services.settings import SecurityMode, Settings, check
from opos_tui.services.transports.base import AddressNotSupported, Envelope, HandshakeEvent, SendResult, Stage, Upcoming
from opos_tui.services.transports.registry import build_transport
from opos_tui.services.transports.smtp import errors
from opos_tui.services.transports.smtp.transport import (
    OAuthLogin,
    PasswordLogin,
    SmtpConfig,
    SmtpTransport,
    effective_mode,
)
from tests.servers.smtp import (
    BASIC_OFF_USER,
    DISABLED_USER,
    PASSWORD,
    TOKEN,
    USER,
    SmtpServer,
    read_data,
    withholding_server,
)

MESSAGE = b"From: buchhaltung@example.test\r\nTo: kunde@example.test\r\nSubject: Zahlungsavis\r\n\r\nHallo\r\n"
ENVELOPE = Envelope("buchhaltung@example.test", ("kunde@example.test",))
PIPELINING = pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])
"""The replies are the same, and so is what the transport makes of them, whether the server offers PIPELINING
(RFC 2920: the envelope and DATA go in one write) or not (one command after the other)."""


def config(server: SmtpServer, security: str | None = None, **overrides: Any) -> SmtpConfig:
    settings = server.settings(security)
    values: dict[str, Any] = {
        "host": settings.smtp.host,
        "port": settings.smtp.port,
        "security": settings.smtp.security,
        "timeout": 5,
        "ca_file": settings.smtp.ca_file,
    }
    values.update(overrides)
    return SmtpConfig(**values)


async def send_one(cfg: SmtpConfig, envelope: Envelope = ENVELOPE, message: bytes = MESSAGE) -> SendResult:
    async with SmtpTransport(cfg) as transport:
        return await transport.send(message, envelope)


# --- the five security modes against the three kinds of server ---------------------------------------

# What MailKit does: "plain"/"tls" = the mail arrives without/with TLS; an error class = no connection.
EXPECTED: dict[tuple[str, str], str | type[OposError]] = {
    ("plain", "None"): "plain",
    ("plain", "Auto"): "plain",
    ("plain", "SslOnConnect"): errors.TlsMismatch,
    ("plain", "StartTls"): errors.StartTlsNotOffered,
    ("plain", "StartTlsWhenAvailable"): "plain",
    ("starttls", "None"): "plain",
    ("starttls", "Auto"): "tls",
    ("starttls", "SslOnConnect"): errors.TlsMismatch,
    ("starttls", "StartTls"): "tls",
    ("starttls", "StartTlsWhenAvailable"): "tls",
    ("tls", "None"): errors.TlsMismatch,
    ("tls", "Auto"): errors.TlsMismatch,
    ("tls", "SslOnConnect"): "tls",
    ("tls", "StartTls"): errors.TlsMismatch,
    ("tls", "StartTlsWhenAvailable"): errors.TlsMismatch,
}


@pytest.mark.parametrize(("mode", "security"), list(EXPECTED))
async def test_security_mode_against_server(smtp_server: Any, mode: str, security: str) -> None:
    server: SmtpServer = smtp_server(mode)
    expected = EXPECTED[(mode, security)]
    # A plain client waits for a greeting a TLS server never sends: a short timeout keeps this test quick.
    cfg = config(server, security, timeout=1)
    if isinstance(expected, str):
        result = await send_one(cfg)
        assert result.reply == "250 2.0.0 Ok: queued as 4F2A1"
        assert [(r.rcpt_tos, r.tls) for r in server.received] == [(["kunde@example.test"], expected == "tls")]
    else:
        with pytest.raises(expected) as caught:
            await send_one(cfg)
        assert caught.value.category is Category.CONFIGURATION
        assert server.received == []


def test_auto_is_ssl_on_connect_on_port_465_only() -> None:
    assert effective_mode(SecurityMode.AUTO, 465) is SecurityMode.SSL_ON_CONNECT
    assert effective_mode(SecurityMode.AUTO, 587) is SecurityMode.START_TLS_WHEN_AVAILABLE
    assert effective_mode(SecurityMode.AUTO, 25) is SecurityMode.START_TLS_WHEN_AVAILABLE
    assert effective_mode(SecurityMode.START_TLS, 465) is SecurityMode.START_TLS


async def test_mismatch_suggests_the_matching_mode(smtp_server: Any) -> None:
    plain, tls = smtp_server("starttls"), smtp_server("tls")
    with pytest.raises(errors.TlsMismatch) as to_plain:
        await send_one(config(plain, "SslOnConnect"))
    assert to_plain.value.suggested == "StartTls"
    assert f"port {plain.port}" in str(to_plain.value)
    with pytest.raises(errors.TlsMismatch) as to_tls:
        await send_one(config(tls, "StartTls", timeout=1))
    assert to_tls.value.suggested == "SslOnConnect"


async def test_no_greeting_names_both_likely_causes(smtp_server: Any) -> None:
    # A plain client gets no "220" from a TLS port, and none from a server that hangs: the same silence.
    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(hangs, "127.0.0.1", 0)
    async with listener:
        hung = SmtpConfig("127.0.0.1", listener.sockets[0].getsockname()[1], SecurityMode.NONE, timeout=1)
        tls_port = config(smtp_server("tls"), "StartTls", timeout=1)
        for cfg in (tls_port, hung):
            with pytest.raises(errors.TlsMismatch) as caught:
                await send_one(cfg)
            for lang in LANGS:
                text = caught.value.message(lang)
                assert "SslOnConnect" in text
                assert ("not answering" if lang == "en" else "antwortet nicht") in text


# --- certificates -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_untrusted_certificate_names_subject_issuer_and_ca_file(smtp_server: Any, mode: str) -> None:
    server = smtp_server(mode, cert="untrusted")
    with pytest.raises(errors.CertificateNotTrusted) as caught:
        await send_one(config(server))
    error = caught.value
    assert "Testing cert" in error.subject and "Testing CA" in error.issuer
    assert error.issuer in str(error) and "smtp.ca_file" in str(error)
    assert error.category is Category.CONFIGURATION
    assert server.received == []


async def test_failing_starttls_never_falls_back_to_plain(smtp_server: Any) -> None:
    server = smtp_server("starttls", cert="untrusted")
    for security in ("StartTlsWhenAvailable", "Auto"):
        with pytest.raises(errors.CertificateNotTrusted):
            await send_one(config(server, security))
    assert server.received == []


async def test_certificate_is_trusted_only_through_ca_file(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with pytest.raises(errors.CertificateNotTrusted):
        await send_one(config(server, ca_file=""))
    await send_one(config(server))
    assert [r.tls for r in server.received] == [True]


async def test_certificate_for_another_host_is_refused(smtp_server: Any) -> None:
    server = smtp_server("tls", cert="wrong-host")
    with pytest.raises(errors.CertificateProblem) as caught:
        await send_one(config(server))
    assert "other.example.test" in str(caught.value) and "127.0.0.1" in str(caught.value)


async def test_unreadable_ca_file_is_a_configuration_fault(smtp_server: Any, tmp_path: Any) -> None:
    server = smtp_server("starttls")
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(errors.CaFileUnusable):
        await send_one(config(server, ca_file=str(bogus)))


# --- logging in ---------------------------------------------------------------------------------------


async def test_good_password_logs_in_over_tls(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    await send_one(config(server, login=PasswordLogin(USER, PASSWORD)))
    assert [(r.user, r.tls) for r in server.received] == [(USER, True)]


async def test_bad_password_is_a_configuration_fault_with_the_reply(smtp_server: Any) -> None:
    server = smtp_server("tls")
    with pytest.raises(errors.AuthenticationFailed) as caught:
        await send_one(config(server, login=PasswordLogin(USER, "Falsch-0815")))
    error = caught.value
    assert (error.code, error.reply) == (535, "535 5.7.8 Authentication credentials invalid")
    assert error.category is Category.CONFIGURATION
    assert "auth.profile" in str(error) and "Falsch-0815" not in str(error)
    assert server.received == []


async def test_exchange_smtp_auth_disabled_says_what_to_enable(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with pytest.raises(errors.SmtpAuthDisabled) as caught:
        await send_one(config(server, login=PasswordLogin(DISABLED_USER, PASSWORD)))
    assert caught.value.code == 535 and "5.7.139" in caught.value.reply
    assert "Authenticated SMTP" in caught.value.en and "Authentifiziertes SMTP" in caught.value.de


async def test_basic_auth_refused_says_to_switch_to_oauth(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with pytest.raises(errors.BasicAuthRefused) as caught:
        await send_one(config(server, login=PasswordLogin(BASIC_OFF_USER, PASSWORD)))
    assert "5.7.30" in caught.value.reply
    assert caught.value.category is Category.CONFIGURATION  # the run stops; no mail is marked failed
    assert "auth.method" in caught.value.en and "oauth-dialog" in caught.value.en
    assert "auth.method" in caught.value.de
    assert server.received == []


def test_basic_auth_refused_after_a_password_login_stops_instead_of_failing_the_mail() -> None:
    transport = SmtpTransport(SmtpConfig("127.0.0.1", 587, SecurityMode.START_TLS, login=PasswordLogin(USER, "x")))
    error = transport._reply_error(550, "5.7.30 Basic authentication is not supported for Client Submission", "mail")
    assert type(error) is errors.BasicAuthRefused
    assert error.category is Category.CONFIGURATION and "oauth-dialog" in error.en


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("5.7.3 Authentication unsuccessful", errors.SmtpAuthDisabled),
        (
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox",
            errors.SmtpAuthDisabled,
        ),
        ("550 5.7.30 Basic authentication is not supported for Client Submission", errors.BasicAuthRefused),
        ("5.7.8 Error: authentication failed", errors.AuthenticationFailed),
    ],
)
def test_exchange_auth_replies_are_recognised(reply: str, kind: type[OposError]) -> None:
    transport = SmtpTransport(SmtpConfig("127.0.0.1", 587, SecurityMode.START_TLS))
    error = transport._auth_error(535, reply, USER, "LOGIN")
    assert type(error) is kind
    assert error.category is Category.CONFIGURATION


async def test_password_is_not_sent_unencrypted_unless_allowed(smtp_server: Any) -> None:
    server = smtp_server("plain")
    with pytest.raises(errors.PlainAuthRefused):
        await send_one(config(server, login=PasswordLogin(USER, PASSWORD)))
    assert server.logins == []
    await send_one(config(server, login=PasswordLogin(USER, PASSWORD), allow_plain_auth=True))
    assert server.logins == [USER]
    assert [(r.user, r.tls) for r in server.received] == [(USER, False)]


async def test_server_offering_no_login_before_tls(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with pytest.raises(errors.AuthNotOffered) as caught:
        await send_one(config(server, "None", login=PasswordLogin(USER, PASSWORD), allow_plain_auth=True))
    assert "StartTls" in str(caught.value)


async def test_xoauth2_with_a_token_from_the_provider(smtp_server: Any) -> None:
    server = smtp_server("starttls")
    asked: list[str] = []

    async def token() -> str:
        asked.append("token")
        return TOKEN

    await send_one(config(server, login=OAuthLogin(USER, token)))
    assert asked == ["token"]
    assert [(r.user, r.tls) for r in server.received] == [(USER, True)]


async def test_xoauth2_refused_token(smtp_server: Any) -> None:
    server = smtp_server("tls")

    async def token() -> str:
        return "ya29.expired"

    with pytest.raises(errors.AuthenticationFailed) as caught:
        await send_one(config(server, login=OAuthLogin(USER, token)))
    assert caught.value.mechanism == "XOAUTH2" and caught.value.code == 535
    assert "OAuth" in str(caught.value)
    assert server.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_required_530_is_a_configuration_fault(smtp_server: Any) -> None:
    server = smtp_server("tls", auth_required=True)
    with pytest.raises(errors.AuthenticationRequired) as caught:
        await send_one(config(server))
    assert caught.value.code == 530 and caught.value.category is Category.CONFIGURATION
    assert "auth.method" in str(caught.value)


# --- the server's replies to one mail -----------------------------------------------------------------


async def test_message_larger_than_size_is_refused_before_sending(smtp_server: Any) -> None:
    server = smtp_server("starttls", data_size_limit=2000)
    big = MESSAGE + b"x" * 3000 + b"\r\n"
    async with SmtpTransport(config(server)) as transport:
        with pytest.raises(errors.MessageTooLarge) as caught:
            await transport.send(big, ENVELOPE)
        assert caught.value.limit == 2000 and caught.value.size > 3000
        assert caught.value.category is Category.PERMANENT
        await transport.send(MESSAGE, ENVELOPE)  # the connection still serves the next mail
    assert len(server.received) == 1


REPLIES: list[tuple[str, type[OposError], int, str, Category]] = [
    ("busy@example.test", errors.ServerDeferred, 451, "451 4.3.0 try again later", Category.TRANSIENT),
    ("unknown@example.test", errors.RecipientsRefused, 550, "550 5.1.1 no such user here", Category.PERMANENT),
    ("data-busy@example.test", errors.ServerDeferred, 451, "451 4.3.0 try again later", Category.TRANSIENT),
    ("data-reject@example.test", errors.MessageRejected, 554, "554 5.6.0 message content rejected", Category.PERMANENT),
]


@pytest.mark.parametrize(("recipient", "kind", "code", "reply", "category"), REPLIES)
@PIPELINING
async def test_replies_are_classified_and_the_connection_reused(
    smtp_server: Any, pipelining: bool, recipient: str, kind: type[OposError], code: int, reply: str, category: Category
) -> None:
    server = smtp_server("starttls", pipelining=pipelining)
    async with SmtpTransport(config(server)) as transport:
        with pytest.raises(kind) as caught:
            await transport.send(MESSAGE, Envelope("buchhaltung@example.test", (recipient,)))
        error: Any = caught.value
        assert (error.code, error.reply, error.category) == (code, reply, category)
        await transport.send(MESSAGE, ENVELOPE)
    assert [r.rcpt_tos for r in server.received] == [["kunde@example.test"]]


@PIPELINING
async def test_the_exchange_shows_the_data_of_a_mail_the_server_refused_or_took(
    smtp_server: Any, pipelining: bool
) -> None:
    """A mail the server refuses after its data: the failed exchange names the data, then the reply. One it
    takes: a watching connection test is told the same, with the server's 250."""
    server = smtp_server("plain", pipelining=pipelining)
    envelope = Envelope("buchhaltung@example.test", ("data-reject@example.test",))
    events: list[HandshakeEvent] = []
    async with SmtpTransport(config(server), observer=events.append) as transport:
        with pytest.raises(errors.MessageRejected):
            await transport.send(MESSAGE, envelope)
        assert transport.state.failed_exchange == (
            "C: MAIL FROM:<buchhaltung@example.test>",
            "C: RCPT TO:<data-reject@example.test>",
            "C: DATA",
            f"C: ({len(MESSAGE):,} bytes of message data)",
            "S: 554 5.6.0 message content rejected",
        )
        await transport.send(MESSAGE, ENVELOPE)
    sent = [e for e in events if e.stage is Stage.SEND]
    assert sent[-1].exchange[-2:] == (f"C: ({len(MESSAGE):,} bytes of message data)", sent[-1].exchange[-1])
    assert sent[-1].exchange[-1].startswith("S: 250")


@PIPELINING
async def test_refused_sender_is_permanent(smtp_server: Any, pipelining: bool) -> None:
    server = smtp_server("plain", pipelining=pipelining)
    with pytest.raises(errors.MessageRejected) as caught:
        await send_one(config(server), Envelope("blocked@example.test", ("kunde@example.test",)))
    assert (caught.value.stage, caught.value.code) == ("mail", 550)


@PIPELINING
async def test_some_recipients_refused_others_accepted(smtp_server: Any, pipelining: bool) -> None:
    server = smtp_server("starttls", pipelining=pipelining)
    envelope = Envelope("buchhaltung@example.test", ("kunde@example.test", "unknown@example.test", "busy@example.test"))
    result = await send_one(config(server), envelope)
    assert result.refused == {
        "unknown@example.test": "550 5.1.1 no such user here",
        "busy@example.test": "451 4.3.0 try again later",
    }
    assert [r.rcpt_tos for r in server.received] == [["kunde@example.test"]]


@PIPELINING
async def test_all_refused_with_one_temporary_is_transient(smtp_server: Any, pipelining: bool) -> None:
    server = smtp_server("starttls", pipelining=pipelining)
    with pytest.raises(errors.ServerDeferred) as caught:
        await send_one(config(server), Envelope("a@example.test", ("unknown@example.test", "busy@example.test")))
    assert set(caught.value.refused) == {"unknown@example.test", "busy@example.test"}


@PIPELINING
async def test_connection_lost_after_data_is_uncertain_and_next_send_reconnects(
    smtp_server: Any, pipelining: bool
) -> None:
    server = smtp_server("starttls", pipelining=pipelining)
    async with SmtpTransport(config(server)) as transport:
        with pytest.raises(DeliveryUncertain):
            await transport.send(MESSAGE, Envelope("buchhaltung@example.test", ("vanish@example.test",)))
        assert not transport.connected
        await transport.send(MESSAGE, ENVELOPE)
    assert [r.rcpt_tos for r in server.received] == [["vanish@example.test"], ["kunde@example.test"]]


@PIPELINING
async def test_connection_lost_before_data_is_transient(smtp_server: Any, pipelining: bool) -> None:
    server = smtp_server("plain", pipelining=pipelining)
    async with SmtpTransport(config(server)) as transport:
        with pytest.raises(errors.ConnectionLost) as caught:
            await transport.send(MESSAGE, Envelope("buchhaltung@example.test", ("drop@example.test",)))
        assert caught.value.category is Category.TRANSIENT
        await transport.send(MESSAGE, ENVELOPE)
    assert [r.rcpt_tos for r in server.received] == [["kunde@example.test"]]


async def test_connection_refused_names_host_and_port(smtp_server: Any) -> None:
    from tests.servers.smtp import free_port

    port = free_port()
    with pytest.raises(errors.ConnectionRefused) as caught:
        await send_one(SmtpConfig("127.0.0.1", port, SecurityMode.START_TLS, timeout=5))
    assert caught.value.category is Category.TRANSIENT
    assert f"127.0.0.1 refused the connection on port {port}" in str(caught.value)


async def test_cancelling_connect_closes_the_connection() -> None:
    connected = asyncio.Event()
    closed_by_client = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # and never greet, like a server that hangs
        if await reader.read() == b"":
            closed_by_client.set()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        transport = SmtpTransport(SmtpConfig("127.0.0.1", port, SecurityMode.NONE, timeout=30))
        task = asyncio.create_task(transport.connect())
        await connected.wait()
        # Python 3.11's wait_for() can swallow a cancellation that lands just as the TCP connect completes
        # (fixed in 3.12), so cancel until the task has ended, as a user pressing Esc again would.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
        assert task.cancelled()
        await asyncio.wait_for(closed_by_client.wait(), 5)
        assert not transport.connected


@pytest.mark.parametrize("smtputf8", [False, True], ids=["plain-ascii-server", "smtputf8-server"])
async def test_idn_domains_go_into_the_envelope_as_idna(smtp_server: Any, smtputf8: bool) -> None:
    # Also where the server offers SMTPUTF8: the next hop may not, and the headers carry the same form.
    server = smtp_server("plain", smtputf8=smtputf8)
    await send_one(config(server), Envelope("buchhaltung@müller-gmbh.de", ("kunde@straße.example",)))
    (received,) = server.received
    assert received.mail_from == "buchhaltung@xn--mller-gmbh-9db.de"
    assert received.rcpt_tos == ["kunde@xn--strae-oqa.example"]  # IDNA 2008: ß stays ß, not "strasse"


@pytest.mark.parametrize(
    "message",
    [
        MESSAGE + b".\r\n..\r\n.Punkt\r\nEnde.\r\n.\r\n",  # a lone dot would end the data early unless stuffed
        b".Erste Zeile mit Punkt\r\n\r\n.\r\n",  # the very first line too
        b"Summe 1.234,56 EUR. Danke.\r\n.\r\nNach der Punktzeile\r\n",  # dots within lines before it
    ],
    ids=["dot-lines", "dot-first", "dot-after-inner-dots"],
)
@PIPELINING
async def test_lines_starting_with_a_dot_arrive_as_they_were(
    smtp_server: Any, pipelining: bool, message: bytes
) -> None:
    server = smtp_server("plain", pipelining=pipelining)
    result = await send_one(config(server), message=message)
    assert result.reply.startswith("250")
    (received,) = server.received
    assert received.content == message


@PIPELINING
async def test_the_data_waits_for_ready_and_nothing_of_it_goes_out_when_ready_fails(
    smtp_server: Any, pipelining: bool
) -> None:
    """The dispatcher hands in the commit of the mail's claim as ``ready``: the envelope and the data may go
    meanwhile, the end of the data only after it. If it fails, the session is dropped with the message incomplete
    (the server never takes it), its error comes back as it is, and the next mail goes over a new session."""
    server = smtp_server("plain", pipelining=pipelining)
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.Event()

    async def ready() -> None:
        waiting.set()
        await committed

    gone = QueueError("the queue cannot grow: the disk is full", "die Warteschlange kann nicht wachsen")
    async with SmtpTransport(config(server)) as transport:
        sending = asyncio.create_task(transport.send(MESSAGE, ENVELOPE, ready=ready()))
        waited = asyncio.create_task(waiting.wait())
        done, _ = await asyncio.wait({sending, waited}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {waited}  # the envelope was accepted, and the end of the data waits
        assert transport.state.stage is Stage.SEND and server.received == []
        committed.set_exception(gone)
        with pytest.raises(QueueError) as caught:
            await sending
        assert caught.value is gone
        assert server.received == []
        later: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        later.set_result(None)
        assert (await transport.send(MESSAGE, ENVELOPE, ready=later)).reply.startswith("250")
    assert [r.content for r in server.received] == [MESSAGE]


async def test_the_data_goes_while_ready_is_awaited_and_only_its_end_waits_for_it() -> None:
    """The message data goes out at once; the line that ends it, which makes the server take the message, only
    once ``ready`` is done."""
    lines: list[bytes] = []
    data_in = asyncio.Event()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 watching.example.test ESMTP\r\n")
        while line := await reader.readline():
            lines.append(line)
            if line.startswith(b"EHLO"):
                writer.write(b"250 watching.example.test\r\n")
            elif line == b"DATA\r\n":
                writer.write(b"354 go ahead\r\n")
                while (line := await reader.readline()) != b".\r\n":
                    lines.append(line)
                    if b"".join(lines).endswith(MESSAGE):
                        data_in.set()
                lines.append(line)
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif line == b"QUIT\r\n":
                writer.write(b"221 Bye\r\n")
            else:
                writer.write(b"250 Ok\r\n")
        writer.close()

    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    async with listener:
        cfg = SmtpConfig("127.0.0.1", listener.sockets[0].getsockname()[1], SecurityMode.NONE, timeout=5)
        async with SmtpTransport(cfg) as transport:
            sending = asyncio.create_task(transport.send(MESSAGE, ENVELOPE, ready=committed))
            await asyncio.wait_for(data_in.wait(), 5)
            assert b".\r\n" not in lines and not sending.done()
            committed.set_result(None)
            assert (await sending).reply == "250 2.0.0 Ok: queued"
    assert lines[-2:] == [b".\r\n", b"QUIT\r\n"]


def upcoming(message: bytes) -> Upcoming:
    return Upcoming(message, ENVELOPE)


async def test_the_next_mail_goes_with_the_end_of_the_data_and_is_sent_from_there() -> None:
    """``then`` names the next mail: with PIPELINING its MAIL, RCPT and DATA go right after the end of the data,
    before the server answered it, and the next send goes on from there, on the same session. The server here
    answers a mail's data only once the next mail's MAIL arrived: a client that waits would time out."""
    second, third = MESSAGE.replace(b"Zahlungsavis", b"Mahnung"), MESSAGE.replace(b"Zahlungsavis", b"Avis")
    async with withholding_server(3) as server:
        cfg = SmtpConfig("127.0.0.1", server.port, SecurityMode.NONE, timeout=5)
        async with SmtpTransport(cfg) as transport:
            first = await transport.send(MESSAGE, ENVELOPE, then=lambda: upcoming(second))
            assert first.reply == "250 2.0.0 Ok: queued"
            assert (await transport.send(second, ENVELOPE, then=lambda: upcoming(third))).reply == first.reply
            assert (await transport.send(third, ENVELOPE, then=lambda: None)).reply == first.reply
    assert server.messages == [MESSAGE, second, third] and server.sessions == 1


async def test_a_mail_other_than_the_one_announced_goes_over_a_new_session(smtp_server: Any) -> None:
    """The run may not send the mail it announced (another sender took it): the server waits for that one's data,
    so the session is dropped, and the other mail goes over a new one. The announced mail never arrives, and
    closing a session with one announced hangs up rather than saying QUIT into its data."""
    server = smtp_server("plain", pipelining=True)
    announced, other = MESSAGE.replace(b"Zahlungsavis", b"Mahnung"), MESSAGE.replace(b"Zahlungsavis", b"Avis")
    async with SmtpTransport(config(server)) as transport:
        await transport.send(MESSAGE, ENVELOPE, then=lambda: upcoming(announced))
        assert (await transport.send(other, ENVELOPE, then=lambda: upcoming(announced))).reply.startswith("250")
    assert [r.content for r in server.received] == [MESSAGE, other]
    assert not transport.connected


async def test_a_server_that_ends_the_session_after_a_mail_gets_the_announced_one_over_a_new_session() -> None:
    """Some servers take a number of mails per session and then hang up. The mail announced with the last one's
    data is then sent over a new session, as without PIPELINING, not deferred."""
    received: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 limited.example.test ESMTP\r\n")
        while line := await reader.readline():
            if line.startswith(b"EHLO"):
                writer.write(b"250-limited.example.test\r\n250 PIPELINING\r\n")
            elif line == b"DATA\r\n":
                writer.write(b"354 go ahead\r\n")
                received.append(await read_data(reader) or b"")
                writer.write(b"250 2.0.0 Ok: queued\r\n")
                while (line := await reader.readline()) not in (b"DATA\r\n", b"QUIT\r\n", b""):
                    pass  # the next mail's commands, read (a hang-up with unread input would be a reset) ...
                if line == b"QUIT\r\n":
                    writer.write(b"221 Bye\r\n")
                break  # ... and left unanswered: one mail per session
            else:
                writer.write(b"250 Ok\r\n")
        await writer.drain()
        writer.close()

    second = MESSAGE.replace(b"Zahlungsavis", b"Mahnung")
    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    async with listener:
        cfg = SmtpConfig("127.0.0.1", listener.sockets[0].getsockname()[1], SecurityMode.NONE, timeout=5)
        async with SmtpTransport(cfg) as transport:
            assert (await transport.send(MESSAGE, ENVELOPE, then=lambda: upcoming(second))).reply.endswith("queued")
            assert (await transport.send(second, ENVELOPE)).reply.endswith("queued")
    assert received == [MESSAGE, second]


async def test_without_pipelining_nothing_is_announced(smtp_server: Any) -> None:
    server = smtp_server("plain", pipelining=False)
    asked: list[bool] = []

    def then() -> Upcoming:
        asked.append(True)
        return upcoming(MESSAGE)

    async with SmtpTransport(config(server)) as transport:
        assert (await transport.send(MESSAGE, ENVELOPE, then=then)).reply.startswith("250")
        assert (await transport.send(MESSAGE, ENVELOPE)).reply.startswith("250")
    assert asked == [] and len(server.received) == 2


@contextlib.asynccontextmanager
async def pipelining_server(answers: bytes, seen: list[bytes]) -> AsyncIterator[SmtpConfig]:
    """A server for one session that offers PIPELINING and answers nothing before DATA arrived (a client waiting
    for each reply would never send DATA), then ``answers`` all at once, in one write. ``seen``: the commands
    before DATA, then each message's data (ending in the line with the dot); complete once the block is left."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 pipelining.example.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-pipelining.example.test\r\n250 PIPELINING\r\n")
        while (line := await reader.readline()) not in (b"DATA\r\n", b""):
            seen.append(line)
        writer.write(answers)
        data = b""
        while line := await reader.readline():
            if line in (b"QUIT\r\n", b"RSET\r\n"):
                writer.write(b"221 Bye\r\n" if line == b"QUIT\r\n" else b"250 Ok\r\n")
                continue
            data += line
            if line == b".\r\n":
                seen.append(data)
                writer.write(b"250-2.0.0 Ok:\r\n250 queued as 4F2A1\r\n")
        writer.close()
        ended.set()

    ended = asyncio.Event()
    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    async with listener:
        yield SmtpConfig("127.0.0.1", listener.sockets[0].getsockname()[1], SecurityMode.NONE, timeout=5)
        await asyncio.wait_for(ended.wait(), 5)  # the client hung up: all it sent is in ``seen``


TWO = Envelope("buchhaltung@example.test", ("kunde@example.test", "unknown@example.test"))
PIPELINED_ENVELOPE = [
    b"MAIL FROM:<buchhaltung@example.test>\r\n",
    b"RCPT TO:<kunde@example.test>\r\n",
    b"RCPT TO:<unknown@example.test>\r\n",
]


async def test_with_pipelining_a_server_silent_after_the_data_makes_the_mail_uncertain_after_the_timeout() -> None:
    """The replies read in order (PIPELINING) wait at most ``smtp.timeout`` for each: a server that takes the data
    and never confirms it leaves the mail uncertain, and the session is not used again."""
    hung_up = asyncio.Event()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 silent.example.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-silent.example.test\r\n250 PIPELINING\r\n")
        while await reader.readline() not in (b"DATA\r\n", b""):
            pass
        writer.write(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with .\r\n")
        while await reader.readline():
            pass  # the data, and then nothing: no reply ever
        hung_up.set()
        writer.close()

    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    async with listener:
        cfg = SmtpConfig("127.0.0.1", listener.sockets[0].getsockname()[1], SecurityMode.NONE, timeout=1)
        transport = SmtpTransport(cfg)
        await transport.connect()
        with pytest.raises(DeliveryUncertain):
            await transport.send(MESSAGE, ENVELOPE)
        assert not transport.connected
        await asyncio.wait_for(hung_up.wait(), 5)  # the client hung up on it


async def test_with_pipelining_the_envelope_and_data_go_in_one_write_and_replies_arriving_together_are_read() -> None:
    seen: list[bytes] = []
    answers = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n354 End data with .\r\n"
    async with pipelining_server(answers, seen) as cfg:
        result = await send_one(cfg, TWO)
    assert seen == [*PIPELINED_ENVELOPE, MESSAGE + b".\r\n"]
    assert result == SendResult("250 2.0.0 Ok: queued as 4F2A1", {"unknown@example.test": "550 5.1.1 no such user"})


async def test_with_pipelining_a_server_waiting_for_data_that_must_not_come_is_hung_up_on() -> None:
    """Every recipient refused, yet 354 to DATA (a server may answer so): no data may follow, not even an
    empty message, so the transport hangs up instead of ending the data; the mail is refused as without
    PIPELINING."""
    seen: list[bytes] = []
    answers = b"250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n550 5.1.1 no such user\r\n354 End data with .\r\n"
    async with pipelining_server(answers, seen) as cfg:
        transport = SmtpTransport(cfg)
        await transport.connect()
        with pytest.raises(errors.RecipientsRefused):
            await transport.send(MESSAGE, TWO)
        assert not transport.connected
        await transport.close()
    assert seen == PIPELINED_ENVELOPE


async def test_an_address_that_cannot_be_sent_is_refused_before_anything_goes_out(smtp_server: Any) -> None:
    # Only an item queued by an older version can still hold one: it fails, and nothing reaches the server.
    server = smtp_server("plain", smtputf8=True)
    with pytest.raises(AddressNotSupported) as caught:
        await send_one(config(server), Envelope("buchhaltung@example.test", ("jürgen@example.test",)))
    assert caught.value.category is Category.PERMANENT
    assert "jürgen@example.test" in str(caught.value) and "before the @" in str(caught.value)
    assert server.received == []


# --- the factory --------------------------------------------------------------------------------------


def test_factory_builds_from_settings_and_secret_store(smtp_server: Any, tmp_path: Any) -> None:
    server = smtp_server("starttls")
    store = FileSecretStore(tmp_path / "secrets.toml")
    settings = server.settings(auth__method="password", auth__profile=USER)
    with pytest.raises(ConfigError, match="config set-password"):
        build_transport(settings, store)
    store.set(PASSWORD_KEY, PASSWORD)
    transport = build_transport(settings, store)
    assert isinstance(transport, SmtpTransport)
    assert transport.config.login == PasswordLogin(USER, PASSWORD)
    assert PASSWORD not in repr(transport.config)
    typed = build_transport(settings, store, password="typed-in-the-form")
    assert isinstance(typed, SmtpTransport) and typed.config.login == PasswordLogin(USER, "typed-in-the-form")


def test_factory_refuses_what_cannot_work_here(tmp_path: Any) -> None:
    store = FileSecretStore(tmp_path / "secrets.toml")
    with pytest.raises(ConfigError, match=r"smtp\.host"):
        build_transport(Settings(), store)
    with pytest.raises(TransportUnavailable, match="works on Windows only"):
        build_transport(Settings(connection="windows"), store)
    oauth = check({"smtp": {"host": "127.0.0.1"}, "auth": {"method": "oauth", "profile": USER}})
    with pytest.raises(TransportUnavailable, match="OAuth"):
        build_transport(oauth, store)
