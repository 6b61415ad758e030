"""The one place that knows the connection types: what each is called, and which transport it uses.

Each type has its label (the settings form and the messages use it) and a loader that imports its transport's
module only when the type is chosen: SMTP's aiosmtplib, the Windows-only MAPI (ctypes) and Outlook (COM)
modules and the Unix sendmail module are never imported where they are not used. The queue and the connection
test ask here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from opos_tui.services.errors import TransportUnavailable
from opos_tui.services.setting_choices import Connection
from opos_tui.services.transports.kinds import LABELS, windows_only

if TYPE_CHECKING:  # the settings form offers the types without the transports' interface (the mail package)
    from opos_tui.services.secrets import SecretStore
    from opos_tui.services.settings import Settings
    from opos_tui.services.transports.base import Observer, TokenProvider, Transport


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
    """One connection type (Verbindungsart) of the original dialog, and where its transport is."""

    label: str
    """What a person sees it called."""
    load: Callable[[], Builder]
    """Imports the transport's module and returns its builder."""
    windows_only: bool = False
    unix_only: bool = False
    """Offered only off Windows (the local sendmail of a Unix server)."""
    may_ask: bool = False
    """The mail program may stop each mail with a security prompt on its own screen (Simple MAPI, Outlook):
    a face says so while sending, or the operator waits without knowing why."""


def _smtp() -> Builder:
    from opos_tui.services.transports.smtp import transport

    return transport.build


def _mapi() -> Builder:
    from opos_tui.services.transports import mapi

    return mapi.build


def _outlook() -> Builder:
    from opos_tui.services.transports import outlook

    return outlook.build


def _sendmail() -> Builder:
    from opos_tui.services.transports import sendmail

    return sendmail.build


CONNECTIONS: dict[Connection, ConnectionType] = {
    "windows": ConnectionType(LABELS["windows"], _mapi, windows_only=True, may_ask=True),
    "outlook": ConnectionType(LABELS["outlook"], _outlook, windows_only=True, may_ask=True),
    "smtp": ConnectionType(LABELS["smtp"], _smtp),
    "sendmail": ConnectionType(LABELS["sendmail"], _sendmail, unix_only=True),
}


def connection_labels() -> dict[str, str]:
    """Each connection type's label, in the order the settings form offers them."""
    return {name: kind.label for name, kind in CONNECTIONS.items()}


def offered_here() -> dict[str, str]:
    """The labels of the types the settings form offers on this computer: all of the original dialog's (the
    Windows ones say off Windows that they work on Windows only), and sendmail on Unix."""
    on_windows = sys.platform == "win32"
    return {name: kind.label for name, kind in CONNECTIONS.items() if not (kind.unix_only and on_windows)}


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
        raise windows_only(connection)
    if kind.unix_only and sys.platform == "win32":
        raise TransportUnavailable(
            f"Connection type {connection} ({kind.label}) works on Unix only; on Windows use windows, outlook or smtp.",
            f"Die Verbindungsart {connection} ({kind.label}) funktioniert nur unter Unix; unter Windows bitte "
            "windows, outlook oder smtp verwenden.",
        )
    build = kind.load()
    return build(settings, store, password=password, token_provider=token_provider, observer=observer)
