"""What can go wrong while signing in, worded for the admin who has to change something."""

from __future__ import annotations

from opos_tui.services.errors import ConfigError, ConfigurationFault, InteractionNeeded

LOGIN = "opos-tui oauth login"


class SignInRequired(InteractionNeeded):
    """No usable token: a person must sign in (the run stops, every item stays pending)."""

    def __init__(self, why_en: str = "", why_de: str = "") -> None:
        super().__init__(
            f"sign-in required: run `{LOGIN}`" + (f" ({why_en})" if why_en else ""),
            f"Anmeldung nötig: `{LOGIN}` ausführen" + (f" ({why_de})" if why_de else ""),
        )


class SignInExpired(SignInRequired):
    """The refresh token was refused (invalid_grant): revoked, expired, or the password changed."""

    def __init__(self, provider: str) -> None:
        google_en = (
            "; a Google app in 'Testing' status gets refresh tokens that expire after 7 days: publish it "
            "('In production') on the OAuth consent screen"
            if provider == "google"
            else ""
        )
        google_de = (
            "; eine Google-App im Status 'Testing' bekommt Refresh-Tokens, die nach 7 Tagen ablaufen: auf dem "
            "OAuth-Zustimmungsbildschirm veröffentlichen ('In production')"
            if provider == "google"
            else ""
        )
        super().__init__(
            "the sign-in was revoked or has expired (invalid_grant: signed out by an admin, password changed, "
            f"or unused too long){google_en}",
            "die Anmeldung wurde widerrufen oder ist abgelaufen (invalid_grant: von einem Admin abgemeldet, "
            f"Passwort geändert oder zu lange unbenutzt){google_de}",
        )


class SignInRefused(ConfigurationFault):
    """The authority refused the sign-in or the app registration (exit 1); the text says what to change."""


class SignInUnreachable(ConfigurationFault):
    """The sign-in address cannot be reached (no network, proxy, TLS trust)."""


class NotConfigured(ConfigError):
    """oauth.client_id is empty: no app registration to sign in with (exit 2)."""

    def __init__(self, provider: str) -> None:
        if provider == "google":
            what_en = (
                "a Google Cloud OAuth client of type 'Desktop app' with the Gmail scope https://mail.google.com/; "
                "set its client ID with `opos-tui config set oauth.client_id ID` and its secret with "
                "`opos-tui config set-secret oauth.client_secret --stdin`"
            )
            what_de = (
                "einen Google-Cloud-OAuth-Client vom Typ 'Desktop-App' mit dem Gmail-Bereich "
                "https://mail.google.com/; seine Client-ID mit `opos-tui config set oauth.client_id ID` und sein "
                "Secret mit `opos-tui config set-secret oauth.client_secret --stdin` eintragen"
            )
        else:
            what_en = (
                "an app in Microsoft Entra (App registrations) with 'Allow public client flows' on and the delegated "
                "permission SMTP.Send (Office 365 Exchange Online); set its Application (client) ID with "
                "`opos-tui config set oauth.client_id ID`"
            )
            what_de = (
                "eine App in Microsoft Entra (App-Registrierungen) mit 'Öffentliche Clientflows zulassen' = Ja und "
                "der delegierten Berechtigung SMTP.Send (Office 365 Exchange Online); ihre Anwendungs-(Client-)ID "
                "mit `opos-tui config set oauth.client_id ID` eintragen"
            )
        super().__init__(
            f"oauth.client_id is empty: register {what_en} (README: OAuth 2.0 set-up)",
            f"oauth.client_id ist leer: registrieren Sie {what_de} (README: Einrichtung OAuth 2.0)",
        )
