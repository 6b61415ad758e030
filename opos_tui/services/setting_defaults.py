"""Every setting's default as plain data, generated from the settings model (services/settings.py):
do not edit. After changing a default there, write it anew with
``python -c 'from opos_tui.services import settings; settings.write_defaults()'`` and ``ruff format``
it; a test fails until then."""

from typing import Any

DEFAULTS: dict[str, Any] = {
    "connection": "smtp",
    "auth": {"method": "none", "profile": ""},
    "oauth": {
        "provider": "microsoft",
        "client_id": "",
        "tenant_id": "",
        "authority_url": "https://login.microsoftonline.com",
        "google_auth_url": "https://accounts.google.com/o/oauth2/auth",
        "google_token_url": "https://oauth2.googleapis.com/token",
        "ca_file": "",
        "proxy": "",
    },
    "smtp": {
        "host": "",
        "port": 587,
        "security": "StartTls",
        "timeout": 30,
        "ca_file": "",
        "allow_plain_auth": False,
        "max_message_mb": 25,
        "connections": 1,
        "max_per_minute": 0,
    },
    "sendmail": {"path": "/usr/sbin/sendmail"},
    "sender": {"address": "", "name": "", "reply_to": "", "bcc": ""},
    "retry": {"backoff_minutes": 5, "max_backoff_minutes": 60, "give_up_days": 5},
    "queue": {"url": ""},
    "letters": {
        "language": "de",
        "subject": "",
        "body": "",
        "signature": "",
        "attachment_name": "${filename}",
        "max_recipients": 10,
    },
    "payment_advice": {"subject": "", "body": ""},
    "dunning_1": {"subject": "", "body": ""},
    "dunning_2": {"subject": "", "body": ""},
    "dunning_3": {"subject": "", "body": ""},
    "dunning_4": {"subject": "", "body": ""},
    "dunning_5": {"subject": "", "body": ""},
    "dunning_6": {"subject": "", "body": ""},
    "dunning_7": {"subject": "", "body": ""},
    "dunning_8": {"subject": "", "body": ""},
    "dunning_9": {"subject": "", "body": ""},
}
