"""The settings form's labels, by key: the form shows them, and messages on screen name fields by them.

The command line names a setting by its key (``smtp.port``); on the form the user sees "Port", so a message
there says "Port" too. ``name_fields`` turns the keys in a service's message into the labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from opos_tui.i18n import tr
from opos_tui.services import secrets


def field_labels() -> dict[str, str]:
    return {
        "connection": tr("Connection type (Verbindungsart)", "Verbindungsart"),
        "sendmail.path": tr("sendmail program", "sendmail-Programm"),
        "auth.method": tr("Log in (Anmelden)", "Anmelden"),
        "auth.profile": tr(
            "Profile (Profil): user name or Outlook profile", "Profil: Benutzername oder Outlook-Profil"
        ),
        secrets.PASSWORD: tr("Password (Passwort)", "Passwort"),
        "smtp.host": tr("Server (host name)", "Server (Hostname)"),
        "smtp.port": "Port",
        "smtp.security": tr("Security (Sicherheit)", "Sicherheit"),
        "smtp.timeout": tr("Timeout (seconds)", "Zeitlimit (Sekunden)"),
        "smtp.ca_file": tr(
            "Extra CA file (PEM), empty = system store", "Zusätzliche CA-Datei (PEM), leer = Systemspeicher"
        ),
        "smtp.allow_plain_auth": tr(
            "Allow the password over an unencrypted connection",
            "Passwort auch über unverschlüsselte Verbindung senden",
        ),
        "smtp.max_message_mb": tr("Largest mail: attachments in MB", "Größte Mail: Anhänge in MB"),
        "smtp.connections": tr(
            "Parallel connections (Exchange Online: 3)", "Parallele Verbindungen (Exchange Online: 3)"
        ),
        "smtp.max_per_minute": tr(
            "Mails per minute, 0 = unlimited (Exchange Online: 30)",
            "Mails pro Minute, 0 = unbegrenzt (Exchange Online: 30)",
        ),
        "oauth.provider": tr("Authorization server (Authentifizierung)", "Authentifizierung"),
        "oauth.client_id": tr(
            "Application (client) ID; empty = vendor's app", "Anwendungs-ID (Client-ID); leer = Hersteller-App"
        ),
        "oauth.tenant_id": tr(
            "Directory (tenant) ID; empty = organizations", "Verzeichnis-ID (Mandanten-ID); leer = organizations"
        ),
        secrets.GOOGLE_CLIENT_SECRET: tr("Client secret (Google desktop app)", "Client-Geheimnis (Google-Desktop-App)"),
        "sender.address": tr("From address", "Absenderadresse"),
        "sender.name": tr("Display name", "Anzeigename"),
        "sender.reply_to": tr("Reply-To (empty = From)", "Antwort an (leer = Absender)"),
        "sender.bcc": tr("Archive copy (Bcc)", "Archivkopie (Bcc)"),
    }


def short(label: str) -> str:
    """A label without its explanation, to name the field in a sentence: "Profile (Profil)", not "…: user name"."""
    depth = 0
    for index, char in enumerate(label):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and label.startswith((": ", "; ", ", "), index):
            return label[:index]
    return label


def quoted(label: str) -> str:
    return tr(f"“{short(label)}”", f"„{short(label)}“")


def name_fields(text: str, labels: Mapping[str, str] | None = None) -> str:
    """``text`` with each settings key that is on the form named by the form's label instead: the E-Mail
    form's, or ``labels`` (key: label) of another form.

    Keys inside a command line (``opos-tui config set smtp.ca_file …``) stay: that command is typed as it is.
    """
    # Dotted keys only: "connection" is a word too.
    labels = {key: label for key, label in (field_labels() if labels is None else labels).items() if "." in key}
    if not labels:
        return text
    keys = "|".join(re.escape(key) for key in sorted(labels, key=len, reverse=True))
    pattern = rf"(?<![\w.-])(?<!config set )({keys})(?![\w-])"
    return re.sub(pattern, lambda match: quoted(labels[match.group(1)]), text)
