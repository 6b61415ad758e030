"""OAuth 2.0 sign-in against the local HTTPS authority (tests/servers/oauth.py): msal's device code, the
shared token cache, silent refresh, the modes, trust and proxy, the admin's errors, no token anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opos_tui import settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import ROOT, Cli, send_process
from tests.pdfs import write_letter
from tests.servers.oauth import ACCOUNT, CLIENT_ID, Authority, Proxy
from tests.servers.smtp import SmtpServer

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def configure(home: Home, smtp: SmtpServer, authority: Authority, **values: Any) -> settings.Settings:
    options: dict[str, Any] = {
        "auth__method": "oauth",
        "oauth__client_id": CLIENT_ID,
        "oauth__authority_url": authority.url,
        "oauth__ca_file": str(authority.ca_file),
        **values,
    }
    current = smtp.settings(**options)
    settings.save(home, current)
    return current


def opos(home: Home, *args: str, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "OPOS_TUI_HOME": str(home.root), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "opos_tui", *args], text=True, env=env, cwd=ROOT, **options)


def login(home: Home, authority: Authority) -> list[dict[str, Any]]:
    """``oauth login --json`` with stdin left open; the test approves the code at the authority."""
    process = opos(home, "oauth", "login", "--json")
    assert process.stdout is not None
    try:
        first = json.loads(process.stdout.readline())
        assert first["event"] == "device_code"
        authority.approve(first["user_code"])
        rest = [json.loads(line) for line in process.stdout]
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    return [first, *rest]


def queue_mails(home: Home, tmp_path: Path, count: int) -> list[int]:
    from opos_tui.services import compose

    current = settings.load(home)
    ids = []
    with open_queue(home) as q:
        for n in range(count):
            pdf = write_letter(tmp_path / f"RE-{n}.pdf", f"RE-{n}", f"K{n}", "Kunde")
            request = compose.LetterRequest(
                type="payment-advice",
                to=[f"kunde{n}@example.test"],
                attachments=[pdf],
                vars={"customer_name": "Kunde", "customer_number": f"K{n}", "document_number": f"RE-{n}"},
            )
            ids.append(q.enqueue(compose.prepare(current, request)).id)
    return ids


def statuses(home: Home, ids: list[int]) -> set[Status]:
    with open_queue(home) as q:
        return set(q.statuses(ids).values())


def test_login_json_events_then_send(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    events = login(home, oauth_authority)
    device, signed_in = events
    assert device["verification_uri"].startswith(oauth_authority.url)
    assert device["expires_in"] > 0
    assert signed_in["event"] == "signed_in" and signed_in["account"] == ACCOUNT
    assert signed_in["expires_at"] > 0
    ids = queue_mails(home, tmp_path, 2)
    sender = send_process(home)
    out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert statuses(home, ids) == {Status.SENT}
    assert len(oauth_smtp.received) == 2
    assert oauth_smtp.logins == [ACCOUNT]  # auth.profile empty: the account's user name
