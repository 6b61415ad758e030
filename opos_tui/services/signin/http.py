"""The HTTP session every sign-in request goes through: the configured trust and the right proxy.

Trust is the system's store plus ``oauth.ca_file``, nothing else: requests would let ``REQUESTS_CA_BUNDLE``
or ``CURL_CA_BUNDLE`` quietly replace a session's ``verify`` (``trust_env``), and certifi's bundle would be
loaded beside the system store. Both are shut out here. The proxy is kept: ``oauth.proxy`` if set, else
``HTTPS_PROXY``/``NO_PROXY`` from the environment (a CONNECT tunnel), as company terminal servers need.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from opos_tui.i18n import tr
from opos_tui.services.errors import ConfigError
from opos_tui.services.settings import OAuthSettings

TIMEOUT = 30.0
"""Seconds to wait for a sign-in address."""


def trust_context(ca_file: str) -> ssl.SSLContext:
    """The system's trust store plus ``ca_file`` (if given); host names are always checked."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"oauth.ca_file {ca_file} cannot be used as a CA file (PEM): {exc}",
                f"oauth.ca_file {ca_file} ist keine verwendbare CA-Datei (PEM): {exc}",
            ) from None
    return context


def proxy_for(url: str, configured: str) -> str | None:
    """The proxy a request to ``url`` goes through: ``configured`` (oauth.proxy), else the environment's
    ``HTTPS_PROXY`` unless ``NO_PROXY`` names the host; None = direct."""
    if configured:
        return configured
    return get_environ_proxies(url).get(url.partition(":")[0].lower()) or None


class _TrustAdapter(HTTPAdapter):
    """Every connection with our SSL context, and no CA bundle file added to it."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, _ = super().build_connection_pool_key_attributes(request, True, None)
        return host, {"ssl_context": self._context, "cert_reqs": "CERT_REQUIRED"}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


class SignInSession(requests.Session):
    """A requests session with the configured trust and proxy, whatever the environment says about trust."""

    def __init__(self, oauth: OAuthSettings) -> None:
        super().__init__()
        self.trust_env = False  # no REQUESTS_CA_BUNDLE, no netrc; the proxy is chosen below instead
        self.configured_proxy = oauth.proxy
        self.mount("https://", _TrustAdapter(trust_context(oauth.ca_file)))

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Mapping[str, str] | None, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        target = url.decode() if isinstance(url, bytes) else url or ""
        proxy = proxy_for(target, self.configured_proxy)
        return {
            "proxies": {"https": proxy, "http": proxy} if proxy else {},
            "stream": stream,
            "verify": True,
            "cert": None,
        }

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.pop("verify", None)  # nobody widens the trust per call either
        return super().request(*args, **kwargs)


def describe_proxy(url: str, configured: str) -> str:
    proxy = proxy_for(url, configured)
    if proxy is None:
        return tr("none (direct)", "keiner (direkt)")
    source = "oauth.proxy" if configured else "HTTPS_PROXY"
    return f"{_without_password(proxy)} ({source})"


def _without_password(proxy: str) -> str:
    scheme, sep, rest = proxy.partition("://")
    user, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{user.partition(':')[0]}@{host}" if at else proxy
