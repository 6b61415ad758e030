"""Real `opos-tui send` processes on one queue: two at once send each mail once; `kill -9` in the middle of a
batch, again and again, loses nothing and sends nothing twice (mails in doubt are `uncertain`). Every test runs
on both queue engines: the home's SQLite file and a PostgreSQL database (``queue.url``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import pty
import queue
import signal
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import plausibility, settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Recipient, Status, open_queue
from tests.conftest import Cli, send_process
from tests.pdfs import write_letter
from tests.servers.smtp import HOST, LocalController, StartServer, ehlo
from tests.test_send import configure


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request: pytest.FixtureRequest, home: Home) -> Home:
    if request.param == "postgresql":
        settings.set_value(home, "queue.url", request.getfixturevalue("postgresql_url"))
    return home


def fill(cli: Cli, tmp_path: Path, count: int, first_to: str = "") -> list[int]:
    """``count`` dunning letters that pass the plausibility check (the first to ``first_to`` if given)."""
    ids = []
    for n in range(count):
        pdf = write_letter(tmp_path / f"Mahnung_{n}.pdf", f"M-{n}")
        to = first_to if first_to and n == 0 else f"kunde{n}@aerger.example"
        result = cli(
            "enqueue", "--type", "dunning", "--level", "1", "--to", to, "--attach", str(pdf),
            "--subject", f"Mahnung {n}", "--body", "Bitte zahlen.", "--var", f"document_number=M-{n}", "--json",
        )  # fmt: skip
        assert result.code == 0, result.err
        ids.append(json.loads(result.out)["id"])
    return ids


class HoldingHandler:
    """Receives mails like any server, but on request holds back its 250 after the data arrived: the moment
    in which a sender that dies leaves a mail in doubt. ``hold_mail = n`` holds the reply to the n-th mail of
    each connection (a sender process uses one), chosen before the process starts, so no race decides which."""

    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.received: list[Any] = []
        self.hold_mail: int | None = None
        self.data_arrived = threading.Event()
        self.release = threading.Event()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return ehlo(session, hostname, responses, self.pipelining)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(types.SimpleNamespace(content=bytes(envelope.original_content or b"")))
        session.mails = getattr(session, "mails", 0) + 1
        if session.mails == self.hold_mail:
            self.data_arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return "250 2.0.0 Ok: queued"


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def holding_server(request: pytest.FixtureRequest) -> Iterator[tuple[Any, HoldingHandler]]:
    """A holding server, one that takes each command as it comes and one that offers PIPELINING (RFC 2920)."""
    handler = HoldingHandler(pipelining=request.param)
    controller = LocalController(handler, server_hostname="mail.example.test")
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


def sent_once_or_in_doubt(items: dict[int, Any], counts: collections.Counter[str]) -> collections.Counter[Status]:
    """Nothing sent twice: each sent item arrived once, each ``uncertain`` one at most once and says so. The
    items per status."""
    assert max(counts.values()) == 1
    for item in items.values():
        if item.status is Status.SENT:
            assert counts[item.message_id] == 1
        elif item.status is Status.UNCERTAIN:  # killed with its data on the wire: in doubt, and said so
            assert counts[item.message_id] <= 1
            assert "may have arrived" in (item.error or "")
    return collections.Counter(item.status for item in items.values())


def test_two_senders_send_each_mail_once(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    # The oldest mail goes to a recipient whose 250 the server holds back: the sender that claimed it waits
    # there, so the other one must send every other mail, and must not take that one.
    ids = fill(cli, tmp_path, 60, first_to="slow@aerger.example")
    senders = [send_process(home), send_process(home)]
    ended: queue.Queue[int] = queue.Queue()
    outs: dict[int, tuple[str, str]] = {}

    def wait_for(n: int) -> None:
        outs[n] = senders[n].communicate(timeout=120)
        ended.put(n)

    for n in (0, 1):
        threading.Thread(target=wait_for, args=(n,), daemon=True).start()
    assert server.holding.wait(60)
    other = ended.get(timeout=120)  # the one not held ends first, with nothing left it may take
    server.gate.set()
    held = ended.get(timeout=120)
    assert [senders[other].returncode, senders[held].returncode] == [0, 0], outs
    assert outs[other][0].count(" sent: 250") == 59 and outs[held][0].count(" sent: 250") == 1, outs
    with open_queue(home) as q:
        assert q.counts()[Status.SENT] == 60
        message_ids = {q.get(i).message_id for i in ids}
    counts = received_ids(server)
    assert set(counts) == message_ids
    assert max(counts.values()) == 1


def test_kill_9_mid_batch_repeatedly_loses_nothing_and_sends_nothing_twice(
    cli: Cli, home: Home, holding_server, tmp_path: Path
) -> None:
    server, handler = holding_server
    configure(cli, home, server, **{"smtp.max_per_minute": "1500", "smtp.ca_file": ""})
    ids = fill(cli, tmp_path, 30)
    # Kill after some mails went (between two mails), and while the server holds back its 250 for a mail
    # whose data it already has (the mail is in doubt).
    for kill_after, mid_mail in ((2, False), (1, True), (3, True), (1, False), (2, True)):
        handler.release.clear()
        handler.data_arrived.clear()
        handler.hold_mail = kill_after + 1 if mid_mail else None  # the mail after those we wait for
        process = send_process(home)
        assert process.stdout is not None
        seen = 0
        for line in process.stdout:  # the process's own report of each sent mail
            seen += " sent: " in line
            if seen >= kill_after:
                break
        if mid_mail:
            assert handler.data_arrived.wait(30)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        handler.release.set()
        assert process.returncode == -signal.SIGKILL
    handler.hold_mail = None
    final = send_process(home)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    with open_queue(home) as q:
        items = {i: q.get(i) for i in ids}  # nothing lost: every item is still there
    statuses = sent_once_or_in_doubt(items, received_ids(server.handler))
    assert set(statuses) == {Status.SENT, Status.UNCERTAIN}, statuses
    assert statuses[Status.UNCERTAIN] >= 3  # the three kills with a mail on the wire
    assert cli("retry", "--all").code == 0  # the operator decides to resend those in doubt
    assert cli("send").code == 0
    with open_queue(home) as q:
        assert q.counts()[Status.SENT] == 30


@pytest.mark.parametrize("connections", [1, 4])
def test_kill_9_while_the_next_mails_are_announced_leaves_at_most_one_in_doubt_per_connection(
    cli: Cli, home: Home, holding_server: Any, tmp_path: Path, connections: int
) -> None:
    """As above, with mails that passed the plausibility check and no rate limit, so that where the server offers
    PIPELINING each connection has its next mail announced while the server holds a reply: that mail is not
    taken yet (nothing of its data is complete), so a kill leaves at most one mail per connection in doubt."""
    server, handler = holding_server
    configure(cli, home, server, **{"smtp.connections": str(connections), "smtp.ca_file": ""})
    ids = fill(cli, tmp_path, 40)
    with open_queue(home) as q:
        assert all(verdict.ok for verdict in plausibility.check_items(q, ids).values())
    for hold in (2, 1, 3):
        handler.release.clear()
        handler.data_arrived.clear()
        handler.hold_mail = hold  # each connection's hold-th mail
        process = send_process(home)
        assert handler.data_arrived.wait(30)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        handler.release.set()
        with open_queue(home) as q:
            assert q.counts()[Status.SENDING] <= connections
    handler.hold_mail = None
    final = send_process(home)
    _, err = final.communicate(timeout=120)
    assert final.returncode in (0, 1), err

    with open_queue(home) as q:
        items = {i: q.get(i) for i in ids}
    statuses = sent_once_or_in_doubt(items, received_ids(handler))
    assert set(statuses) <= {Status.SENT, Status.UNCERTAIN} and 3 <= statuses[Status.UNCERTAIN] <= 3 * connections


def test_two_senders_on_a_deferring_server_try_each_mail_once_per_run(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    busy, *good = fill(cli, tmp_path, 12)
    with open_queue(home) as q:
        q.set_recipients(busy, [Recipient("to", "data-busy@aerger.example")])  # 451 after every DATA
    named = [str(i) for i in (busy, *good)]
    first, second = send_process(home, *named, "--json"), send_process(home, *named, "--json")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode in (0, 1) and second.returncode in (0, 1), outs
    reports = [json.loads(out) for out, _ in outs]
    sent = [i for r in reports for i in r["sent"]]
    assert sorted(sent) == sorted(good)  # each went once, by one of them
    assert max(received_ids(server).values()) == 1
    deferred = [i for r in reports for i in r["deferred"]]
    assert deferred in ([busy], [busy, busy])  # at most once per run, never hammered
    with open_queue(home) as q:
        assert q.get(busy).attempts == len(deferred) and q.get(busy).status is Status.DEFERRED


@pytest.mark.parametrize(
    ("stop", "code", "said"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_sigterm_stops_send_as_cleanly_as_ctrl_c(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path, stop: signal.Signals, code: int, said: str
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server, **{"smtp.timeout": "60"})
    first, slow, last = fill(cli, tmp_path, 3)
    with open_queue(home) as q:
        q.set_recipients(slow, [Recipient("to", "slow@aerger.example")])  # the server holds its reply
    # On a terminal, as an operator runs it: the progress line is rewritten with \r.
    leader, follower = pty.openpty()
    process = send_process(
        home, stdout=follower, stderr=follower, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    os.close(follower)
    output = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the process is gone
            while data := os.read(leader, 4096):
                output.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    assert server.holding.wait(60)  # the second mail's data is at the server, its reply held
    process.send_signal(stop)
    assert process.wait(timeout=60) == code
    reader.join(timeout=60)
    os.close(leader)

    shown = output.decode().replace("\r\n", "\n")
    assert "\n1 sent, 0 deferred, 0 failed, 1 uncertain, 1 left pending\n" in shown  # a line of its own
    assert f"\n{said}\n" in shown and "Traceback" not in shown
    assert "\rsent 1, failed 0, left 2" in shown and "/min" not in shown  # one mail is no measure of a rate
    with open_queue(home) as q:
        assert q.get(first).status is Status.SENT
        doubt = q.get(slow)
        assert doubt.status is Status.UNCERTAIN and "interrupted while this mail was being sent" in (doubt.error or "")
        assert q.get(last).status is Status.PENDING and q.get(last).attempts == 0
        assert q.counts()[Status.SENDING] == 0
    assert len(server.received) == 2
