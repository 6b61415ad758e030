"""Google sign-in against the local HTTPS authority (tests/servers/oauth.py): the authorization address with
PKCE and offline access, completion through the loopback listener or a pasted address, a wrong ``state``
refused without redeeming its code, silent refresh, the 7-day "testing" hint, and the XOAUTH2 user."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from opos_tui.services import secrets
from opos_tui.services.home import Home
from opos_tui.services.queue import Status
from tests.conftest import Cli, send_process
from tests.servers.oauth import ACCOUNT, GOOGLE_CLIENT_ID, GOOGLE_SECRET, Authority
from tests.servers.smtp import SmtpServer
from tests.test_oauth import _no_proxy_from_outside, cache_file, configure, opos, queue_mails, statuses

__all__ = ["_no_proxy_from_outside"]  # the autouse fixture: no proxy from the machine's environment


@pytest.fixture
def google(home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority) -> Authority:
    configure(
        home,
        oauth_smtp,
        oauth_authority,
        oauth__provider="google",
        oauth__client_id=GOOGLE_CLIENT_ID,
        oauth__google_auth_url=f"{oauth_authority.url}/google/auth",
        oauth__google_token_url=f"{oauth_authority.url}/google/token",
        auth__profile=ACCOUNT,
    )
    secrets.open_store(home).set(secrets.GOOGLE_CLIENT_SECRET, GOOGLE_SECRET)
    return oauth_authority


def browser_ends_on(authority: Authority, url: str) -> str:
    """What a browser does at Google's page once the person agreed: the address it is redirected to."""
    parts = urlparse(url)
    assert parts.hostname is not None
    context = ssl.create_default_context(cafile=str(authority.ca_file))
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
    connection.request("GET", f"{parts.path}?{parts.query}")
    reply = connection.getresponse()
    connection.close()
    assert reply.status == 302
    return str(reply.getheader("Location"))


def start_login(home: Home) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = opos(home, "oauth", "login", "--json")
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def finish(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    """The rest of ``login``'s events and its exit code, with stdin still open until it has exited."""
    assert process.stdout is not None and process.stderr is not None
    try:
        events = [json.loads(line) for line in process.stdout]
        code = process.wait(timeout=60)
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    return code, events, err


def test_authorize_url_then_loopback_completes_and_mails_go(
    home: Home, google: Authority, oauth_smtp: SmtpServer, tmp_path: Path
) -> None:
    process, first = start_login(home)
    assert first["event"] == "authorize_url"
    query = {k: v[0] for k, v in parse_qs(urlparse(first["url"]).query).items()}
    assert query["client_id"] == GOOGLE_CLIENT_ID and query["scope"] == "https://mail.google.com/"
    assert query["access_type"] == "offline" and query["code_challenge_method"] == "S256"
    redirect = urlparse(query["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "localhost", "/")
    landed = browser_ends_on(google, first["url"])
    # The loopback listener answers on 127.0.0.1 at the redirect's port (the person's browser on this machine).
    with urllib.request.urlopen(landed.replace("//localhost:", "//127.0.0.1:"), timeout=30) as page:
        assert b"you can close this window" in page.read()
    code, events, err = finish(process)  # stdin stays open: login exits all the same
    assert code == 0, err
    assert events == [{"event": "signed_in", "account": ACCOUNT, "expires_at": events[0]["expires_at"]}]
    ids = queue_mails(home, tmp_path, 2)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert statuses(home, ids) == {Status.SENT}
    assert set(oauth_smtp.logins) == {ACCOUNT}  # auth.profile is the XOAUTH2 user
    assert GOOGLE_SECRET not in cache_file(home).read_text("utf-8")


def test_pasted_address_completes_the_sign_in(home: Home, google: Authority) -> None:
    process, first = start_login(home)
    assert process.stdin is not None
    process.stdin.write(browser_ends_on(google, first["url"]) + "\n")  # over SSH: the page did not load
    process.stdin.flush()
    code, events, err = finish(process)
    assert code == 0, err
    assert [e["event"] for e in events] == ["signed_in"] and events[0]["account"] == ACCOUNT


def test_pasted_address_with_a_wrong_state_is_refused_and_its_code_not_redeemed(home: Home, google: Authority) -> None:
    process, first = start_login(home)
    assert process.stdin is not None
    landed = urlparse(browser_ends_on(google, first["url"]))
    query = {k: v[0] for k, v in parse_qs(landed.query).items()}
    forged = landed._replace(query=urlencode({"state": "someone-elses", "code": query["code"]})).geturl()
    process.stdin.write(forged + "\n")
    process.stdin.flush()
    code, events, err = finish(process)
    assert code == 1 and events == []
    assert "state" in err and "its code was not used" in err
    assert query["code"] in google.google_codes  # never redeemed
    assert not cache_file(home).exists() or "google" not in cache_file(home).read_text("utf-8")


def login_by_paste(home: Home, authority: Authority) -> None:
    process, first = start_login(home)
    assert process.stdin is not None
    process.stdin.write(browser_ends_on(authority, first["url"]) + "\n")
    process.stdin.flush()
    code, _events, err = finish(process)
    assert code == 0, err


def test_expired_token_is_refreshed_silently(
    home: Home, google: Authority, oauth_smtp: SmtpServer, tmp_path: Path
) -> None:
    google.token_lifetime = 60  # less than the five minutes' margin: stale at once
    login_by_paste(home, google)
    before = json.loads(cache_file(home).read_text("utf-8"))["google"]
    ids = queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert google.refreshes == 1 and statuses(home, ids) == {Status.SENT}
    after = json.loads(cache_file(home).read_text("utf-8"))["google"]
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]  # Google keeps it; it must not be lost


def test_refused_refresh_explains_the_seven_days_of_a_testing_app(
    home: Home, google: Authority, tmp_path: Path
) -> None:
    google.token_lifetime = 60
    login_by_paste(home, google)
    google.revoke()
    ids = queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 1
    assert "invalid_grant" in err and "7 days" in err and "opos-tui oauth login" in err
    assert statuses(home, ids) == {Status.PENDING}


def test_google_needs_auth_profile(cli: Cli, home: Home, google: Authority) -> None:
    cli("config", "set", "auth.profile", "")
    result = cli("oauth", "login")
    assert result.code == 2
    assert "auth.profile is empty" in result.err and "Gmail" in result.err
