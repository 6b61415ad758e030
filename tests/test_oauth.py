"""OAuth 2.0 sign-in against the local HTTPS authority (tests/servers/oauth.py): msal's device code, the
shared token cache, silent refresh, the modes, trust and proxy, the admin's errors, no token anywhere."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import ROOT, Cli, send_process
from tests.pdfs import write_letter
from tests.servers.oauth import ACCOUNT, CLIENT_ID, Authority, Proxy
from tests.servers.smtp import SmtpServer

PROXY_VARS = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


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
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert statuses(home, ids) == {Status.SENT}
    assert len(oauth_smtp.received) == 2
    assert oauth_smtp.logins == [ACCOUNT]  # auth.profile empty: the account's user name


def cache_file(home: Home) -> Path:
    return home.root / "oauth-tokens.json"


def test_oauth_mode_without_sign_in_stops_the_run_items_pending(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    ids = queue_mails(home, tmp_path, 2)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 1
    assert "sign-in required: run `opos-tui oauth login`" in err
    assert statuses(home, ids) == {Status.PENDING}
    assert oauth_authority.device_codes_requested == 0 and not oauth_smtp.received


def test_oauth_dialog_without_a_terminal_behaves_like_oauth(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    ids = queue_mails(home, tmp_path, 1)
    # setsid: no controlling terminal; stdin /dev/null: not a TTY (cron, the accounting system)
    sender = send_process(home, stdin=subprocess.DEVNULL, start_new_session=True)
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 1
    assert "opos-tui oauth login" in err
    assert statuses(home, ids) == {Status.PENDING}
    assert oauth_authority.device_codes_requested == 0


def test_expired_token_is_refreshed_silently_and_the_rotated_one_saved(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    oauth_authority.token_lifetime = 60  # msal counts this as expired at once
    login(home, oauth_authority)
    before = cache_file(home).read_text()
    ids = queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert oauth_authority.refreshes == 1
    assert statuses(home, ids) == {Status.SENT}
    assert cache_file(home).read_text() != before  # the rotated refresh token is saved
    assert oct(cache_file(home).stat().st_mode & 0o777) == "0o600"


def test_two_processes_refreshing_at_once_take_turns(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    oauth_authority.token_lifetime = 60
    login(home, oauth_authority)
    oauth_authority.hold_refresh.clear()
    first = opos(home, "test-connection", stdin=subprocess.DEVNULL)
    assert oauth_authority.refresh_arrived.acquire(timeout=60)  # the first one is refreshing now
    second = opos(home, "test-connection", stdin=subprocess.DEVNULL)
    wait_until_blocked_on_lock(second.pid)
    oauth_authority.hold_refresh.set()
    for process in (first, second):
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out + err
    # Each refreshed with the refresh token the other had saved: none was used twice, none refused.
    assert oauth_authority.refreshes == 2
    assert len(oauth_authority.refresh_tokens) == 1
    json.loads(cache_file(home).read_text())


def wait_until_blocked_on_lock(pid: int) -> None:
    """Until the process waits for a file lock (Linux lists waiters in /proc/locks with '->')."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields and fields[fields.index("->") + 4] == str(pid):
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never waited for the token cache's lock")


