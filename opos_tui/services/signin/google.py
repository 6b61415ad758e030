"""Google sign-in with google-auth-oauthlib: a desktop client, the Gmail scope, PKCE, a loopback redirect.

Google's device flow does not allow the Gmail scope, so the person opens the authorization address. On the
same machine the browser ends on ``http://localhost:PORT/`` and the loopback listener (127.0.0.1 at that port)
takes the code; over SSH that page does not load, and the person pastes the address the browser ended on.
Both are offered at once; whichever arrives first is used. A pasted address whose ``state`` is not the one
sent is refused and its code never redeemed.

The Gmail scope does not name the account: the XOAUTH2 user is ``auth.profile``, required here. Tokens are
kept in the shared cache (``cache.TokenCacheFile``) under its lock, with ``access_type=offline`` for a
refresh token; an expired access token is refreshed silently.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from opos_tui.i18n import tr
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.settings import OAuthSettings
from opos_tui.services.signin.cache import TokenCacheFile
from opos_tui.services.signin.errors import (
    Cancelled,
    NotConfigured,
    SignInExpired,
    SignInRefused,
    SignInUnreachable,
)
from opos_tui.services.signin.http import SignInSession, confine
from opos_tui.services.signin.microsoft import Token

SCOPES = ["https://mail.google.com/"]
CACHE_KEY = "google"
EARLY = 300
"""Seconds before its expiry from which an access token counts as stale (refreshed first)."""
PAGE = (
    b"<html><body><p>opos-tui: the sign-in reached the program; you can close this window.</p>"
    b"<p>opos-tui: die Anmeldung ist beim Programm angekommen; dieses Fenster kann geschlossen werden.</p>"
    b"</body></html>"
)


class _Loopback(ThreadingHTTPServer):
    daemon_threads = True
    arrived: queue.Queue[str]


class _LoopbackHandler(BaseHTTPRequestHandler):
    server: _Loopback

    def log_message(self, format: str, *args: Any) -> None:  # never log: the address holds the code
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        if "code" not in query and "error" not in query:
            self.send_response(404)
            self.end_headers()
            return
        self.server.arrived.put(f"http://localhost:{self.server.server_address[1]}{self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


@dataclass
class Authorization:
    """One sign-in under way: the address to open, and the addresses that came back (loopback or pasted)."""

    url: str
    redirect_uri: str
    state: str
    flow: Any = field(repr=False)
    server: _Loopback = field(repr=False)
    arrived: queue.Queue[str] = field(default_factory=queue.Queue, repr=False)

    def paste(self, address: str) -> None:
        """The address the person's browser ended on, pasted (over SSH the page itself does not load)."""
        if address.strip():
            self.arrived.put(address.strip())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GoogleSignIn:
    provider = "google"

    def __init__(self, oauth: OAuthSettings, profile: str, client_secret: str | None, cache: TokenCacheFile) -> None:
        if not oauth.client_id or not client_secret:
            raise NotConfigured("google")
        if not profile:
            raise ConfigError(
                "auth.profile is empty: for Google it must be the Gmail or Workspace address to send as (the Gmail "
                "scope does not name the account); set it with `opos-tui config set auth.profile ADDRESS` or in the "
                "settings form's Profile field",
                "auth.profile ist leer: für Google muss es die Gmail- oder Workspace-Adresse sein, mit der gesendet "
                "wird (der Gmail-Bereich nennt das Konto nicht); mit `opos-tui config set auth.profile ADRESSE` oder "
                "im Feld Profil des Einstellungsformulars setzen",
            )
        self.oauth = oauth
        self.profile = profile
        self.client_secret = client_secret
        self.cache = cache
        self.authority = oauth.google_token_url

    # --- the pieces ---------------------------------------------------------------------------------

    def _client_config(self, redirect_uri: str) -> dict[str, Any]:
        return {
            "installed": {
                "client_id": self.oauth.client_id,
                "client_secret": self.client_secret,
                "auth_uri": self.oauth.google_auth_url,
                "token_uri": self.oauth.google_token_url,
                "redirect_uris": [redirect_uri],
            }
        }

    def _unreachable(self, exc: Exception) -> OposError:
        proxy = self.oauth.proxy or tr(
            "the environment's HTTPS_PROXY, if any", "HTTPS_PROXY der Umgebung, falls gesetzt"
        )
        return SignInUnreachable(
            f"cannot reach the Google sign-in at {self.authority}: {type(exc).__name__} (check the network, the "
            f"proxy ({proxy}; oauth.proxy) and, behind a TLS-inspecting proxy, oauth.ca_file)",
            f"Google-Anmeldung unter {self.authority} nicht erreichbar: {type(exc).__name__} (Netzwerk, Proxy "
            f"({proxy}; oauth.proxy) und hinter einem TLS-prüfenden Proxy oauth.ca_file prüfen)",
            str(exc),
        )

    @staticmethod
    def _refused(error: str, text: str) -> OposError:
        if error == "invalid_grant":
            return SignInExpired("google")
        if error == "access_denied":
            return SignInRefused(
                "the sign-in was declined at Google's page (access_denied): sign in again and allow access to Gmail",
                "die Anmeldung wurde auf Googles Seite abgelehnt (access_denied): erneut anmelden und den Zugriff "
                "auf Gmail erlauben",
                text,
            )
        if error in ("invalid_client", "unauthorized_client"):
            return SignInRefused(
                f"Google does not know this client ({error}): check oauth.client_id and the client secret "
                "(`opos-tui config set-secret oauth.client_secret --stdin`) of the 'Desktop app' client",
                f"Google kennt diesen Client nicht ({error}): oauth.client_id und das Client-Secret "
                "(`opos-tui config set-secret oauth.client_secret --stdin`) des 'Desktop-App'-Clients prüfen",
                text,
            )
        return SignInRefused(
            f"the Google sign-in failed: {text or error}", f"die Google-Anmeldung schlug fehl: {text or error}", text
        )

    def _save(self, data: dict[str, Any], answer: dict[str, Any], refresh_token: str) -> Token:
        expires_at = time.time() + int(answer.get("expires_in") or 3600)
        data[CACHE_KEY] = {
            "account": self.profile,
            "access_token": str(answer["access_token"]),
            "refresh_token": str(answer.get("refresh_token") or refresh_token),
            "expires_at": expires_at,
        }
        return Token(str(answer["access_token"]), self.profile, expires_at)

    # --- what callers use ---------------------------------------------------------------------------

    def account(self) -> str:
        with self.cache.locked() as data:
            entry = data.get(CACHE_KEY) or {}
        return str(entry.get("account", ""))

    def expires_at(self) -> float | None:
        with self.cache.locked() as data:
            entry = data.get(CACHE_KEY) or {}
        return float(entry["expires_at"]) if "expires_at" in entry else None

    def silent(self) -> Token | None:
        """The cached token, refreshed if it is (nearly) expired; None when nobody is signed in. Raises
        SignInExpired when Google refuses the refresh token."""
        with self.cache.locked() as data:
            entry = data.get(CACHE_KEY)
            if not entry or not entry.get("refresh_token"):
                return None
            if float(entry.get("expires_at", 0)) - EARLY > time.time():
                return Token(str(entry["access_token"]), str(entry["account"]), float(entry["expires_at"]))
            form = {
                "grant_type": "refresh_token",
                "refresh_token": entry["refresh_token"],
                "client_id": self.oauth.client_id,
                "client_secret": self.client_secret,
            }
            try:
                reply = SignInSession(self.oauth).post(self.oauth.google_token_url, data=form)
            except requests.RequestException as exc:
                raise self._unreachable(exc) from None
            answer = _json(reply)
            if "access_token" not in answer:
                raise self._refused(str(answer.get("error", "")), str(answer.get("error_description", "")))
            return self._save(data, answer, str(entry["refresh_token"]))

    def begin(self) -> Authorization:
        """Start a sign-in: the loopback listener on 127.0.0.1 and the authorization address (PKCE, offline)."""
        from google_auth_oauthlib.flow import Flow
        from google_auth_oauthlib.helpers import session_from_client_config

        server = _Loopback(("127.0.0.1", 0), _LoopbackHandler)
        server.arrived = queue.Queue()
        threading.Thread(target=server.serve_forever, name="google-loopback", daemon=True).start()
        redirect_uri = f"http://localhost:{server.server_address[1]}/"
        session, config = session_from_client_config(self._client_config(redirect_uri), SCOPES)
        confine(session, self.oauth, self.oauth.google_token_url)
        flow = Flow(session, "installed", config, redirect_uri=redirect_uri, autogenerate_code_verifier=True)
        url, state = flow.authorization_url(access_type="offline", prompt="consent")
        return Authorization(url, redirect_uri, state, flow, server, server.arrived)

    def complete(self, authorization: Authorization, address: str) -> Token:
        """Redeem the code of the address the browser ended on, after checking its ``state``."""
        query = {k: v[0] for k, v in parse_qs(urlparse(address).query).items()}
        if query.get("state") != authorization.state:
            raise SignInRefused(
                "the pasted address does not belong to this sign-in (its state differs): paste the address the "
                "browser shows after this sign-in; its code was not used",
                "die eingefügte Adresse gehört nicht zu dieser Anmeldung (state weicht ab): die Adresse einfügen, "
                "die der Browser nach dieser Anmeldung zeigt; ihr Code wurde nicht verwendet",
            )
        if "code" not in query:
            raise self._refused(query.get("error", ""), query.get("error_description", ""))
        from oauthlib.oauth2 import OAuth2Error

        try:
            answer = authorization.flow.fetch_token(code=query["code"], include_client_id=True)
        except OAuth2Error as exc:
            raise self._refused(exc.error, exc.description or "") from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        with self.cache.locked(replace_unreadable=True) as data:
            return self._save(data, dict(answer), "")

    def wait(self, authorization: Authorization, cancelled: threading.Event | None = None) -> Token:
        """Until an address comes back (loopback or pasted) and its code is redeemed; Cancelled if asked."""
        stop = cancelled or threading.Event()
        try:
            while True:
                try:
                    address = authorization.arrived.get(timeout=0.2)
                except queue.Empty:
                    if stop.is_set():
                        raise Cancelled from None
                    continue
                return self.complete(authorization, address)
        finally:
            authorization.close()

    def sign_out(self) -> bool:
        return self.cache.forget(CACHE_KEY)


def _json(reply: requests.Response) -> dict[str, Any]:
    try:
        answer = reply.json()
    except ValueError:
        return {"error": f"HTTP {reply.status_code}"}
    return answer if isinstance(answer, dict) else {"error": f"HTTP {reply.status_code}"}
