"""OAuth 2.0 sign-in for sending: which provider, its silent token provider, and waiting for a person.

``auth.method = oauth`` never waits for a person: a cached or silently refreshed token, else the run stops
with :class:`~opos_tui.services.signin.errors.SignInRequired` (every item stays pending). ``oauth-dialog``
lets the face that runs the send ask a person to sign in (the TUI's modal, or on a terminal the address and
code printed by the command line) through the dispatcher's ``on_interaction`` hook, then goes on. With no
terminal at all (cron) the command line behaves as ``oauth`` and never even asks for a device code.

msal and google-auth-oauthlib are imported only when a sign-in is used.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from opos_tui.services.home import Home
from opos_tui.services.settings import Settings
from opos_tui.services.signin.cache import CacheUnreadable, TokenCacheFile
from opos_tui.services.signin.errors import Cancelled, NotConfigured, SignInRefused, SignInRequired
from opos_tui.services.signin.google import Authorization, GoogleSignIn
from opos_tui.services.signin.http import describe_proxy
from opos_tui.services.signin.microsoft import DeviceCode, MicrosoftSignIn, Token
from opos_tui.services.transports.base import TokenProvider

__all__ = [
    "Authorization",
    "Cancelled",
    "DeviceCode",
    "GoogleSignIn",
    "MicrosoftSignIn",
    "SignIn",
    "SignInStatus",
    "Token",
    "for_transport",
    "has_usable_token",
    "proxy_in_use",
    "sign_in_for",
    "status",
    "wait_for_sign_in",
]

SignIn = MicrosoftSignIn | GoogleSignIn


def sign_in_for(settings: Settings, home: Home) -> SignIn:
    """The configured provider's sign-in; NotConfigured (exit 2) when oauth.client_id is empty."""
    if settings.oauth.provider == "google":
        if not settings.oauth.client_id:
            raise NotConfigured("google")
        from opos_tui.services.secrets import GOOGLE_CLIENT_SECRET, open_store

        secret = open_store(home).get(GOOGLE_CLIENT_SECRET)
        return GoogleSignIn(settings.oauth, settings.auth.profile, secret, TokenCacheFile(home))
    return MicrosoftSignIn(settings.oauth, TokenCacheFile(home))


def for_transport(settings: Settings, home: Home) -> tuple[Settings, TokenProvider | None]:
    """The settings a transport is built from and its token provider (None unless auth.method is OAuth).

    The XOAUTH2 user is auth.profile, else the signed-in account's user name: with nobody signed in and no
    profile, :class:`SignInRequired` is raised here already."""
    if not settings.uses_oauth():
        return settings, None
    signin = sign_in_for(settings, home)

    async def token() -> str:
        found = await asyncio.to_thread(signin.silent)
        if found is None:
            raise SignInRequired()
        return found.access_token

    if not settings.auth.profile:
        account = signin.account()
        if not account:
            raise SignInRequired()
        settings = replace(settings, auth=replace(settings.auth, profile=account))
    return settings, token


def proxy_in_use(settings: Settings) -> str:
    """The proxy the sign-in requests go through, as ``oauth status`` and the connection test name it."""
    oauth = settings.oauth
    address = oauth.google_token_url if oauth.provider == "google" else oauth.authority_url
    return describe_proxy(address, oauth.proxy)


def has_terminal() -> bool:
    """A person may be at this process: stdin is a TTY or there is a controlling terminal."""
    if sys.stdin is not None and sys.stdin.isatty():
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def has_usable_token(signin: SignIn) -> bool:
    """A cached or silently refreshed token is there (no person needed); a refused refresh counts as none."""
    try:
        return signin.silent() is not None
    except SignInRequired:
        return False


def wait_for_sign_in(
    signin: MicrosoftSignIn,
    code: DeviceCode,
    cancelled: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Token:
    """Poll at the authority's interval until the person has signed in. Raises Cancelled, or SignInRefused
    when the code expires (by ``clock``); whatever the authority refuses is raised as its admin's error."""
    stop = cancelled or threading.Event()
    while True:
        token = signin.poll(code)
        if token is not None:
            return token
        if clock() >= code.expires_at:
            raise SignInRefused(
                "the code expired before the sign-in was completed: sign in again",
                "der Code ist abgelaufen, bevor die Anmeldung abgeschlossen war: erneut anmelden",
            )
        if stop.wait(code.interval):
            raise Cancelled


@dataclass(frozen=True)
class SignInStatus:
    provider: str
    signed_in: bool
    account: str
    expires_at: float | None
    cache: str
    cache_encrypted: bool
    proxy: str
    problem: str = ""
    """Why the cached sign-in cannot be used (an encrypted cache whose key is gone, no app registration), else ''."""
    configured: bool = True
    """False while oauth.client_id is empty."""

    def to_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "signed_in": self.signed_in,
            "account": self.account or None,
            "expires_at": int(self.expires_at) if self.expires_at else None,
            "cache": self.cache,
            "cache_encrypted": self.cache_encrypted,
            "proxy": self.proxy,
            "problem": self.problem or None,
            "configured": self.configured,
        }


def status(settings: Settings, home: Home) -> SignInStatus:
    """Who is signed in (from the cache, no network), where the tokens are kept and the proxy in use. A cache
    that cannot be opened any more counts as nobody signed in, with the reason as ``problem``; so does an
    installation with no app registration yet (``configured`` False: nobody can sign in)."""
    try:
        signin = sign_in_for(settings, home)
    except NotConfigured as exc:
        cache = TokenCacheFile(home)
        return SignInStatus(
            settings.oauth.provider,
            False,
            "",
            None,
            cache.describe(),
            cache.encrypted(),
            proxy_in_use(settings),
            exc.message(),
            configured=False,
        )
    try:
        account = signin.account()
        expires_at = signin.expires_at() if account else None
    except CacheUnreadable as exc:
        account, expires_at, problem = "", None, exc.message()
    else:
        problem = ""
    return SignInStatus(
        signin.provider,
        bool(account),
        account,
        expires_at,
        signin.cache.describe(),
        signin.cache.encrypted(),
        proxy_in_use(settings),
        problem,
    )
