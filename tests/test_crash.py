"""Real `opos-tui send` processes on one queue: two at once send each mail once; `kill -9` in the middle of a
batch, again and again, loses nothing and sends nothing twice (mails in doubt are `uncertain`)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import Cli
from tests.pdfs import write_letter
from tests.servers.smtp import HOST, StartServer, free_port
from tests.test_send import configure

ROOT = Path(__file__).resolve().parents[1]


def send_process(home: Home, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OPOS_TUI_HOME": str(home.root),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "opos_tui", "send", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def fill(cli: Cli, tmp_path: Path, count: int) -> list[int]:
    pdf = write_letter(tmp_path / "Mahnung.pdf", "M-1")
    ids = []
    for n in range(count):
        result = cli(
            "enqueue", "--type", "dunning", "--level", "1", "--to", f"kunde{n}@aerger.example", "--attach", str(pdf),
            "--subject", f"Mahnung {n}", "--body", "Bitte zahlen.", "--json",
        )  # fmt: skip
        assert result.code == 0, result.err
        ids.append(json.loads(result.out)["id"])
    return ids


class HoldingHandler:
    """Receives mails like any server, but on request holds back its 250 after the data arrived: the moment
    in which a sender that dies leaves a mail in doubt."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.hold_next = threading.Event()
        self.data_arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(types.SimpleNamespace(content=bytes(envelope.original_content or b"")))
        if self.hold_next.is_set():
            self.hold_next.clear()
            self.data_arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def holding_server() -> Iterator[tuple[Any, HoldingHandler]]:
    handler = HoldingHandler()
    controller = Controller(handler, hostname=HOST, port=free_port(), server_hostname="mail.example.test")
    controller.start()
    server = types.SimpleNamespace(host=HOST, port=controller.port, mode="plain", ca_file="", handler=handler)
    yield server, handler
    handler.release.set()
    controller.stop()


def received_ids(server: Any) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for message in server.received:
        for line in message.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                counts[line.split(b":", 1)[1].strip().decode()] += 1
    return counts


def test_two_senders_send_each_mail_once(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    ids = fill(cli, tmp_path, 60)
    first, second = send_process(home), send_process(home)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    with open_queue(home) as q:
        assert q.counts()[Status.SENT] == 60
        message_ids = {q.get(i).message_id for i in ids}
    counts = received_ids(server)
    assert set(counts) == message_ids
    assert max(counts.values()) == 1
    # both really worked on the queue (each printed the mails it sent)
    assert all(out.count(" sent: 250") > 0 for out, _ in outs)


def test_kill_9_mid_batch_repeatedly_loses_nothing_and_sends_nothing_twice(
    cli: Cli, home: Home, holding_server, tmp_path: Path
) -> None:
    server, handler = holding_server
    configure(cli, home, server, **{"smtp.max_per_minute": "1500", "smtp.ca_file": ""})
    ids = fill(cli, tmp_path, 30)
    # Kill after some mails went (between two mails), and while the server holds back its 250 for a mail
    # whose data it already has (the mail is in doubt).
    for kill_after, mid_mail in ((2, False), (1, True), (3, True), (1, False), (2, True)):
        process = send_process(home)
        assert process.stdout is not None
        seen = 0
        for line in process.stdout:  # the process's own report of each sent mail
            seen += " sent: " in line
            if seen >= kill_after:
                break
        if mid_mail:
            handler.release.clear()
            handler.data_arrived.clear()
            handler.hold_next.set()
            assert handler.data_arrived.wait(30)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        handler.release.set()
        assert process.returncode == -signal.SIGKILL
    final = send_process(home)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    with open_queue(home) as q:
        items = {i: q.get(i) for i in ids}  # nothing lost: every item is still there
    counts = received_ids(server.handler)
    assert max(counts.values()) == 1  # nothing sent twice
    statuses = collections.Counter(item.status for item in items.values())
    assert set(statuses) == {Status.SENT, Status.UNCERTAIN}, statuses
    assert statuses[Status.UNCERTAIN] >= 3  # the three kills with a mail on the wire
    for item in items.values():
        if item.status is Status.SENT:
            assert counts[item.message_id] == 1
        else:  # killed with its data on the wire: in doubt, and said so
            assert counts[item.message_id] <= 1
            assert "may have arrived" in (item.error or "")
    assert cli("retry", "--all").code == 0  # the operator decides to resend those in doubt
    assert cli("send").code == 0
    with open_queue(home) as q:
        assert q.counts()[Status.SENT] == 30
