"""The settings' choices and how a value is typed, as plain Python: what a form needs to show the settings
before the settings model is imported. :mod:`opos_tui.services.settings` checks values against these."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, get_args

Connection = Literal["windows", "outlook", "smtp", "sendmail"]
AuthMethod = Literal["none", "password", "oauth", "oauth-dialog"]
OAuthProvider = Literal["microsoft", "google"]


class SecurityMode(StrEnum):
    """Exactly MailKit's ``SecureSocketOptions`` names, with MailKit's meaning."""

    NONE = "None"
    AUTO = "Auto"
    SSL_ON_CONNECT = "SslOnConnect"
    START_TLS = "StartTls"
    START_TLS_WHEN_AVAILABLE = "StartTlsWhenAvailable"


AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
OAUTH_METHODS: tuple[AuthMethod, ...] = ("oauth", "oauth-dialog")
"""The login methods that sign in with OAuth 2.0."""
# "Anmelden" exists for Outlook and SMTP only; OAuth only for SMTP (the original dialog's rules).
AUTH_METHODS_FOR: dict[Connection, tuple[AuthMethod, ...]] = {
    "windows": ("none",),
    "outlook": ("none", "password"),
    "smtp": AUTH_METHODS,
    "sendmail": ("none",),
}


def format_value(value: Any) -> str:
    """A value as it is typed on the command line (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
