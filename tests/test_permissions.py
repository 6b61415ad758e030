"""What the installation writes is owner-only (files 0600, folders 0700), whatever the umask; in a home folder an
admin shared with a group (setgid and group-writable, chmod 2770) it is shared with that group instead."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from opos_tui.services.home import Home
from opos_tui.services.queue import open_queue
from tests.conftest import Cli
from tests.pdfs import write_letter


@pytest.fixture(autouse=True)
def _permissive_umask() -> Iterator[None]:
    # A umask that would let the world read what the program makes unless it chooses the modes itself.
    old = os.umask(0o002)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def use_everything(cli: Cli, home: Home, tmp_path: Path) -> None:
    """config.toml, secrets.toml, queue.db, the spool with done/ and rejected/ and an error.txt."""
    assert cli("config", "set", "sender.address", "buchhaltung@mueller.example").code == 0
    assert cli("config", "set-password", "--stdin", stdin="geheim\n").code == 0
    letter = write_letter(tmp_path / "Avis.pdf", "A-1")
    argv = ["--type", "payment-advice", "--to", "kunde@example.com", "--attach", str(letter)]
    assert cli("enqueue", *argv, "--var", "customer_name=K", "--var", "document_number=A-1").code == 0
    inbox = home.spool_dir / "inbox"
    assert cli("import").code == 0  # makes the inbox
    write_letter(inbox / "B.pdf", "B-1")
    good = {"type": "payment-advice", "to": ["kunde@example.com"], "attachments": ["B.pdf"]}
    (inbox / "good.json").write_text(json.dumps({**good, "vars": {"customer_name": "K", "document_number": "B-1"}}))
    (inbox / "bad.json").write_text(json.dumps({**good, "type": "invoice", "attachments": []}))
    assert cli("import").code == 1


def files_made(home: Home) -> tuple[list[Path], list[Path]]:
    inbox = home.spool_dir / "inbox"
    files = [home.config_file, home.secrets_file, home.queue_db, inbox / "rejected" / "bad.error.txt"]
    folders = [home.root, home.spool_dir, inbox, inbox / "done", inbox / "rejected"]
    return files, folders


def test_everything_written_is_owner_only(cli: Cli, home: Home, tmp_path: Path) -> None:
    use_everything(cli, home, tmp_path)
    files, folders = files_made(home)
    with open_queue(home) as q:
        q.hold(q.ids())  # a write: SQLite makes -wal and -shm (removed again when the last one closes)
        files += [Path(f"{home.queue_db}-wal"), Path(f"{home.queue_db}-shm")]
        assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
    assert {str(f): mode(f) for f in folders} == {str(f): 0o700 for f in folders}


def test_a_home_shared_with_a_group_shares_what_is_written(cli: Cli, home: Home, tmp_path: Path) -> None:
    home.root.mkdir()
    # What an admin does: chgrp the folder to the operators' group (here one that is not our own), chmod 2770.
    group = next((g for g in os.getgroups() if g != os.getegid()), 65534 if os.geteuid() == 0 else os.getegid())
    os.chown(home.root, -1, group)
    os.chmod(home.root, 0o2770)
    use_everything(cli, home, tmp_path)
    files, folders = files_made(home)
    with open_queue(home) as q:
        q.hold(q.ids())
        files += [Path(f"{home.queue_db}-wal"), Path(f"{home.queue_db}-shm")]
        assert {str(f): mode(f) for f in files} == {str(f): 0o660 for f in files}
        assert {os.stat(f).st_gid for f in files + folders} == {group}
    assert {str(f): mode(f) for f in folders} == {str(f): 0o2770 for f in folders}


def test_a_queue_an_earlier_version_left_readable_is_narrowed(home: Home) -> None:
    home.root.mkdir(mode=0o700)
    open_queue(home).close()
    home.queue_db.chmod(0o644)
    with open_queue(home) as q:
        q.hold([])
        assert mode(home.queue_db) == 0o600
        assert mode(Path(f"{home.queue_db}-wal")) == 0o600