def test_revoked_sign_in_stops_the_run_with_the_admins_words(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    oauth_authority.token_lifetime = 60
    login(home, oauth_authority)
    oauth_authority.revoke()
    ids = queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 1
    assert "revoked or has expired" in err and "opos-tui oauth login" in err
    assert statuses(home, ids) == {Status.PENDING}


def test_status_and_logout(cli: Cli, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority) -> None:
    configure(home, oauth_smtp, oauth_authority)
    result = cli("oauth", "status", "--json")
    assert result.code == 0
    shown = json.loads(result.out)
    assert shown["signed_in"] is False and shown["provider"] == "microsoft"
    login(home, oauth_authority)
    shown = json.loads(cli("oauth", "status", "--json").out)
    assert shown["signed_in"] is True and shown["account"] == ACCOUNT and shown["expires_at"] > 0
    assert "not encrypted" in shown["cache"] and str(cache_file(home)) in shown["cache"]
    assert "direct" in shown["proxy"]
    assert cli("oauth", "logout").code == 0
    assert json.loads(cli("oauth", "status", "--json").out)["signed_in"] is False


def test_no_client_id_names_what_to_register(
    cli: Cli, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority, oauth__client_id="")
    result = cli("oauth", "login")
    assert result.code == 2
    assert "Allow public client flows" in result.err and "SMTP.Send" in result.err
    configure(home, oauth_smtp, oauth_authority, oauth__client_id="", oauth__provider="google")
    result = cli("oauth", "login")
    assert result.code == 2 and "Desktop app" in result.err and "https://mail.google.com/" in result.err


def test_status_before_any_app_registration_still_reports(cli: Cli, home: Home) -> None:
    """A new installation: status answers (nobody signed in, and why) with login's exit code for it."""
    result = cli("oauth", "status", "--json")
    assert result.code == 2
    shown = json.loads(result.out)
    assert shown["signed_in"] is False and shown["configured"] is False and shown["provider"] == "microsoft"
    assert "oauth.client_id" in shown["problem"] and "Allow public client flows" in shown["problem"]
    assert str(cache_file(home)) in shown["cache"]
    result = cli("oauth", "status")
    assert result.code == 2 and "not signed in" in result.out and "oauth.client_id" in result.out


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"oauth__client_id": "unknown-client"}, "check oauth.client_id"),
        ({"oauth__tenant_id": "unknown-tenant"}, "check oauth.tenant_id"),
    ],
)
def test_registration_errors_before_any_code(
    cli: Cli, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, values: dict[str, str], words: str
) -> None:
    configure(home, oauth_smtp, oauth_authority, **values)
    result = cli("oauth", "login", "--json")
    assert result.code == 1
    assert words in result.err and result.out == ""


@pytest.mark.parametrize(
    ("client_id", "deny", "words"),
    [
        ("public-off", None, "'Allow public client flows' to Yes"),
        (CLIENT_ID, "consent", "Grant admin consent"),
        (CLIENT_ID, "declined", "declined"),
    ],
)
def test_refused_sign_in_exits_1(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, client_id: str, deny: str | None, words: str
) -> None:
    configure(home, oauth_smtp, oauth_authority, oauth__client_id=client_id)
    process = opos(home, "oauth", "login", "--json")
    assert process.stdout is not None
    event = json.loads(process.stdout.readline())
    if deny:
        oauth_authority.deny(event["user_code"], deny)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert words in err and out == ""
    assert not cache_file(home).exists() or "microsoft" not in json.loads(cache_file(home).read_text())


def test_ctrl_c_cancels_login_with_130(home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority) -> None:
    configure(home, oauth_smtp, oauth_authority)
    process = opos(home, "oauth", "login", "--json")
    assert process.stdout is not None
    json.loads(process.stdout.readline())
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130


def test_env_ca_bundle_neither_replaces_nor_widens_the_trust(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import trustme

    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    configure(home, oauth_smtp, oauth_authority)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, str(stranger))
    login(home, oauth_authority)  # oauth.ca_file is trusted although the environment names another CA
    configure(home, oauth_smtp, oauth_authority, oauth__ca_file="")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(var, str(oauth_authority.ca_file))
    process = opos(home, "oauth", "login", "--json")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "cannot reach the Microsoft sign-in" in err and "oauth.ca_file" in err


