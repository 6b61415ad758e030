"""The one place that turns the settings into a transport; the queue and the connection test ask here."""

from __future__ import annotations

import sys

from opos_tui.services.errors import TransportUnavailable
from opos_tui.services.secrets import SecretStore
from opos_tui.services.transports.base import Transport
from opos_tui.services.transports.smtp import Observer, SmtpTransport, TokenProvider, smtp_config
from opos_tui.settings import Settings

_MAPI_NAMES = {"windows": "Windows-Standard (Simple MAPI)", "outlook": "Outlook (Extended MAPI)"}


def build_transport(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> Transport:
    """A transport for ``settings.connection``, not yet connected.

    ``password`` overrides the stored Passwort (the settings form tests what is typed before it is saved);
    ``token_provider`` supplies OAuth 2.0 access tokens; ``observer`` receives the handshake step by step.
    Raises ConfigError when a needed setting is missing, TransportUnavailable when the connection type
    cannot work here.
    """
    if settings.connection != "smtp":
        name = _MAPI_NAMES[settings.connection]
        if sys.platform != "win32":
            raise TransportUnavailable(
                f"Connection type {settings.connection} ({name}) needs Windows with a MAPI mail program such as "
                f"Outlook; this computer runs {sys.platform}. Set connection to smtp.",
                f"Die Verbindungsart {settings.connection} ({name}) braucht Windows mit einem MAPI-Mailprogramm "
                f"wie Outlook; dieser Rechner läuft unter {sys.platform}. Bitte connection auf smtp stellen.",
            )
        raise TransportUnavailable(
            f"Connection type {settings.connection} ({name}) is not available in this version yet; use smtp.",
            f"Die Verbindungsart {settings.connection} ({name}) ist in dieser Version noch nicht verfügbar; "
            "bitte smtp verwenden.",
        )
    config = smtp_config(settings, store, password=password, token_provider=token_provider)
    return SmtpTransport(config, observer=observer)
