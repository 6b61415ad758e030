"""`opos-tui run`: real subprocesses against a real mail server (STARTTLS, login), stopped with SIGTERM in
the middle of a batch; the lock; the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

from opos_tui.services import settings
from opos_tui.services.compose import LetterRequest, prepare
from opos_tui.services.home import Home
from opos_tui.services.logs import log_file
from opos_tui.services.queue import Status, open_queue
from tests.conftest import Cli, mode_of
from tests.pdfs import write_letter
from tests.servers.smtp import PASSWORD, USER, SmtpServer, StartServer


def set_up(cli: Cli, home: Home, server: SmtpServer, password: str = PASSWORD) -> None:
    home.ensure()
    settings.save(home, server.settings(auth__method="password", auth__profile=USER, smtp__timeout=120))
    assert cli("config", "set-password", "--stdin", stdin=password + "\n").code == 0


def queue_to(home: Home, tmp_path: Path, *recipients: str) -> list[int]:
    current = settings.load(home)
    ids = []
    with open_queue(home) as queue:
        for n, to in enumerate(recipients, start=1):
            pdf = write_letter(tmp_path / f"M{n}.pdf", f"M-{n}")
            request = LetterRequest(
                type="dunning", to=[to], attachments=[pdf], vars={"customer_name": "Kunde", "document_number": f"M-{n}"}
            )
            ids.append(queue.enqueue(prepare(current, request)).id)
    return ids


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM")}
    return {**env, "OPOS_TUI_SECRETS": "file", "LANG": "C.UTF-8", **extra}


def run_once(home: Home, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opos_tui", "--home", str(home.root), "run", "--once"],
        env=environment(**extra), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll for a state another process reaches (no fixed sleeps): fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def statuses(home: Home) -> dict[int, tuple[Status, int]]:
    with open_queue(home) as queue:
        return {r.id: (r.status, r.attempts) for r in queue.page(limit=100)}


def log_text(home: Home) -> str:
    return log_file(home).read_text("utf-8") if log_file(home).exists() else ""


def test_sigterm_in_the_middle_of_a_batch_loses_nothing_and_a_second_run_is_refused(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("starttls")
    set_up(cli, home, server)
    ids = queue_to(home, tmp_path, "a@kunde.example", "slow@kunde.example", "c@kunde.example", "d@kunde.example")
    running = subprocess.Popen(
        [sys.executable, "-m", "opos_tui", "--home", str(home.root), "run", "--interval", "3600"],
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The second mail's data has arrived; the server holds its reply: it is on the wire.
        wait_for(lambda: len(server.received) == 2, "the second mail on the wire")
        second = run_once(home)
        assert second.returncode == 1
        assert f"already running for {home.root} (pid {running.pid})" in second.stderr
        running.send_signal(signal.SIGTERM)
        wait_for(lambda: "stop requested (SIGTERM)" in log_text(home), "the stop to be logged")
        server.gate.set()  # the mail on the wire gets its reply; nothing after it starts
        assert running.wait(timeout=60) == 0, running.stderr.read() if running.stderr else ""
    finally:
        server.gate.set()
        if running.poll() is None:
            running.kill()
            running.wait()
    assert statuses(home) == {
        ids[0]: (Status.SENT, 1),
        ids[1]: (Status.SENT, 1),
        ids[2]: (Status.PENDING, 0),
        ids[3]: (Status.PENDING, 0),
    }
    assert len(server.received) == 2
    log = log_text(home)
    assert f"#{ids[1]} sent to slow@kunde.example: 250 2.0.0 Ok: queued as 4F2A1" in log
    assert "round: 0 imported, 0 rejected; 2 sent, 0 deferred, 0 failed, 0 uncertain" in log
    assert "run stopped (SIGTERM)" in log

    # The rest goes with the next run, each mail once; the lock was released with the process.
    assert run_once(home).returncode == 0
    assert {s for s, _ in statuses(home).values()} == {Status.SENT}
    message_ids = [message_from_bytes(r.content)["Message-ID"] for r in server.received]
    assert len(message_ids) == len(set(message_ids)) == 4
    assert mode_of(log_file(home)) == 0o600
    assert PASSWORD not in log_text(home)


def test_run_imports_the_spool_logs_to_stderr_under_systemd_and_never_a_secret(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("starttls")
    set_up(cli, home, server)
    inbox = home.spool_dir / "inbox"
    inbox.mkdir(parents=True)
    write_letter(inbox / "Mahnung_K1.pdf", "R-0001")
    manifest = {
        "type": "dunning", "to": ["kunde@kunde.example"], "attachments": ["Mahnung_K1.pdf"],
        "vars": {"customer_name": "Kunde", "document_number": "R-0001"},
    }  # fmt: skip
    (inbox / "K1.json").write_text(json.dumps(manifest))
    done = run_once(home, INVOCATION_ID="0123456789abcdef", JOURNAL_STREAM="8:12345")
    assert done.returncode == 0, done.stderr
    assert "INFO imported K1.json as #1" in done.stderr
    assert "INFO #1 sent to kunde@kunde.example: 250 2.0.0 Ok" in done.stderr
    assert "imported K1.json as #1" in log_text(home)
    assert len(server.received) == 1

    # A refused login: the run stops, the mail stays pending, the log says why, and shows no password.
    set_up(cli, home, server, password="Falsch-und-geheim")
    queue_to(home, tmp_path, "zwei@kunde.example")
    failed = run_once(home)
    assert failed.returncode == 1
    assert "535 5.7.8" in log_text(home)
    assert failed.stderr == ""  # not under systemd: the log file only
    for secret in (PASSWORD, "Falsch-und-geheim"):
        assert secret not in log_text(home)
    assert [s for s, _ in statuses(home).values()].count(Status.PENDING) == 1
