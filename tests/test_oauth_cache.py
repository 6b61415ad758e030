"""The token cache encrypted under a key in a REAL Secret Service (gnome-keyring on a private D-Bus session
bus), plain 0600 where no keyring exists, moving between the two, and an encrypted cache whose key is gone.

Every opos-tui here is a process of its own: the keyring library picks its backend once per process."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.home import Home
from opos_tui.services.queue import Status
from opos_tui.services.signin.cache import KEY_NAME
from tests.conftest import ROOT, send_process
from tests.servers.oauth import ACCOUNT, Authority
from tests.servers.smtp import SmtpServer
from tests.test_oauth import _no_proxy_from_outside, cache_file, configure, login, opos, queue_mails, statuses

__all__ = ["_no_proxy_from_outside"]  # the autouse fixture: no proxy from the machine's environment

PROGRAMS = ("dbus-daemon", "gnome-keyring-daemon")


def wait_for_bus_name(address: str, name: str, daemon: subprocess.Popen[bytes]) -> None:
    """Until ``name`` is owned on the bus at ``address`` (the keyring daemon has registered)."""
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    deadline = time.monotonic() + 60
    with open_dbus_connection(bus=address) as bus:
        while time.monotonic() < deadline:
            if bus.send_and_get_reply(message_bus.NameHasOwner(name)).body[0]:
                return
            if daemon.poll() is not None:
                raise AssertionError(f"gnome-keyring-daemon ended with {daemon.returncode}")
            time.sleep(0.05)
    raise AssertionError(f"{name} never appeared on the test's session bus")


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private session bus with an unlocked gnome-keyring on it, in a home of its own; opos-tui processes
    started from the test find it through the environment and must use it (``OPOS_TUI_SECRETS=keyring``)."""
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if missing:
        pytest.skip(
            f"NOT TESTED: the encrypted token cache needs a real Secret Service, and this machine lacks "
            f"{', '.join(missing)} (as root: apt-get install -y gnome-keyring dbus)"
        )
    session = tmp_path / "session"
    for variable, folder in {
        "HOME": "home",
        "XDG_DATA_HOME": "data",
        "XDG_CONFIG_HOME": "config",
        "XDG_CACHE_HOME": "cache",
        "XDG_RUNTIME_DIR": "run",
    }.items():
        (session / folder).mkdir(parents=True, mode=0o700)
        monkeypatch.setenv(variable, str(session / folder))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE, text=True
    )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert daemon.stdin is not None
        daemon.stdin.write(b"the login keyring's password")  # --unlock: creates the login keyring, unlocked
        daemon.stdin.close()
        wait_for_bus_name(address, "org.freedesktop.secrets", daemon)
        monkeypatch.setenv("OPOS_TUI_SECRETS", "keyring")
        yield
    finally:
        for process in (daemon, bus):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def run(home: Home, *args: str) -> tuple[int, str, str]:
    process = opos(home, *args, stdin=subprocess.DEVNULL)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def status(home: Home) -> dict[str, Any]:
    code, out, err = run(home, "oauth", "status", "--json")
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    return shown


def tokens_of(authority: Authority) -> list[str]:
    found = [*authority.access_tokens, *authority.refresh_tokens]
    assert found
    return found


def assert_sealed(home: Home, authority: Authority) -> None:
    """The file holds none of the tokens the authority issued, only the sealed form, and is owner-only."""
    raw = cache_file(home).read_bytes()
    for token in tokens_of(authority):
        assert token.encode() not in raw
    assert set(json.loads(raw)) == {"encrypted", "nonce", "ciphertext"}
    assert stat.S_IMODE(cache_file(home).stat().st_mode) == 0o600


def assert_plain(home: Home, authority: Authority) -> None:
    raw = cache_file(home).read_bytes()
    assert any(token.encode() in raw for token in authority.refresh_tokens)
    assert "microsoft" in json.loads(raw)
    assert stat.S_IMODE(cache_file(home).stat().st_mode) == 0o600


def delete_key(home: Home) -> None:
    """Delete the cache's key from the keyring, as another program (or an admin) might."""
    script = f"import keyring; keyring.delete_password({f'opos-tui:{home.root}'!r}, {KEY_NAME!r})"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)