def test_sign_in_and_refresh_through_a_connect_proxy(
    cli: Cli,
    home: Home,
    oauth_smtp: SmtpServer,
    oauth_authority: Authority,
    connect_proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    oauth_authority.token_lifetime = 60
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    login(home, oauth_authority)
    host = oauth_authority.url.removeprefix("https://")
    assert connect_proxy.tunnels and set(connect_proxy.tunnels) == {host}
    assert connect_proxy.url in json.loads(cli("oauth", "status", "--json").out)["proxy"]
    tunnels = len(connect_proxy.tunnels)
    queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert oauth_authority.refreshes == 1 and len(connect_proxy.tunnels) > tunnels  # the refresh too
    # NO_PROXY names the host: direct; oauth.proxy overrides the environment.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert "direct" in json.loads(cli("oauth", "status", "--json").out)["proxy"]
    configure(home, oauth_smtp, oauth_authority, oauth__proxy=connect_proxy.url)
    assert "oauth.proxy" in json.loads(cli("oauth", "status", "--json").out)["proxy"]
    # The connection test names the proxy its sign-in goes through.
    assert f"proxy: {connect_proxy.url} (oauth.proxy)" in cli("test-connection").out


def test_no_token_in_config_queue_log_or_output(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    login_events = login(home, oauth_authority)
    queue_mails(home, tmp_path, 1)
    outputs = [json.dumps(login_events)]
    for args in (("send", "--json"), ("test-connection", "--json"), ("oauth", "status", "--json"), ("config", "show")):
        process = opos(home, *args, stdin=subprocess.DEVNULL)
        outputs += process.communicate(timeout=60)
    tokens = [*oauth_authority.access_tokens, *oauth_authority.refresh_tokens]
    assert tokens
    files = [p for p in home.root.rglob("*") if p.is_file() and p != cache_file(home) and p.suffix != ".lock"]
    assert home.config_file in files and home.queue_db in files
    for token in tokens:
        for text in outputs:
            assert token not in text
        for path in files:
            assert token.encode() not in path.read_bytes(), path


def test_connection_test_signs_in_with_the_cached_token(
    cli: Cli, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    result = cli("test-connection", "--json")
    assert result.code == 1
    shown = json.loads(result.out)
    assert shown["stage"] == "connect" and "opos-tui oauth login" in shown["error"]
    login(home, oauth_authority)
    result = cli("test-connection")
    assert result.code == 0, result.out
    assert f"Logged in as {ACCOUNT} with XOAUTH2" in result.out


def read_until(fd: int, pattern: str, seen: list[str]) -> re.Match[str]:
    """Read the terminal's output until ``pattern`` appears in it (or it ends)."""
    deadline = time.monotonic() + 60
    while (found := re.search(pattern, "".join(seen))) is None:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise AssertionError(f"never printed {pattern!r}: {''.join(seen)!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side is closed, the program has ended
            chunk = b""
        if not chunk:
            raise AssertionError(f"ended without printing {pattern!r}: {''.join(seen)!r}")
        seen.append(chunk.decode("utf-8", "replace"))
    return found


def read_to_the_end(fd: int, seen: list[str]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        seen.append(chunk.decode("utf-8", "replace"))


@pytest.mark.parametrize("command", [("send",), ("test-connection",)])
def test_oauth_dialog_on_a_terminal_prints_the_code_waits_and_goes_on(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path, command: tuple[str, ...]
) -> None:
    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    ids = queue_mails(home, tmp_path, 2)
    env = {**os.environ, "OPOS_TUI_HOME": str(home.root), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "opos_tui", *command], env)
    seen: list[str] = []
    try:
        shown = read_until(fd, r"open (\S+) on any device and enter the code (\w+)", seen)
        assert shown[1].startswith(oauth_authority.url) and oauth_authority.device_codes_requested == 1
        oauth_authority.approve(shown[2])
        read_to_the_end(fd, seen)
        _, wait_status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(fd)
    output = "".join(seen)
    assert os.waitstatus_to_exitcode(wait_status) == 0, output
    assert f"signed in as {ACCOUNT}" in output
    if command == ("send",):
        assert statuses(home, ids) == {Status.SENT} and len(oauth_smtp.received) == 2
    else:
        assert f"Logged in as {ACCOUNT} with XOAUTH2" in output
    assert oauth_smtp.logins and set(oauth_smtp.logins) == {ACCOUNT}


def test_a_transport_made_without_a_sign_in_says_so_not_that_oauth_is_missing(tmp_path: Path) -> None:
    from opos_tui.services.errors import TransportUnavailable
    from opos_tui.services.secrets import FileSecretStore
    from opos_tui.services.transports.registry import build_transport

    oauth = settings.check({"smtp": {"host": "127.0.0.1"}, "auth": {"method": "oauth-dialog", "profile": ACCOUNT}})
    with pytest.raises(TransportUnavailable) as caught:
        build_transport(oauth, FileSecretStore(tmp_path / "secrets.toml"))
    assert "not available in this version" not in caught.value.en
    assert "auth.method is oauth-dialog" in caught.value.en and "opos-tui oauth login" in caught.value.en
