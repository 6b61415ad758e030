"""A local OAuth 2.0 authority over HTTPS on 127.0.0.1, and a CONNECT proxy, for the sign-in tests.

The ``oauth_authority`` fixture starts one (trustme certificate; its CA is ``authority.ca_file``, to be put in
``oauth.ca_file``) and stops it after the test. It answers what msal and a Google desktop client ask:

- Microsoft: ``/{tenant}/v2.0/.well-known/openid-configuration``, the device authorization endpoint
  ``/{tenant}/oauth2/v2.0/devicecode`` and the token endpoint ``/{tenant}/oauth2/v2.0/token`` (device code:
  ``authorization_pending`` until the test calls ``approve(user_code)``; refresh tokens rotate on every use:
  an old one gets ``invalid_grant``, as does every one after ``revoke()``). Tenant ``unknown-tenant`` gets
  AADSTS90002 at discovery, client ``unknown-client`` AADSTS700016 and client ``public-off`` AADSTS7000218;
  ``deny(user_code, "consent")`` answers AADSTS65001, ``deny(user_code)`` ``authorization_declined``.
- Google: ``/google/auth`` (the browser's page: it redirects at once to ``redirect_uri`` with a code and the
  ``state``, as if the person had agreed) and ``/google/token`` (code with PKCE, and refresh).

Access tokens are ~2.5 KB like real ones, live ``token_lifetime`` seconds (msal counts a token with less
than five minutes left as expired: set 60 to make every cached token stale) and are accepted by
``accepts(user, token)``, which the XOAUTH2 mail server of the ``oauth_smtp`` fixture uses.
``hold_refresh`` (a threading.Event, set = no hold) holds refresh answers; ``refresh_arrived`` counts them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import trustme

from tests.servers.smtp import HOST, Pki, SmtpServer, start_smtp_server

ACCOUNT = "opos@example.test"
CLIENT_ID = "0f6e3c5a-1b2c-4d5e-8f90-123456789abc"
GOOGLE_CLIENT_ID = "4711-opos.apps.googleusercontent.example"
GOOGLE_SECRET = "GOCSPX-not-a-real-secret"
SCOPE_SMTP = "https://outlook.office.com/SMTP.Send"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class Grant:
    user_code: str
    client_id: str
    approved: bool = False
    denied: str = ""


@dataclass
class Authority:
    url: str
    ca_file: Path
    account: str = ACCOUNT
    token_lifetime: int = 3600
    grants: dict[str, Grant] = field(default_factory=dict)
    """device_code -> its grant."""
    access_tokens: dict[str, str] = field(default_factory=dict)
    """Every access token issued and still valid -> its account."""
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    """Refresh tokens still valid -> account."""
    google_codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Authorization code -> (code_challenge, redirect_uri)."""
    requests: list[str] = field(default_factory=list)
    """``METHOD path`` of every request, in order."""
    device_codes_requested: int = 0
    refreshes: int = 0
    hold_refresh: threading.Event = field(default_factory=threading.Event)
    refresh_arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.hold_refresh.set()

    def approve(self, user_code: str) -> None:
        with self.lock:
            next(g for g in self.grants.values() if g.user_code == user_code).approved = True

    def deny(self, user_code: str, why: str = "declined") -> None:
        with self.lock:
            next(g for g in self.grants.values() if g.user_code == user_code).denied = why

    def revoke(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def accepts(self, user: str, token: str) -> bool:
        with self.lock:
            return self.access_tokens.get(token) == user

    # --- what the handler calls --------------------------------------------------------------------

    def issue(self, client_id: str, scope: str, account: str | None = None) -> dict[str, Any]:
        account = account or self.account
        access = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + secrets.token_urlsafe(1900)
        refresh = "0.AQ" + secrets.token_urlsafe(600)
        with self.lock:
            self.access_tokens[access] = account
            self.refresh_tokens[refresh] = account
        tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
        uid = hashlib.sha256(account.encode()).hexdigest()[:32]
        now = int(time.time())
        id_token = ".".join(
            (
                _b64({"typ": "JWT", "alg": "none"}),
                _b64(
                    {
                        "aud": client_id,
                        "iss": f"{self.url}/{tenant}/v2.0",
                        "iat": now,
                        "nbf": now,
                        "exp": now + 3600,
                        "oid": uid,
                        "sub": uid,
                        "tid": tenant,
                        "preferred_username": account,
                        "name": "Buchhaltung",
                    }
                ),
                "",
            )
        )
        return {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": _b64({"uid": uid, "utid": tenant}),
        }


def _error(code: str, aadsts: str, text: str) -> tuple[int, dict[str, Any]]:
    description = f"{aadsts}: {text}" if aadsts else text
    return 400, {"error": code, "error_description": description, "error_codes": [int(aadsts[6:])] if aadsts else []}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        authority = self.server.authority
        url = urlparse(self.path)
        authority.requests.append(f"GET {url.path}")
        parts = url.path.strip("/").split("/")
        if url.path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = parts[0]
            if tenant == "unknown-tenant":
                self._reply(
                    *_error("invalid_tenant", "AADSTS90002", f"Tenant '{tenant}' not found. Check to make sure ...")
                )
                return
            base = f"{authority.url}/{tenant}"
            self._reply(
                200,
                {
                    "issuer": f"{authority.url}/{tenant}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                },
            )
            return
        if url.path == "/google/auth":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            code = "4/0A" + secrets.token_urlsafe(40)
            with authority.lock:
                authority.google_codes[code] = (query.get("code_challenge", ""), query["redirect_uri"])
            target = f"{query['redirect_uri']}?{urlencode({'state': query['state'], 'code': code})}"
            self._reply(302, {}, {"Location": target})
            return
        self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        authority = self.server.authority
        url = urlparse(self.path)
        authority.requests.append(f"POST {url.path}")
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        client_id = form.get("client_id", "")
        if url.path.endswith("/oauth2/v2.0/devicecode"):
            if client_id == "unknown-client":
                self._reply(
                    *_error(
                        "unauthorized_client",
                        "AADSTS700016",
                        f"Application with identifier '{client_id}' was not found in the directory 'Contoso'.",
                    )
                )
                return
            device_code = secrets.token_urlsafe(24)
            user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
            with authority.lock:
                authority.grants[device_code] = Grant(user_code, client_id)
                authority.device_codes_requested += 1
            verification = f"{authority.url}/devicelogin"
            self._reply(
                200,
                {
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": verification,
                    "expires_in": 900,
                    "interval": 1,
                    "message": f"To sign in, use a web browser to open the page {verification} and enter the code "
                    f"{user_code} to authenticate.",
                },
            )
            return
        if url.path.endswith("/oauth2/v2.0/token"):
            self._reply(*self._microsoft_token(form, client_id))
            return
        if url.path == "/google/token":
            self._reply(*self._google_token(form))
            return
        self._reply(404, {"error": "not_found"})

    def _microsoft_token(self, form: dict[str, str], client_id: str) -> tuple[int, dict[str, Any]]:
        authority = self.server.authority
        grant_type = form.get("grant_type", "")
        if client_id == "public-off":
            return _error(
                "invalid_client",
                "AADSTS7000218",
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            with authority.lock:
                grant = authority.grants.get(form.get("device_code", ""))
            if grant is None:
                return _error(
                    "expired_token", "AADSTS70020", "The provided value for the input parameter 'device_code'"
                )
            if grant.denied == "consent":
                return _error(
                    "invalid_grant",
                    "AADSTS65001",
                    f"The user or administrator has not consented to use the application with ID '{client_id}'.",
                )
            if grant.denied:
                return _error("authorization_declined", "AADSTS70000", "The user denied the authorization request.")
            if not grant.approved:
                return _error(
                    "authorization_pending", "AADSTS70016", "OAuth 2.0 device flow error. Authorization is pending."
                )
            with authority.lock:
                del authority.grants[form["device_code"]]
            return 200, authority.issue(client_id, form.get("scope", ""))
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with authority.lock:
                account = authority.refresh_tokens.pop(token, None)  # rotates: this one is used up now
                authority.refreshes += 1
            authority.refresh_arrived.release()
            authority.hold_refresh.wait(30)
            if account is None:
                return _error(
                    "invalid_grant",
                    "AADSTS70008",
                    "The provided authorization code or refresh token has expired due to inactivity.",
                )
            return 200, authority.issue(client_id, form.get("scope", ""), account)
        return _error("unsupported_grant_type", "", f"grant_type {grant_type!r}")

    def _google_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        authority = self.server.authority
        if form.get("client_id") != GOOGLE_CLIENT_ID or form.get("client_secret") != GOOGLE_SECRET:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        if form.get("grant_type") == "authorization_code":
            with authority.lock:
                challenge, redirect = authority.google_codes.pop(form.get("code", ""), ("", ""))
            verifier = form.get("code_verifier", "")
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if not challenge or challenge != expected or form.get("redirect_uri") != redirect:
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            answer = authority.issue(GOOGLE_CLIENT_ID, "https://mail.google.com/")
            return 200, {k: answer[k] for k in ("access_token", "refresh_token", "expires_in", "scope", "token_type")}
        if form.get("grant_type") == "refresh_token":
            with authority.lock:
                account = authority.refresh_tokens.get(form.get("refresh_token", ""))
                authority.refreshes += 1
            if account is None:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            answer = authority.issue(GOOGLE_CLIENT_ID, "https://mail.google.com/", account)
            return 200, {k: answer[k] for k in ("access_token", "expires_in", "scope", "token_type")}
        return 400, {"error": "unsupported_grant_type"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    authority: Authority


@pytest.fixture(scope="session")
def oauth_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("oauth-pki") / "authority-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, ca_file


@pytest.fixture
def oauth_authority(oauth_pki: tuple[trustme.CA, Path]) -> Iterator[Authority]:
    ca, ca_file = oauth_pki
    server = _Server((HOST, 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.authority = Authority(f"https://{HOST}:{server.server_address[1]}", ca_file)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.authority
    server.authority.hold_refresh.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def oauth_smtp(smtp_pki: Pki, oauth_authority: Authority) -> Iterator[SmtpServer]:
    """A STARTTLS mail server offering XOAUTH2 that accepts only the access tokens ``oauth_authority`` issued."""
    server, controller = start_smtp_server(smtp_pki, "starttls", accept_token=oauth_authority.accepts)
    yield server
    server.gate.set()
    controller.stop()


# --- a CONNECT proxy -----------------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    tunnels: list[str] = field(default_factory=list)
    """``host:port`` of every CONNECT it served."""


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if host not in (HOST, "localhost"):  # never any other address
            self.send_error(403)
            return
        self.server.proxy.tunnels.append(self.path)
        upstream = socket.create_connection((HOST, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _pipe(self.connection, upstream)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: Proxy


@pytest.fixture
def connect_proxy() -> Iterator[Proxy]:
    server = _ProxyServer((HOST, 0), _ProxyHandler)
    server.proxy = Proxy(f"http://{HOST}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.proxy
    server.shutdown()
    server.server_close()
