"""What the environment can do to a command (a read-only or locked queue, a folder that is not writable,
``--home`` naming a file): one clear line, exit 1 or 2, never a traceback. Real files, real modes, real
processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opos_tui.services import settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.queue import sqlite as queue_module
from tests.conftest import Cli
from tests.pdfs import write_letter
from tests.servers.smtp import StartServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def file_modes_apply() -> list[str]:
    """A command prefix under which file modes are obeyed: root ignores them unless it gives up the
    capabilities that override them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def run(home: Home, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPOS_TUI_HOME": str(home.root), "OPOS_TUI_SECRETS": "file"}
    return subprocess.run(
        [*file_modes_apply(), sys.executable, "-m", "opos_tui", *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def one_clear_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def enqueue_args(pdf: Path) -> list[str]:
    return [
        "enqueue",
        "--type",
        "dunning",
        "--to",
        "kunde@example.test",
        "--attach",
        str(pdf),
        "--var",
        "customer_name=Kunde GmbH",
        "--var",
        "document_number=R-1",
    ]


@pytest.fixture
def queued(cli: Cli, home: Home, tmp_path: Path, smtp_server: StartServer) -> Iterator[Path]:
    """One pending letter in the queue, settings pointing at a real local server; the PDF to queue more."""
    home.ensure()
    settings.save(home, smtp_server("plain").settings())
    pdf = write_letter(tmp_path / "Mahnung.pdf", "R-1", customer="Kunde GmbH")
    assert cli(*enqueue_args(pdf)).code == 0
    yield pdf
    home.root.chmod(0o700)
    home.queue_db.chmod(0o600)


WRITERS = [["hold", "1"], ["retry", "--all"], ["delete", "1", "--yes"], ["send", "1"]]


def test_a_read_only_queue_file_is_one_line_and_exit_1(home: Home, queued: Path) -> None:
    home.queue_db.chmod(0o400)
    for argv in [*WRITERS, enqueue_args(queued)]:
        one_clear_line(run(home, *argv), 1, str(home.queue_db), "permissions")
    listed = run(home, "queue")  # reading still works
    assert listed.returncode == 0, listed.stderr
    home.queue_db.chmod(0o600)
    with open_queue(home) as q:
        assert [(r.id, r.status) for r in q.page()] == [(1, Status.PENDING)]


def test_a_home_folder_that_is_not_writable_is_one_line_and_exit_1(home: Home, queued: Path) -> None:
    before = home.config_file.read_bytes()
    home.root.chmod(0o500)
    for argv in [*WRITERS, ["queue"]]:
        one_clear_line(run(home, *argv), 1, str(home.queue_db), "permissions")
    one_clear_line(run(home, "config", "set", "smtp.port", "2525"), 1, str(home.config_file))
    one_clear_line(run(home, "import"), 1, "Permission denied", str(home.spool_dir))
    home.root.chmod(0o700)
    assert home.config_file.read_bytes() == before
    assert not list(home.root.glob(".*.tmp"))


def test_a_queue_locked_by_another_process_is_one_line_and_exit_1(
    cli: Cli, home: Home, queued: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "BUSY_TIMEOUT_MS", 200)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('PRAGMA locking_mode = EXCLUSIVE')\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(home.queue_db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        for argv in [["hold", "1"], ["queue"], enqueue_args(queued)]:
            result = cli(*argv)
            assert result.code == 1, result.err
            assert result.err.strip().splitlines() == [
                f"opos-tui: the queue {home.queue_db} is locked by another process (waited 0.2 s): try again later"
            ]
    finally:
        holder.communicate("")
    assert cli("hold", "1").code == 0


def test_a_queue_file_that_is_no_queue_is_one_line_and_exit_1(cli: Cli, home: Home) -> None:
    home.ensure()
    home.queue_db.write_bytes(b"this is a spreadsheet, not a queue\n" * 200)
    result = cli("queue")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"opos-tui: {home.queue_db} is not an opos-tui queue or is damaged (file is not a database)"
    ]


@pytest.mark.parametrize("below", [False, True])
def test_home_naming_a_file_is_bad_input(home: Home, tmp_path: Path, below: bool) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    target = a_file / "opos" if below else a_file
    for argv in (["queue"], ["hold", "1"], ["config", "show"], ["config", "set", "smtp.port", "25"], ["settings"]):
        result = run(home, "--home", str(target), *argv)
        one_clear_line(result, 2, str(target), f"{a_file} is a file")
    assert a_file.read_text() == "not a folder\n"
