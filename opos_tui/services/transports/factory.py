"""The one place that turns the settings into a transport; the queue and the connection test ask here."""

from __future__ import annotations

from collections.abc import Callable

from opos_tui.services.secrets import SecretStore
from opos_tui.services.transports.base import Transport
from opos_tui.services.transports.smtp import Observer, SmtpTransport, TokenProvider, smtp_config
from opos_tui.settings import Settings


# --- the connection types that hand mails to a local mail program; each module is imported only when chosen,
# so Windows-only code never loads with the command line.
def _mapi(settings: Settings, store: SecretStore) -> Transport:
    from opos_tui.services.transports.mapi import MapiTransport

    return MapiTransport.from_settings(settings)


def _outlook(settings: Settings, store: SecretStore) -> Transport:
    from opos_tui.services.transports.outlook import OutlookTransport

    return OutlookTransport.from_settings(settings, store)


def _sendmail(settings: Settings, store: SecretStore) -> Transport:
    from opos_tui.services.transports.sendmail import SendmailTransport

    return SendmailTransport.from_settings(settings)


LOCAL_PROGRAMS: dict[str, Callable[[Settings, SecretStore], Transport]] = {
    "windows": _mapi,
    "outlook": _outlook,
    "sendmail": _sendmail,
}


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
    if settings.connection in LOCAL_PROGRAMS:
        return LOCAL_PROGRAMS[settings.connection](settings, store)
    config = smtp_config(settings, store, password=password, token_provider=token_provider)
    return SmtpTransport(config, observer=observer)
