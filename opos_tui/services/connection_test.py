"""The connection test: the real handshake with the configured server, reported stage by stage.

It runs the transport's own code (its ``connect`` and ``send``), so what it shows is what sending will do.
It knows a transport only by its interface: the events it reports and its ``state`` (the stage it failed at,
whether it was encrypted). Each stage arrives at ``on_event`` as it happens; the command line prints one line
per event, the settings screen fills a transcript panel. Nothing secret appears: AUTH payloads are shown as
``***``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, localtime
from typing import TYPE_CHECKING

from opos_tui.i18n import tr
from opos_tui.services.addresses import AddressError, check_addr_spec, header_address, new_message_id
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.home import Home
from opos_tui.services.secrets import SecretStore
from opos_tui.services.transports.base import (
    CertificateInfo,
    Envelope,
    HandshakeEvent,
    Stage,
    TokenProvider,
    Transport,
)
from opos_tui.services.transports.registry import build_transport

if TYPE_CHECKING:
    from opos_tui.services.settings import Settings

__all__ = ["ConnectionTestResult", "HandshakeEvent", "Stage", "check_test_address", "run_connection_test"]


@dataclass(frozen=True)
class ConnectionTestResult:
    ok: bool
    stage: Stage
    """``done`` on success, else the stage that failed."""
    tls: bool
    """Whether the connection was encrypted when the test ended."""
    error: str | None
    transcript: list[HandshakeEvent] = field(default_factory=list)
    certificate: CertificateInfo | None = None
    """The server's certificate, when the connection was encrypted."""

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "stage": self.stage,
            "tls": self.tls,
            "error": self.error,
            "transcript": [event.to_json() for event in self.transcript],
        }


def check_test_address(address: str) -> str:
    """The bare address for ``--send-test-to``, or ConfigError (bad input)."""
    try:
        return check_addr_spec(address)
    except AddressError as exc:
        raise ConfigError(f"--send-test-to: {exc.en}", f"--send-test-to: {exc.de}") from None


def connection_test_mail(settings: Settings, recipient: str) -> bytes:
    """A small plain-text mail that says what it is, in both languages."""
    message = EmailMessage()
    address = settings.sender.address
    message["From"] = header_address(settings.sender.name, address)
    message["To"] = header_address("", recipient)
    message["Subject"] = "opos-tui: Verbindungstest / connection test"
    message["Date"] = format_datetime(localtime())
    message["Message-ID"] = new_message_id(address)
    message.set_content(
        f"Diese Mail wurde von opos-tui als Verbindungstest gesendet. Der Versand ({settings.connection}) "
        "funktioniert.\n\n"
        f"This mail was sent by opos-tui as a connection test. Sending ({settings.connection}) works.\n\n"
        f"{_route(settings)}, {socket.gethostname()}\n"
    )
    return message.as_bytes(policy=SMTP)


def _route(settings: Settings) -> str:
    """Which way the test mail went, for its text."""
    if settings.connection == "smtp":
        return f"{settings.smtp.host}:{settings.smtp.port} ({settings.smtp.security})"
    if settings.connection == "sendmail":
        return f"sendmail {settings.sendmail.path}"
    return settings.connection


async def run_connection_test(
    settings: Settings,
    store: SecretStore,
    *,
    send_test_to: str | None = None,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    home: Home | None = None,
    on_event: Callable[[HandshakeEvent], None] | None = None,
) -> ConnectionTestResult:
    """Run the handshake (and with ``send_test_to`` a test mail) and report each stage to ``on_event``.

    Raises ConfigError before connecting when the settings cannot be tested (no host, no password, bad
    address); every failure after that is part of the result, not raised. With ``home`` and an OAuth
    ``auth.method``, the installation's sign-in supplies the tokens (a missing sign-in is a failed result).
    """
    transcript: list[HandshakeEvent] = []

    def record(event: HandshakeEvent) -> None:
        transcript.append(event)
        if on_event is not None:
            on_event(event)

    if send_test_to is not None:
        send_test_to = check_test_address(send_test_to)
        if not settings.sender.address:
            raise ConfigError(
                "sender.address is not set: the test mail needs a From address",
                "sender.address ist nicht gesetzt: die Testmail braucht eine Absenderadresse",
            )

    def make_transport() -> tuple[Settings, Transport]:
        """Reads the secret store and the token cache (a keyring may keep it waiting): run off the event loop."""
        chosen, tokens = settings, token_provider
        if tokens is None and home is not None and settings.uses_oauth():
            from opos_tui.services import signin  # requests and msal only where OAuth is used

            proxy = signin.proxy_in_use(settings)
            record(
                HandshakeEvent(
                    Stage.CONNECT,
                    "ok",
                    tr(
                        f"OAuth sign-in ({settings.oauth.provider}), proxy: {proxy}",
                        f"OAuth-Anmeldung ({settings.oauth.provider}), Proxy: {proxy}",
                    ),
                )
            )
            chosen, tokens = signin.for_transport(settings, home)
        return chosen, build_transport(chosen, store, password=password, token_provider=tokens, observer=record)

    try:
        settings, transport = await asyncio.to_thread(make_transport)
    except ConfigError:
        raise
    except OposError as exc:
        record(HandshakeEvent(Stage.CONNECT, "failed", exc.message()))
        return ConnectionTestResult(False, Stage.CONNECT, False, exc.message(), transcript)
    try:
        await transport.connect()
        if send_test_to is not None:
            envelope = Envelope(settings.sender.address, (send_test_to,))
            await transport.send(connection_test_mail(settings, send_test_to), envelope)
        encrypted = transport.state.encrypted
        how = tr("encrypted", "verschlüsselt") if encrypted else tr("NOT encrypted", "NICHT verschlüsselt")
        record(
            HandshakeEvent(
                Stage.DONE,
                "ok" if encrypted else "warning",
                tr(f"The connection works ({how}).", f"Die Verbindung funktioniert ({how})."),
            )
        )
        return ConnectionTestResult(True, Stage.DONE, encrypted, None, transcript, transport.state.certificate)
    except OposError as exc:
        state = transport.state
        record(HandshakeEvent(state.stage, "failed", exc.message(), state.failed_exchange))
        return ConnectionTestResult(False, state.stage, state.encrypted, exc.message(), transcript)
    finally:
        await transport.close()
