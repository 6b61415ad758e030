"""What each connection type is called, and what a Windows-only type chosen elsewhere says.

Below the registry and the transports alike: a transport says it (MAPI loaded off Windows) without importing
the registry that imports the transport.
"""

from __future__ import annotations

import sys

from opos_tui.services.errors import TransportUnavailable
from opos_tui.services.setting_choices import Connection

LABELS: dict[Connection, str] = {
    "windows": "Windows-Standard (Simple MAPI)",
    "outlook": "Outlook (Extended MAPI)",
    "smtp": "SMTP",
    "sendmail": "sendmail (Unix)",
}
"""What a person sees each type called, in the order the settings form offers them."""

PROMPT_EN = (
    'Outlook asks "A program is trying to send an e-mail message on your behalf" when Windows reports no '
    "current antivirus program; an administrator can change this in Outlook under File > Options > Trust "
    "Center > Trust Center Settings > Programmatic Access, or bring the antivirus program up to date."
)
PROMPT_DE = (
    'Outlook fragt "Ein Programm versucht, in Ihrem Namen eine E-Mail-Nachricht zu senden", wenn Windows '
    "keinen aktuellen Virenschutz meldet; ein Administrator kann das in Outlook unter Datei > Optionen > Trust "
    "Center > Einstellungen für das Trust Center > Programmgesteuerter Zugriff ändern, oder den Virenschutz "
    "aktualisieren."
)
"""Outlook's security prompt: when it comes, and how an administrator turns it off (the settings form says it
under the connection type; the Outlook transport when access was denied in it)."""


def windows_only(connection: Connection) -> TransportUnavailable:
    """The plain message for a Windows connection type chosen on another system."""
    label = LABELS[connection]
    return TransportUnavailable(
        f"Connection type {connection} ({label}) works on Windows only: it hands the mails to a Windows mail "
        f"program such as Outlook, and this computer runs {sys.platform}. Set connection to smtp (or sendmail, "
        "the local mail program of a Unix server).",
        f"Die Verbindungsart {connection} ({label}) funktioniert nur unter Windows: sie übergibt die Mails an "
        f"ein Windows-Mailprogramm wie Outlook, und dieser Rechner läuft unter {sys.platform}. Bitte connection "
        "auf smtp stellen (oder sendmail, das lokale Mailprogramm eines Unix-Servers).",
    )
