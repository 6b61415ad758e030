"""`opos-tui doctor` against a healthy set-up (real aiosmtpd with STARTTLS and login, a real queue file) and
against each fault it names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import doctor, settings
from opos_tui.services.compose import LetterRequest, prepare
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import Cli
from tests.pdfs import write_letter
from tests.servers.smtp import PASSWORD, USER, SmtpServer, StartServer, free_port


def set_up(cli: Cli, home: Home, server: SmtpServer, password: str = PASSWORD, **values: Any) -> None:
    home.ensure()
    settings.save(home, server.settings(auth__method="password", auth__profile=USER, **values))
    assert cli("config", "set-password", "--stdin", stdin=password + "\n").code == 0


def queue_letters(home: Home, tmp_path: Path, count: int) -> list[int]:
    current = settings.load(home)
    ids = []
    with open_queue(home) as queue:
        for n in range(1, count + 1):
            pdf = write_letter(tmp_path / f"M{n}.pdf", f"M-{n}")
            request = LetterRequest(
                type="dunning", to=["kunde@kunde.example"], attachments=[pdf],
                vars={"customer_name": "Kunde", "document_number": f"M-{n}"},
            )  # fmt: skip
            ids.append(queue.enqueue(prepare(current, request)).id)
    return ids


def doctor_json(cli: Cli) -> tuple[int, dict[str, dict[str, str]], bool]:
    result = cli("doctor", "--json")
    data = json.loads(result.out)
    checks = {c["name"]: c for c in data["checks"]}
    assert set(next(iter(checks.values()))) == {"name", "status", "detail", "fix"}
    return result.code, checks, data["ok"]


def problems(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items() if c["status"] != "OK"}


def test_a_healthy_installation_is_all_ok(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    set_up(cli, home, smtp_server("starttls"))
    queue_letters(home, tmp_path, 2)
    code, checks, ok = doctor_json(cli)
    assert (code, ok, problems(checks)) == (0, True, {})
    assert list(checks) == [
        "settings", "secret store", "password", "smtp dns", "smtp tcp", "smtp tls", "smtp login", "smtp certificate",
        "queue integrity", "queue counts", "oldest pending", "stale sending", "uncertain", "disk space", "spool inbox",
    ]  # fmt: skip
    assert "pending 2" in checks["queue counts"]["detail"]
    assert "encrypted (StartTls)" in checks["smtp tls"]["detail"]
    assert "3000-01-01" in checks["smtp certificate"]["detail"]
    assert PASSWORD not in json.dumps(checks)
    human = cli("doctor")
    assert human.code == 0
    assert human.out.splitlines()[0].split() == ["OK", "settings", "valid", f"({home.config_file})"]


def test_wrong_password(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"), password="falsch")
    code, checks, ok = doctor_json(cli)
    assert (code, ok, problems(checks)) == (1, False, {"smtp login": "FAIL"})
    assert "535" in checks["smtp login"]["detail"]
    assert "set-password" in checks["smtp login"]["fix"]
    assert "falsch" not in json.dumps(checks)


def test_untrusted_certificate(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls", cert="untrusted"))
    code, checks, _ = doctor_json(cli)
    assert (code, problems(checks)) == (1, {"smtp tls": "FAIL"})
    assert "smtp.ca_file" in checks["smtp tls"]["fix"]


def test_nothing_listening(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"), smtp__port=free_port())
    code, checks, _ = doctor_json(cli)
    assert (code, problems(checks)) == (1, {"smtp tcp": "FAIL"})
    assert "smtp.port" in checks["smtp tcp"]["fix"]
    assert "smtp login" not in checks


def test_a_host_that_does_not_resolve(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"), smtp__host="mail.invalid")
    code, checks, _ = doctor_json(cli)
    assert (code, problems(checks)) == (1, {"smtp dns": "FAIL"})


def test_a_certificate_about_to_expire_is_a_warning(home: Home, cli: Cli, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"))
    soon = datetime(3000, 1, 1, tzinfo=UTC) - timedelta(days=12)
    checks = {c.name: c for c in asyncio.run(doctor.run_checks(home, now=soon))}
    assert checks["smtp certificate"].status is doctor.Level.WARN
    assert "in 12 days" in checks["smtp certificate"].detail


def test_stale_sending(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    """A sender that died with a mail on the wire: a real process claims an item and exits."""
    set_up(cli, home, smtp_server("starttls"))
    (item,) = queue_letters(home, tmp_path, 1)
    crash = (
        "import os, sys\nfrom pathlib import Path\nfrom opos_tui.services.queue import SqliteQueue\n"
        "q = SqliteQueue(Path(sys.argv[1]))\nassert q.claim() is not None\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(home.queue_db)], check=True)
    with open_queue(home) as queue:
        assert queue.get(item).status is Status.SENDING
    code, checks, ok = doctor_json(cli)
    assert (code, ok) == (0, True)  # warnings only
    assert problems(checks) == {"stale sending": "WARN", "uncertain": "WARN"}
    assert f"#{item}" in checks["stale sending"]["detail"]
    assert "mark-sent" in checks["uncertain"]["fix"]


def test_a_corrupt_database_file(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"))
    home.queue_db.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    code, checks, _ = doctor_json(cli)
    assert code == 1
    assert problems(checks) == {"queue file": "FAIL"}
    assert "restore" in checks["queue file"]["fix"]


def test_a_damaged_page_inside_the_database(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    set_up(cli, home, smtp_server("starttls"))
    queue_letters(home, tmp_path, 40)
    size = home.queue_db.stat().st_size
    with home.queue_db.open("r+b") as db:
        db.seek(size - 3 * 4096)
        db.write(b"\xff" * 4096)
    code, checks, _ = doctor_json(cli)
    assert code == 1
    assert problems(checks) == {"queue integrity": "FAIL"}
    assert ".recover" in checks["queue integrity"]["fix"]


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """The folder really refuses new files: by its mode, or for root (who ignores modes) immutable."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        undo = ["chmod", "700", str(folder)]
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("running as root without chattr: no way to make a folder unwritable")
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


def test_an_unwritable_spool(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"))
    inbox = home.spool_dir / "inbox"
    inbox.mkdir(parents=True)
    with unwritable(inbox):
        code, checks, _ = doctor_json(cli)
    assert (code, problems(checks)) == (1, {"spool inbox": "FAIL"})
    assert "chmod" in checks["spool inbox"]["fix"]


def test_a_secret_file_others_can_read_and_a_missing_password(cli: Cli, home: Home, smtp_server: StartServer) -> None:
    set_up(cli, home, smtp_server("starttls"))
    home.secrets_file.chmod(0o644)
    code, checks, _ = doctor_json(cli)
    assert (code, problems(checks)) == (1, {"secret store": "FAIL"})
    assert checks["secret store"]["fix"] == f"chmod 600 {home.secrets_file}"
    assert cli("config", "delete-secret", "auth.password").code == 0
    code, checks, _ = doctor_json(cli)
    assert problems(checks)["password"] == "FAIL"


def test_invalid_settings(cli: Cli, home: Home) -> None:
    home.ensure()
    home.config_file.write_text("[smtp]\nport = 0\n")
    code, checks, _ = doctor_json(cli)
    assert code == 1
    assert checks["settings"]["status"] == "FAIL"
    assert "smtp.port" in checks["settings"]["detail"]
