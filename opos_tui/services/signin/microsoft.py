"""Microsoft sign-in with msal's public client: device code, cached and silently refreshed tokens.

Authority ``<oauth.authority_url>/<oauth.tenant_id or organizations>``, scope SMTP.Send (msal adds
offline_access). The device code suits an admin over SSH: they open the address on any device and type the
code. Every step that reads or changes the token cache holds its lock (``cache.TokenCacheFile``), so a rotated
refresh token is saved before any other process may use the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from opos_tui.i18n import tr
from opos_tui.services.errors import OposError
from opos_tui.services.settings import OAuthSettings
from opos_tui.services.signin.cache import TokenCacheFile
from opos_tui.services.signin.errors import NotConfigured, SignInExpired, SignInRefused, SignInUnreachable
from opos_tui.services.signin.http import SignInSession

if TYPE_CHECKING:
    import msal

SCOPES = ["https://outlook.office.com/SMTP.Send"]
CACHE_KEY = "microsoft"
PENDING = ("authorization_pending", "slow_down")


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    account: str
    expires_at: float
    """Epoch seconds."""


@dataclass(frozen=True)
class DeviceCode:
    verification_uri: str
    user_code: str
    expires_at: float
    interval: int
    flow: dict[str, Any] = field(repr=False)


class MicrosoftSignIn:
    provider = "microsoft"

    def __init__(self, oauth: OAuthSettings, cache: TokenCacheFile) -> None:
        if not oauth.client_id:
            raise NotConfigured("microsoft")
        self.oauth = oauth
        self.cache = cache
        self.tenant = oauth.tenant_id or "organizations"
        self.authority = f"{oauth.authority_url}/{self.tenant}"
        self._application: msal.PublicClientApplication | None = None
        self._token_cache: msal.SerializableTokenCache | None = None

    # --- the pieces ---------------------------------------------------------------------------------

    def _app(self, state: str | None) -> tuple[msal.PublicClientApplication, msal.SerializableTokenCache]:
        """The msal application (made once: it discovers the authority's endpoints) holding the cache ``state``."""
        import msal

        if self._application is None:
            token_cache = msal.SerializableTokenCache()
            try:
                self._application = msal.PublicClientApplication(
                    self.oauth.client_id,
                    authority=self.authority,
                    token_cache=token_cache,
                    http_client=SignInSession(self.oauth),
                    instance_discovery=False,  # ask the configured authority itself, never a world-wide host
                )
            except ValueError as exc:  # msal wraps the authority's answer (AADSTS90002) in its own words
                chain = " ".join(str(e) for e in (exc.__cause__ or exc.__context__, exc) if e is not None)
                raise self._error({"error_description": chain}) from None
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
            self._token_cache = token_cache
        assert self._token_cache is not None
        self._token_cache.deserialize(state)
        return self._application, self._token_cache

    def _unreachable(self, exc: requests.RequestException) -> OposError:
        proxy = self.oauth.proxy or tr(
            "the environment's HTTPS_PROXY, if any", "HTTPS_PROXY der Umgebung, falls gesetzt"
        )
        return SignInUnreachable(
            f"cannot reach the Microsoft sign-in at {self.authority}: {type(exc).__name__} (check the network, "
            f"the proxy ({proxy}; oauth.proxy) and, behind a TLS-inspecting proxy, oauth.ca_file)",
            f"Microsoft-Anmeldung unter {self.authority} nicht erreichbar: {type(exc).__name__} (Netzwerk, Proxy "
            f"({proxy}; oauth.proxy) und hinter einem TLS-prüfenden Proxy oauth.ca_file prüfen)",
            str(exc),
        )

    def _error(self, result: dict[str, Any]) -> OposError:
        """An msal error answer as the admin's error, saying what to change."""
        error = str(result.get("error", ""))
        text = " ".join(str(result.get("error_description") or error).split())
        client, tenant = self.oauth.client_id, self.tenant
        if "AADSTS7000218" in text:
            return SignInRefused(
                f"the app registration {client} does not allow public client flows (AADSTS7000218): in Microsoft Entra "
                "→ App registrations → the app → Authentication → Advanced settings, set 'Allow public client flows' "
                "to Yes",
                f"die App-Registrierung {client} erlaubt keine öffentlichen Clientflows (AADSTS7000218): in Microsoft "
                "Entra → App-Registrierungen → die App → Authentifizierung → Erweiterte Einstellungen 'Öffentliche "
                "Clientflows zulassen' auf Ja stellen",
                text,
            )
        if "AADSTS700016" in text:
            return SignInRefused(
                f"no application with the client ID {client} in tenant {tenant} (AADSTS700016): check oauth.client_id "
                "(the Application (client) ID of the registration) and oauth.tenant_id",
                f"keine Anwendung mit der Client-ID {client} im Mandanten {tenant} (AADSTS700016): oauth.client_id "
                "(Anwendungs-(Client-)ID der Registrierung) und oauth.tenant_id prüfen",
                text,
            )
        if "AADSTS90002" in text:
            return SignInRefused(
                f"tenant '{tenant}' not found (AADSTS90002): check oauth.tenant_id (the Directory (tenant) ID, or "
                "empty for any organisation) and oauth.authority_url",
                f"Mandant '{tenant}' nicht gefunden (AADSTS90002): oauth.tenant_id (Verzeichnis-(Mandanten-)ID, oder "
                "leer für jede Organisation) und oauth.authority_url prüfen",
                text,
            )
        if "AADSTS65001" in text:
            return SignInRefused(
                "consent missing for SMTP.Send (AADSTS65001): an admin grants it in Microsoft Entra → App "
                "registrations → the app → API permissions → Grant admin consent (delegated SMTP.Send of Office 365 "
                "Exchange Online)",
                "Zustimmung für SMTP.Send fehlt (AADSTS65001): ein Admin erteilt sie in Microsoft Entra → "
                "App-Registrierungen → die App → API-Berechtigungen → Administratorzustimmung erteilen (delegiert "
                "SMTP.Send von Office 365 Exchange Online)",
                text,
            )
        if error == "invalid_grant":
            return SignInExpired("microsoft")
        if error in ("authorization_declined", "access_denied"):
            return SignInRefused(
                "the sign-in was declined at the sign-in page (access_denied): sign in again and accept",
                "die Anmeldung wurde auf der Anmeldeseite abgelehnt (access_denied): erneut anmelden und zustimmen",
                text,
            )
        if error in ("expired_token", "code_expired"):
            return SignInRefused(
                "the code expired before the sign-in was completed: run `opos-tui oauth login` again",
                "der Code ist abgelaufen, bevor die Anmeldung abgeschlossen war: `opos-tui oauth login` erneut",
                text,
            )
        return SignInRefused(
            f"the Microsoft sign-in failed: {text or error}",
            f"die Microsoft-Anmeldung schlug fehl: {text or error}",
            text,
        )

    @staticmethod
    def _token(result: dict[str, Any], account: str) -> Token:
        claims = result.get("id_token_claims") or {}
        return Token(
            str(result["access_token"]),
            str(claims.get("preferred_username") or account),
            time.time() + int(result.get("expires_in", 0)),
        )

    # --- what callers use ---------------------------------------------------------------------------

    def account(self) -> str:
        """The signed-in account's user name from the cache (no network); '' if nobody is signed in."""
        with self.cache.locked() as data:
            state = data.get(CACHE_KEY)
        if not state:
            return ""
        import msal

        token_cache = msal.SerializableTokenCache()
        token_cache.deserialize(state)
        accounts = list(token_cache.search(msal.TokenCache.CredentialType.ACCOUNT))
        return str(accounts[0].get("username", "")) if accounts else ""

    def expires_at(self) -> float | None:
        """When the cached access token expires (epoch seconds), None without one."""
        with self.cache.locked() as data:
            state = data.get(CACHE_KEY)
        if not state:
            return None
        import msal

        token_cache = msal.SerializableTokenCache()
        token_cache.deserialize(state)
        found = [int(t.get("expires_on", 0)) for t in token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)]
        return float(max(found)) if found else None

    def silent(self) -> Token | None:
        """A cached token, refreshed if it expired; None when nobody is signed in. Raises SignInExpired when the
        refresh token is refused."""
        with self.cache.locked() as data:
            if not data.get(CACHE_KEY):
                return None
            app, token_cache = self._app(data[CACHE_KEY])
            accounts = app.get_accounts()
            if not accounts:
                return None
            try:
                result = app.acquire_token_silent_with_error(SCOPES, accounts[0])
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
            if token_cache.has_state_changed:
                data[CACHE_KEY] = token_cache.serialize()
        if result is None:
            return None
        if "access_token" not in result:
            raise self._error(result)
        return self._token(result, str(accounts[0].get("username", "")))

    def start(self) -> DeviceCode:
        """Ask for a device code (the address and the code a person enters there)."""
        app, _ = self._app(None)
        try:
            flow = app.initiate_device_flow(scopes=SCOPES)
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if "user_code" not in flow:
            raise self._error(flow)
        return DeviceCode(
            str(flow["verification_uri"]),
            str(flow["user_code"]),
            float(flow.get("expires_at") or time.time() + int(flow.get("expires_in", 900))),
            max(int(flow.get("interval", 5)), 1),
            flow,
        )

    def poll(self, code: DeviceCode) -> Token | None:
        """Ask once whether the person has signed in: the token (saved in the cache), or None while pending."""
        with self.cache.locked(replace_unreadable=True) as data:
            app, token_cache = self._app(data.get(CACHE_KEY))
            try:
                result = app.acquire_token_by_device_flow(code.flow, exit_condition=lambda _flow: True)
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
            if "access_token" in result:
                data[CACHE_KEY] = token_cache.serialize()
        if "access_token" in result:
            return self._token(result, "")
        if result.get("error") in PENDING:
            return None
        raise self._error(result)

    def sign_out(self) -> bool:
        """Forget every signed-in account; True if there was one."""
        return self.cache.forget(CACHE_KEY)
