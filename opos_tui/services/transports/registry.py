"""The one place that knows the connection types: what each is called, and which transport it uses.

Each type has its label (the settings form and the messages use it) and a loader that imports its transport's
module only when the type is chosen: SMTP's aiosmtplib, and later the Windows-only MAPI (ctypes) and Outlook
(COM) modules, are never imported where they are not used. The queue and the connection test ask here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from opos_tui.services.errors import TransportUnavailable
from opos_tui.services.secrets import SecretStore
from opos_tui.services.transports.base import Observer, TokenProvider, Transport
from opos_tui.settings import Connection, Settings


class Builder(Protocol):
    """Makes a transport, not yet connected, from the settings: what a transport module offers the registry.

    ``password`` overrides the stored Passwort (the settings form tests what is typed before it is saved);
    ``token_provider`` supplies OAuth 2.0 access tokens; ``observer`` receives the handshake step by step.
    Raises ConfigError when a needed setting is missing.
    """

    def __call__(
        self,
        settings: Settings,
        store: SecretStore,
        *,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        observer: Observer | None = None,
    ) -> Transport: ...


@dataclass(frozen=True)
class ConnectionType:
    label: str
    """What a person sees it called."""
    load: Callable[[], Builder] | None
    """Imports the transport's module and returns its builder; None while this version has no such transport."""
    windows_only: bool = False


def _smtp() -> Builder:
    from opos_tui.services.transports.smtp import transport

    return transport.build


CONNECTIONS: dict[Connection, ConnectionType] = {
    "windows": ConnectionType("Windows-Standard (Simple MAPI)", None, windows_only=True),
    "outlook": ConnectionType("Outlook (Extended MAPI)", None, windows_only=True),
    "smtp": ConnectionType("SMTP", _smtp),
}


def connection_labels() -> dict[str, str]:
    """Each connection type's label, in the order the settings form offers them."""
    return {name: kind.label for name, kind in CONNECTIONS.items()}


def build_transport(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> Transport:
    """A transport for ``settings.connection``, not yet connected (see :class:`Builder`).

    Raises ConfigError when a needed setting is missing, TransportUnavailable when the connection type
    cannot work here.
    """
    connection = settings.connection
    kind = CONNECTIONS[connection]
    if kind.windows_only and sys.platform != "win32":
        raise TransportUnavailable(
            f"Connection type {connection} ({kind.label}) needs Windows with a MAPI mail program such as "
            f"Outlook; this computer runs {sys.platform}. Set connection to smtp.",
            f"Die Verbindungsart {connection} ({kind.label}) braucht Windows mit einem MAPI-Mailprogramm "
            f"wie Outlook; dieser Rechner läuft unter {sys.platform}. Bitte connection auf smtp stellen.",
        )
    if kind.load is None:
        raise TransportUnavailable(
            f"Connection type {connection} ({kind.label}) is not available in this version yet; use smtp.",
            f"Die Verbindungsart {connection} ({kind.label}) ist in dieser Version noch nicht verfügbar; "
            "bitte smtp verwenden.",
        )
    build = kind.load()
    return build(settings, store, password=password, token_provider=token_provider, observer=observer)