def test_signed_in_with_a_secret_service_the_file_holds_no_token(
    secret_service: None, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, tmp_path: Path
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    oauth_authority.token_lifetime = 60  # the send below refreshes: the rotated token is sealed too
    login(home, oauth_authority)
    assert_sealed(home, oauth_authority)
    shown = status(home)
    assert shown["signed_in"] is True and shown["account"] == ACCOUNT
    assert shown["cache_encrypted"] is True and shown["problem"] is None
    assert "encrypted with AES-256-GCM" in shown["cache"] and "SecretService" in shown["cache"]
    code, out, _ = run(home, "oauth", "status")
    assert code == 0 and "encrypted with AES-256-GCM" in out
    # A second process reads it, refreshes, sends.
    ids = queue_mails(home, tmp_path, 2)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert oauth_authority.refreshes == 1 and statuses(home, ids) == {Status.SENT}
    assert len(oauth_smtp.received) == 2
    assert_sealed(home, oauth_authority)


def test_a_plain_cache_is_encrypted_once_the_keyring_is_used_and_back(
    secret_service: None,
    home: Home,
    oauth_smtp: SmtpServer,
    oauth_authority: Authority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    monkeypatch.setenv("OPOS_TUI_SECRETS", "file")
    login(home, oauth_authority)
    assert_plain(home, oauth_authority)
    assert status(home)["cache_encrypted"] is False
    monkeypatch.setenv("OPOS_TUI_SECRETS", "keyring")
    shown = status(home)
    assert shown["signed_in"] is True and shown["cache_encrypted"] is True
    assert_sealed(home, oauth_authority)
    # The secret store is the file again while the keyring still holds the key: decrypted, still signed in.
    monkeypatch.setenv("OPOS_TUI_SECRETS", "file")
    shown = status(home)
    assert shown["signed_in"] is True and shown["cache_encrypted"] is False
    assert "not encrypted" in shown["cache"]
    assert_plain(home, oauth_authority)


@pytest.mark.parametrize("lost", ["key deleted", "no keyring here"])
def test_an_encrypted_cache_whose_key_is_gone_says_sign_in_again(
    secret_service: None,
    home: Home,
    oauth_smtp: SmtpServer,
    oauth_authority: Authority,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    lost: str,
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    login(home, oauth_authority)
    sealed = cache_file(home).read_bytes()
    if lost == "key deleted":
        delete_key(home)
        words = "its key is not in the system keyring"
    else:  # an SSH session: no session bus, no keyring backend; the secret store is the file
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        monkeypatch.delenv("OPOS_TUI_SECRETS")
        words = "no system keyring is available"
    ids = queue_mails(home, tmp_path, 1)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 1
    assert "sign-in required: run `opos-tui oauth login`" in err and words in err
    assert "Traceback" not in err
    assert statuses(home, ids) == {Status.PENDING} and not oauth_smtp.received
    shown = status(home)
    assert shown["signed_in"] is False and words in shown["problem"]
    assert cache_file(home).read_bytes() == sealed  # nothing was thrown away behind anyone's back
    # Signing in again replaces it, in the form this process's secret store gives.
    login(home, oauth_authority)
    shown = status(home)
    assert shown["signed_in"] is True and shown["problem"] is None
    if lost == "key deleted":
        assert_sealed(home, oauth_authority)
    else:
        assert shown["cache_encrypted"] is False
        assert_plain(home, oauth_authority)
    sender = send_process(home, stdin=subprocess.DEVNULL)
    _out, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert statuses(home, ids) == {Status.SENT}


def test_logout_deletes_an_encrypted_cache_nobody_can_open(
    secret_service: None, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    configure(home, oauth_smtp, oauth_authority)
    login(home, oauth_authority)
    delete_key(home)
    code, out, err = run(home, "oauth", "logout")
    assert code == 0, err
    assert "signed out" in out and not cache_file(home).exists()
    assert status(home)["problem"] is None


def test_without_a_keyring_backend_the_file_is_plain_0600_and_says_so(
    home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No OPOS_TUI_SECRETS: the backend found is what decides, and there is none.
    monkeypatch.delenv("OPOS_TUI_SECRETS")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    configure(home, oauth_smtp, oauth_authority)
    login(home, oauth_authority)
    assert_plain(home, oauth_authority)
    shown = status(home)
    assert shown["cache_encrypted"] is False and shown["signed_in"] is True
    assert "not encrypted, readable by its owner only" in shown["cache"] and str(cache_file(home)) in shown["cache"]
    code, out, _ = run(home, "oauth", "status")
    assert code == 0 and "not encrypted" in out


@pytest.fixture
def no_keyring_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (the TUI in a test) finds no keyring backend, as in an SSH session."""
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core.init_backend()
    yield
    monkeypatch.undo()
    keyring.core.init_backend()


async def test_settings_form_says_where_the_tokens_are_and_why_a_cache_cannot_be_used(
    no_keyring_backend: None, home: Home, oauth_smtp: SmtpServer, oauth_authority: Authority
) -> None:
    from opos_tui.app import OposApp
    from tests.test_queue_screen import text_of, until

    configure(home, oauth_smtp, oauth_authority, auth__method="oauth-dialog")
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the OAuth fields follow the form's first paint
        await until(pilot, lambda: bool(text_of(app.screen, "#oauth-cache")))  # looked up in a worker
        shown = text_of(app.screen, "#oauth-cache")
        assert shown.startswith(f"Tokens kept in: file {cache_file(home)} (not encrypted, readable by its owner only")
    # A cache encrypted elsewhere (under a key in a keyring this session does not have).
    sealed = {"encrypted": "AES-256-GCM", "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA=="}
    cache_file(home).write_text(json.dumps(sealed))
    app = OposApp(home, "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await until(pilot, lambda: bool(text_of(app.screen, "#oauth-signed-in")))
        assert text_of(app.screen, "#oauth-signed-in") == "Not signed in · Ctrl+O signs in"
        shown = text_of(app.screen, "#oauth-cache")
        assert "sign-in required: run `opos-tui oauth login`" in shown
        assert "is encrypted and cannot be opened: no system keyring is available" in shown
    assert json.loads(cache_file(home).read_text()) == sealed
