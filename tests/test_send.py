"""`opos-tui send` and the dispatcher against real aiosmtpd servers: what arrives, what the queue says after
4xx, 5xx, refused logins, lost connections; umlauts and attachments intact."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import plausibility, secrets, settings
from opos_tui.services.compose import LetterRequest, prepare
from opos_tui.services.dispatcher import Dispatcher, Outcome, Progress, backoff
from opos_tui.services.errors import InteractionNeeded
from opos_tui.services.home import Home
from opos_tui.services.queue import NewItem, Recipient, Status, open_queue
from opos_tui.services.settings import RetrySettings
from opos_tui.services.transports.registry import build_transport
from tests.clock import HandClock
from tests.conftest import Cli, in_a_process, send_process
from tests.pdfs import write_letter
from tests.servers.smtp import PASSWORD, USER, StartServer, withholding_server


def configure(cli: Cli, home: Home, server: Any, **extra: str) -> None:
    """Point the installation at ``server`` through the real `config set` commands."""
    values = {
        "smtp.host": server.host,
        "smtp.port": str(server.port),
        "smtp.security": {"plain": "None", "starttls": "StartTls", "tls": "SslOnConnect"}[server.mode],
        "smtp.ca_file": str(server.ca_file),
        "smtp.timeout": "5",
        "sender.address": "buchhaltung@mueller.example",
        "sender.name": "Müller GmbH – Buchhaltung",
        **extra,
    }
    for key, value in values.items():
        result = cli("config", "set", key, value)
        assert result.code == 0, result.err


def enqueue(cli: Cli, tmp_path: Path, to: str, n: int = 1, *extra: str) -> int:
    pdf = write_letter(tmp_path / f"Mahnung_{n}_Jörg_Ärger.pdf", f"M-2024-{n:04d}", f"K{1000 + n}", "Jörg Ärger")
    result = cli(
        "enqueue", "--type", "dunning", "--level", "1", "--to", to, "--attach", str(pdf),
        "--var", "customer_name=Jörg Ärger & Söhne", "--var", f"document_number=M-2024-{n:04d}", "--json", *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    return int(json.loads(result.out)["id"])


def advice(current: settings.Settings, tmp_path: Path, n: int, to: str) -> NewItem:
    """Payment advice ``n`` whose PDF names its document, so that it passes the plausibility check."""
    pdf = write_letter(tmp_path / f"Avis_{n}.pdf", f"Z-{n}")
    vars = {"customer_name": "Ärger", "document_number": f"Z-{n}"}
    return prepare(current, LetterRequest("payment-advice", to=[to], attachments=[pdf], vars=vars))


def rows(cli: Cli) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(cli("queue", "--json").out)}


def parsed(content: bytes) -> EmailMessage:
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_send_over_starttls_with_login(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("starttls")
    configure(
        cli, home, server, **{"auth.method": "password", "auth.profile": USER, "sender.bcc": "archiv@mueller.example"}
    )
    assert cli("config", "set-password", "--stdin", stdin=PASSWORD + "\n").code == 0
    ids = [
        enqueue(cli, tmp_path, "Jörg Ärger <joerg@aerger.example>", n, "--cc", "Büro <buero@aerger.example>")
        for n in (1, 2)
    ]
    pdf = (tmp_path / "Mahnung_1_Jörg_Ärger.pdf").read_bytes()

    result = cli("send", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["ok"] is True and sorted(report["sent"]) == ids and report["left"] == 0

    assert len(server.received) == 2
    first = server.received[0]
    assert first.tls and first.user == USER
    assert first.mail_from == "buchhaltung@mueller.example"
    assert first.rcpt_tos == ["joerg@aerger.example", "buero@aerger.example", "archiv@mueller.example"]
    message = parsed(first.content)
    assert "archiv@mueller.example" not in first.content.decode("ascii")  # Bcc: envelope only
    assert message["Subject"] == "1. Mahnung M-2024-0001"
    assert message["From"] == "Müller GmbH – Buchhaltung <buchhaltung@mueller.example>"
    assert message["To"] == "Jörg Ärger <joerg@aerger.example>"
    body = message.get_body(("plain",))
    assert body is not None and "Jörg Ärger & Söhne" in body.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "Mahnung_1_Jörg_Ärger.pdf"
    assert attachment.get_content() == pdf  # byte-identical

    listed = rows(cli)
    assert {listed[i]["status"] for i in ids} == {"sent"}
    assert listed[ids[0]]["message_id"] == message["Message-ID"]
    assert listed[ids[0]]["sent_at"] and listed[ids[0]]["attempts"] == 1


def test_451_deferred_then_retry_then_sent(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    busy = enqueue(cli, tmp_path, "data-busy@aerger.example", 1)
    fine = enqueue(cli, tmp_path, "kunde@aerger.example", 2)
    result = cli("send")
    assert result.code == 1  # not all went
    listed = rows(cli)
    assert listed[fine]["status"] == "sent"
    assert listed[busy]["status"] == "deferred"
    assert listed[busy]["error"] == "451 4.3.0 try again later"
    with open_queue(home) as q:
        item = q.get(busy)
        assert item.next_attempt_at is not None
        wait = item.next_attempt_at - datetime.now(UTC)
        assert timedelta(minutes=4) < wait <= timedelta(minutes=5)  # the first backoff: 5 minutes
        message_id = item.message_id
        # the server is fine again: the operator moves the recipient, then retries at once
        assert cli("send").code == 0  # backoff not over: nothing to do, nothing failed
        assert q.get(busy).status is Status.DEFERRED
        q.set_recipients(busy, [r.__class__("to", "kunde2@aerger.example") for r in item.recipients[:1]])
    assert cli("retry", str(busy)).code == 0
    assert cli("send").code == 0
    listed = rows(cli)
    assert listed[busy]["status"] == "sent" and listed[busy]["attempts"] == 2 and listed[busy]["error"] is None
    assert parsed(server.received[-1].content)["Message-ID"] == message_id  # stable across retries


def test_550_fails_with_the_reply_and_refusals_per_recipient(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    gone = enqueue(cli, tmp_path, "unknown@aerger.example", 1)
    partly = enqueue(cli, tmp_path, "kunde@aerger.example", 2, "--cc", "unknown@aerger.example")
    rejected = enqueue(cli, tmp_path, "data-reject@aerger.example", 3)
    assert cli("send").code == 1
    listed = rows(cli)
    assert listed[gone]["status"] == "failed"
    assert listed[gone]["error"].startswith("550 5.1.1")
    assert listed[rejected]["status"] == "failed" and listed[rejected]["error"].startswith("554 5.6.0")
    assert listed[partly]["status"] == "sent"
    with open_queue(home) as q:
        recipients = {r.address: r.refused for r in q.get(partly).recipients}
    assert recipients["kunde@aerger.example"] is None
    assert (recipients["unknown@aerger.example"] or "").startswith("550 5.1.1")
    assert [r.rcpt_tos for r in server.received] == [["kunde@aerger.example"]]


def test_auth_failure_stops_the_run_and_fails_nothing(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("starttls")
    configure(cli, home, server, **{"auth.method": "password", "auth.profile": USER})
    assert cli("config", "set-password", "--stdin", stdin="Falsch-9876xyz\n").code == 0
    ids = [enqueue(cli, tmp_path, f"kunde{n}@aerger.example", n) for n in range(3)]
    result = cli("send", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["stopped"] and "535" in report["stopped"]
    assert report["failed"] == [] and report["left"] == 3
    listed = rows(cli)
    assert {listed[i]["status"] for i in ids} == {"pending"}
    assert {listed[i]["attempts"] for i in ids} == {0}
    assert server.received == []
    assert "Falsch-9876xyz" not in result.out + result.err


def test_unreachable_server_stops_the_run(cli: Cli, home: Home, tmp_path: Path) -> None:
    from tests.servers.smtp import free_port

    for key, value in (("smtp.host", "127.0.0.1"), ("smtp.port", str(free_port())), ("smtp.security", "None")):
        cli("config", "set", key, value)
    cli("config", "set", "sender.address", "buchhaltung@mueller.example")
    item = enqueue(cli, tmp_path, "kunde@aerger.example")
    result = cli("send")
    assert result.code == 1 and "refused" in result.err
    assert rows(cli)[item]["status"] == "pending"


def test_connection_lost_after_data_is_uncertain_never_resent(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    doubt = enqueue(cli, tmp_path, "vanish@aerger.example", 1)
    after = enqueue(cli, tmp_path, "kunde@aerger.example", 2)
    assert cli("send").code == 1
    listed = rows(cli)
    assert listed[doubt]["status"] == "uncertain" and listed[after]["status"] == "sent"
    assert cli("send").code == 0  # nothing resent by itself
    assert len(server.received) == 2
    assert cli("mark-sent", str(doubt)).code == 0
    assert rows(cli)[doubt]["status"] == "sent"


def test_send_given_items_only_and_held_ones_stay(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    a, b, c = (enqueue(cli, tmp_path, f"kunde{n}@aerger.example", n) for n in range(3))
    assert cli("hold", str(c)).code == 0
    assert cli("send", str(a)).code == 0
    assert [r.rcpt_tos for r in server.received] == [["kunde0@aerger.example"]]
    held = cli("send", str(c))
    assert held.code == 1 and f"#{c}" in held.err
    assert cli("send", "--all").code == 0
    listed = rows(cli)
    assert (listed[a]["status"], listed[b]["status"], listed[c]["status"]) == ("sent", "sent", "held")
    assert cli("send", "4711").code == 2


def test_give_up_after_days_and_backoff_doubles(cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    retry = RetrySettings()
    assert [backoff(retry, n) for n in (1, 2, 3, 4, 5, 9)] == [timedelta(minutes=m) for m in (5, 10, 20, 40, 60, 60)]
    server = smtp_server("plain")
    configure(cli, home, server)
    item = enqueue(cli, tmp_path, "busy@aerger.example")
    six_days_ago = datetime.now(UTC) - timedelta(days=6)
    with open_queue(home, clock=six_days_ago.timestamp) as q:  # the first attempt, six days ago
        assert q.claim() is not None
        q.record_deferred(item, "451 4.3.0 busy", retry_at=six_days_ago + backoff(retry, 1))
    assert rows(cli)[item]["status"] == "deferred"
    assert cli("send").code == 1
    row = rows(cli)[item]
    assert row["status"] == "failed"
    assert row["error"].startswith("451 4.3.0") and "5 days" in row["error"]


async def test_dispatcher_progress_parallel_connections_and_rate(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    current = settings.check(
        {
            "smtp": {"host": server.host, "port": server.port, "security": "None", "timeout": 5},
            "sender": {"address": "buchhaltung@mueller.example"},
        }
    )
    events: list[Progress] = []
    with open_queue(home) as q:
        for n in range(12):
            q.enqueue(advice(current, tmp_path, n, f"kunde{n}@aerger.example"))
        store = secrets.open_store(home)
        made: list[object] = []

        def factory() -> Any:
            transport = build_transport(current, store)
            made.append(transport)
            return transport

        engine = Dispatcher(q, factory, connections=3, max_per_minute=6000, on_progress=events.append)
        result = await engine.run()
        assert len(result.sent) == 12 and result.all_went
        assert len(made) == 3  # one session per connection, reused for all its mails
        assert q.counts()[Status.SENT] == 12
    assert len(server.received) == 12
    finished = [e for e in events if e.outcome is Outcome.SENT]
    assert [e.sent for e in finished] == list(range(1, 13))
    assert finished[-1].left == 0 and finished[-1].rate > 0 and finished[-1].eta == 0
    assert any(e.outcome is Outcome.SENDING and e.recipient.startswith("kunde") for e in events)


async def test_stop_request_ends_after_the_current_mail(home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("plain")
    current = server.settings()
    with open_queue(home) as q:
        for n in range(5):
            q.enqueue(advice(current, tmp_path, n, f"k{n}@aerger.example"))
        store = secrets.open_store(home)
        engine: Dispatcher

        def stop_after_two(event: Progress) -> None:
            if event.outcome is Outcome.SENT and event.sent == 2:
                engine.request_stop()

        engine = Dispatcher(q, lambda: build_transport(current, store), on_progress=stop_after_two)
        result = await engine.run()
        assert len(result.sent) == 2 and result.stopped is None
        assert q.counts()[Status.PENDING] == 3 and q.counts()[Status.SENDING] == 0
    assert len(server.received) == 2


def checked(q: Any, current: settings.Settings, tmp_path: Path, *to: str) -> list[int]:
    """Payment advices to ``to``, queued and past the plausibility check (as after the operator's review)."""
    ids = [q.enqueue(advice(current, tmp_path, n, address)).id for n, address in enumerate(to)]
    assert all(v.ok for v in plausibility.check_items(q, ids).values())
    return ids


@pytest.mark.parametrize("reviewed", [True, False], ids=["checked-before", "checked-on-the-way"])
async def test_a_run_announces_each_next_mail_with_the_end_of_the_last_ones_data(
    home: Home, tmp_path: Path, reviewed: bool
) -> None:
    """With PIPELINING the next mail's envelope goes with the end of the current one's data, on one session: the
    server here answers a mail only once the next one's MAIL came, so a run that waited would time out. A mail
    not checked before is checked (and passes) before it is announced."""
    async with withholding_server(3) as server:
        current = settings.check(
            {
                "smtp": {"host": "127.0.0.1", "port": server.port, "security": "None", "timeout": 5},
                "sender": {"address": "buchhaltung@mueller.example"},
            }
        )
        with open_queue(home) as q:
            to = ("k0@aerger.example", "k1@aerger.example", "k2@aerger.example")
            if reviewed:
                ids = checked(q, current, tmp_path, *to)
            else:
                ids = [q.enqueue(advice(current, tmp_path, n, address)).id for n, address in enumerate(to)]
            store = secrets.open_store(home)
            events: list[Progress] = []
            result = await Dispatcher(q, lambda: build_transport(current, store), on_progress=events.append).run()
            assert result.sent == ids and q.counts()[Status.SENT] == 3
    assert len(server.messages) == 3 and server.sessions == 1
    # Each mail is said to be sending before it is said to be sent, and the sent ones are counted one by one.
    said = [(e.outcome, e.item_id) for e in events]
    assert said == [(outcome, i) for i in ids for outcome in (Outcome.SENDING, Outcome.SENT)]
    assert [e.sent for e in events if e.outcome is Outcome.SENT] == [1, 2, 3]


async def test_every_connection_gets_a_mail_before_any_looks_ahead(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    """Four mails over three connections: each connection takes one before any looks at a next one, so all three
    are used (looking ahead first would have left the third with none)."""
    server = smtp_server("plain", pipelining=True)
    current = server.settings()
    with open_queue(home) as q:
        ids = checked(q, current, tmp_path, *(f"k{n}@aerger.example" for n in range(4)))
        store = secrets.open_store(home)
        made: list[object] = []

        def factory() -> Any:
            made.append(build_transport(current, store))
            return made[-1]

        result = await Dispatcher(q, factory, connections=3).run()
        assert sorted(result.sent) == ids
    assert len(made) == 3 and len(server.received) == 4


async def test_a_next_mail_that_fails_the_check_is_never_announced_but_held(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain", pipelining=True)
    current = server.settings()
    swapped_pdf = write_letter(tmp_path / "Avis_Andere.pdf", "Z-999")
    swapped_letter = LetterRequest(
        "payment-advice",
        to=["k1@aerger.example"],
        attachments=[swapped_pdf],
        vars={"customer_name": "Ärger", "document_number": "Z-1"},
    )
    with open_queue(home) as q:
        first = q.enqueue(advice(current, tmp_path, 0, "k0@aerger.example")).id
        swapped = q.enqueue(prepare(current, swapped_letter)).id
        last = q.enqueue(advice(current, tmp_path, 2, "k2@aerger.example")).id
        store = secrets.open_store(home)
        result = await Dispatcher(q, lambda: build_transport(current, store)).run()
        assert result.sent == [first, last] and result.held == [swapped]
        assert q.get(swapped).status is Status.HELD and q.get(swapped).attempts == 0
    assert [r.rcpt_tos for r in server.received] == [["k0@aerger.example"], ["k2@aerger.example"]]


async def hold_the_first_mail_then(home: Home, server: Any, tmp_path: Path, meanwhile: Any) -> tuple[Any, list[int]]:
    """A run of three mails whose first one the server holds (``slow@``) while the run has the second one
    announced; ``meanwhile(other_handle, ids)`` happens then, as another process would do it. The session with
    the second mail announced is dropped: the run makes two."""
    current = server.settings()
    with open_queue(home) as q:
        ids = checked(q, current, tmp_path, "slow@aerger.example", "k1@aerger.example", "k2@aerger.example")
        store = secrets.open_store(home)
        made: list[object] = []

        def factory() -> Any:
            made.append(build_transport(current, store))
            return made[-1]

        run = asyncio.create_task(Dispatcher(q, factory).run())
        assert await asyncio.to_thread(server.holding.wait, 10)
        with open_queue(home) as other:
            meanwhile(other, ids)
        server.gate.set()
        result = await run
    assert len(made) == 2
    return result, ids


async def test_an_announced_mail_taken_by_another_sender_meanwhile_is_left_to_it(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain", pipelining=True)
    seen: list[Any] = []

    def take_the_second(other: Any, ids: list[int]) -> None:
        assert other.claim([ids[1]]) is not None
        seen.append(other.get(ids[1]))

    result, ids = await hold_the_first_mail_then(home, server, tmp_path, take_the_second)
    assert result.sent == [ids[0], ids[2]] and result.uncertain == [] and result.failed == []
    assert [r.rcpt_tos for r in server.received] == [["slow@aerger.example"], ["k2@aerger.example"]]
    with open_queue(home) as q:
        assert q.get(ids[1]) == seen[0]  # the other sender's claim, untouched: nothing of this run on it


async def test_an_announced_mail_whose_recipients_change_meanwhile_goes_to_the_new_ones(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain", pipelining=True)

    def correct_the_second(other: Any, ids: list[int]) -> None:
        other.set_recipients(ids[1], [Recipient("to", "neu@aerger.example", "Neue Kundin")])

    result, ids = await hold_the_first_mail_then(home, server, tmp_path, correct_the_second)
    assert result.sent == ids
    assert [r.rcpt_tos for r in server.received] == [
        ["slow@aerger.example"],
        ["neu@aerger.example"],
        ["k2@aerger.example"],
    ]
    assert parsed(server.received[1].content)["To"] == "Neue Kundin <neu@aerger.example>"


async def test_two_runs_on_the_same_mails_send_each_once_and_stop_announcing_after_a_clash(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    """Two runs at once over the same queue (as two processes would): each mail goes once. A run whose announced
    mail the other one took drops that session and announces no more, so that it costs at most one session."""
    server = smtp_server("plain", pipelining=True)
    current = server.settings()
    with open_queue(home) as q, open_queue(home) as other:
        ids = checked(q, current, tmp_path, *(f"k{n}@aerger.example" for n in range(16)))
        store = secrets.open_store(home)
        made: list[list[object]] = [[], []]

        def factory(n: int) -> Any:
            made[n].append(build_transport(current, store))
            return made[n][-1]

        results = await asyncio.gather(
            Dispatcher(q, lambda: factory(0)).run(), Dispatcher(other, lambda: factory(1)).run()
        )
        assert sorted(results[0].sent + results[1].sent) == ids
        assert q.counts()[Status.SENT] == 16
    assert sorted(r.rcpt_tos[0] for r in server.received) == sorted(f"k{n}@aerger.example" for n in range(16))
    assert [len(m) <= 2 for m in made] == [True, True]


class SignInFirst:
    """The real SMTP transport behind a token provider that needs a person to sign in first (the OAuth
    service is a later issue; this is its outermost boundary)."""

    signed_in = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def connect(self) -> None:
        if not SignInFirst.signed_in:
            raise InteractionNeeded("sign-in required", "Anmeldung erforderlich")
        await self.inner.connect()

    async def send(self, message: bytes, envelope: Any, ready: Any = None, then: Any = None) -> Any:
        return await self.inner.send(message, envelope, ready, then)

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> SignInFirst:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def test_sign_in_needed_stops_or_pauses_the_run(home: Home, smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server("plain")
    current = server.settings()
    store = secrets.open_store(home)
    SignInFirst.signed_in = False
    with open_queue(home) as q:
        for n in range(3):
            q.enqueue(advice(current, tmp_path, n, f"k{n}@aerger.example"))
        # "oauth" (no dialog): the run stops, nothing is failed, everything stays pending
        stopped = await Dispatcher(q, lambda: SignInFirst(build_transport(current, store))).run()
        assert isinstance(stopped.stopped, InteractionNeeded) and stopped.failed == []
        assert q.counts()[Status.PENDING] == 3
        # "oauth-dialog": the run pauses for the sign-in, then goes on
        asked: list[str] = []

        async def sign_in(needed: InteractionNeeded) -> bool:
            asked.append(needed.en)
            SignInFirst.signed_in = True
            return True

        engine = Dispatcher(q, lambda: SignInFirst(build_transport(current, store)), on_interaction=sign_in)
        result = await engine.run()
        assert asked == ["sign-in required"] and len(result.sent) == 3 and result.all_went
    assert len(server.received) == 3


def test_no_sender_stops_the_run_until_one_is_set(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server, **{"sender.address": ""})
    item = enqueue(cli, tmp_path, "kunde@aerger.example")
    result = cli("send")
    assert result.code == 1
    assert "sender.address" in result.err
    assert rows(cli)[item]["status"] == "pending"
    assert server.received == []

    assert cli("config", "set", "sender.address", "opos@mueller.example").code == 0
    assert cli("send").code == 0
    assert rows(cli)[item]["status"] == "sent"
    assert parsed(server.received[0].content)["From"].addresses[0].addr_spec == "opos@mueller.example"
    assert server.received[0].mail_from == "opos@mueller.example"


@pytest.mark.parametrize("smtputf8", [False, True], ids=["ascii-server", "smtputf8-server"])
def test_an_international_domain_goes_out_in_idna_form(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path, smtputf8: bool
) -> None:
    server = smtp_server("plain", smtputf8=smtputf8)
    configure(
        cli, home, server, **{"sender.address": "buchhaltung@müller-gmbh.de", "sender.reply_to": "opos@müller-gmbh.de"}
    )
    item = enqueue(cli, tmp_path, "Kunde Müller <kunde@müller-stahl.example>", 1, "--cc", "buero@straße.example")

    result = cli("send")
    assert result.code == 0, result.err
    assert rows(cli)[item]["status"] == "sent"
    first = server.received[0]
    assert first.mail_from == "buchhaltung@xn--mller-gmbh-9db.de"
    assert first.rcpt_tos == ["kunde@xn--mller-stahl-thb.example", "buero@xn--strae-oqa.example"]
    headers = first.content.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = headers.replace("\r\n ", " ")
    to = next(line for line in unfolded.splitlines() if line.startswith("To: "))
    assert to.endswith("<kunde@xn--mller-stahl-thb.example>")  # the name stays RFC 2047 encoded, the address not
    assert "=?utf-8?" in to.partition("<")[0]
    assert "=?utf-8?" not in to.partition("<")[2]
    assert "Cc: buero@xn--strae-oqa.example" in unfolded.splitlines()
    message = parsed(first.content)
    assert message["To"] == "Kunde Müller <kunde@xn--mller-stahl-thb.example>"
    assert message["From"].addresses[0].addr_spec == "buchhaltung@xn--mller-gmbh-9db.de"
    assert message["Reply-To"] == "opos@xn--mller-gmbh-9db.de"
    assert message["Message-ID"].endswith("@xn--mller-gmbh-9db.de>")


# --- one try per mail per run -------------------------------------------------------------------------


def test_a_deferred_mail_is_tried_once_and_the_run_goes_on(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    busy = enqueue(cli, tmp_path, "data-busy@aerger.example", 1)  # 451 after every DATA
    others = [enqueue(cli, tmp_path, f"kunde{n}@aerger.example", n) for n in (2, 3)]
    # A real process, so that a run hammering the 451 forever fails here instead of hanging the suite.
    process = send_process(home, str(busy), *map(str, others), "--json")
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"send never ended: {process.communicate()[0][-300:]!r}") from None
    assert process.returncode == 1, err
    report = json.loads(out)
    assert report["deferred"] == [busy] and report["sent"] == others
    asked = [report[k] for k in ("sent", "deferred", "failed", "uncertain", "held", "not_sendable")]
    assert sum(len(ids) for ids in asked) == 3 and report["left"] == 0  # the counts add up
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["kunde2@aerger.example", "kunde3@aerger.example"]
    with open_queue(home) as q:
        assert q.get(busy).attempts == 1
        # Named again: tried once at once, then it waits for its backoff; unnamed, it waits.
        assert cli("send", str(busy)).code == 1
        assert q.get(busy).attempts == 2 and q.get(busy).status is Status.DEFERRED
        assert cli("send").code == 0
        assert q.get(busy).attempts == 2


async def test_a_run_tries_a_mail_once_even_when_its_backoff_ends_during_the_run(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    current = server.settings()
    clock = HandClock(time.time())
    with open_queue(home, clock=clock) as q:
        busy = q.enqueue(advice(current, tmp_path, 1, "data-busy@aerger.example")).id
        later = q.enqueue(advice(current, tmp_path, 2, "kunde@aerger.example")).id
        store = secrets.open_store(home)
        engine: Dispatcher

        def backoff_over(event: Progress) -> None:
            if event.outcome is Outcome.DEFERRED:  # as if the run had taken longer than the backoff
                clock.advance(24 * 3600)
                if event.failed > 1:
                    engine.request_stop()  # tried twice in one run: that is the fault, stop it here

        engine = Dispatcher(q, lambda: build_transport(current, store), on_progress=backoff_over)
        result = await engine.run()
        assert (result.deferred, result.sent) == ([busy], [later])
        assert q.get(busy).attempts == 1
        assert (await engine.run()).deferred == [busy]  # the next run tries it again
        assert q.get(busy).attempts == 2


# --- the plausibility check on every path that sends ---------------------------------------------------


def test_send_holds_back_a_mail_that_fails_the_plausibility_check(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    good = enqueue(cli, tmp_path, "kunde1@aerger.example", 1)
    swapped_pdf = write_letter(tmp_path / "Mahnung_Andere.pdf", "M-2024-0999", "K1999", "Andere Kundin")
    result = cli(
        "enqueue", "--type", "dunning", "--to", "kunde2@aerger.example", "--attach", str(swapped_pdf),
        "--var", "customer_name=Jörg Ärger", "--var", "document_number=M-2024-0002", "--json",
    )  # fmt: skip
    swapped = int(json.loads(result.out)["id"])

    result = cli("send", "--json")  # the cron path
    assert result.code == 1
    report = json.loads(result.out)
    assert report["sent"] == [good] and report["held"] == [swapped] and report["ok"] is False
    assert [r.rcpt_tos for r in server.received] == [["kunde1@aerger.example"]]
    with open_queue(home) as q:
        item = q.get(swapped)
        assert item.status is Status.HELD and item.attempts == 0
        assert "document number M-2024-0002 is not in the attachment" in (item.error or "")
        assert item.history[-1].outcome == "held" and "plausibility" in item.history[-1].reply

    assert cli("release", str(swapped)).code == 0
    again = cli("send")
    assert again.code == 1 and f"--skip-check {swapped}" in again.err  # held once more, and told what to do
    assert rows(cli)[swapped]["status"] == "held"
    assert cli("release", str(swapped)).code == 0
    assert cli("send", "--skip-check", str(swapped)).code == 0  # the operator confirmed it
    assert rows(cli)[swapped]["status"] == "sent" and len(server.received) == 2


def test_skip_check_takes_one_or_more_ids_and_refuses_strangers(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    pdf = write_letter(tmp_path / "Scan.pdf", "")  # names no document number: cannot be checked
    ids = []
    for n in range(4):
        result = cli(
            "enqueue", "--type", "dunning", "--to", f"kunde{n}@aerger.example", "--attach", str(pdf),
            "--subject", "Mahnung", "--body", "Bitte zahlen.", "--json",
        )  # fmt: skip
        ids.append(int(json.loads(result.out)["id"]))
    a, b, c, d = ids
    assert cli("send", str(a), str(b), "--skip-check", str(c)).code == 2  # not among the items to send
    assert cli("send", "--skip-check", "4711").code == 2
    assert rows(cli)[a]["status"] == "pending" and server.received == []

    result = cli("send", str(a), str(b), "--skip-check", str(b), "--json")
    assert json.loads(result.out)["sent"] == [b] and json.loads(result.out)["held"] == [a]
    result = cli("send", "--skip-check", str(c), str(d), "--json")
    assert json.loads(result.out)["sent"] == [c, d] and result.code == 0


# --- a mail that cannot be rendered --------------------------------------------------------------------


def test_a_mail_that_cannot_be_rendered_fails_alone_and_is_never_uncertain(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server)
    first = enqueue(cli, tmp_path, "kunde1@aerger.example", 1)
    # Queued past the door's checks (through the queue itself): a local part the renderer cannot encode.
    current = settings.load(home)
    with open_queue(home) as q:
        broken = q.enqueue(advice(current, tmp_path, 2, "kunde2@aerger.example")).id
        q.set_recipients(broken, [Recipient("to", "jörg@aerger.example")])
    last = enqueue(cli, tmp_path, "kunde3@aerger.example", 3)

    result = cli("send", "--json")
    assert result.code == 1, result.err
    report = json.loads(result.out)
    assert report["sent"] == [first, last] and report["failed"] == [broken] and report["uncertain"] == []
    assert len(server.received) == 2
    row = rows(cli)[broken]
    assert row["status"] == "failed" and "nothing was sent" in row["error"] and "before the @" in row["error"]


# --- rate and ETA -------------------------------------------------------------------------------------


async def test_rate_and_eta_only_once_measured_and_never_above_the_limit(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server("plain")
    current = server.settings()
    events: list[Progress] = []
    with open_queue(home) as q:
        for n in range(6):
            q.enqueue(advice(current, tmp_path, n, f"kunde{n}@aerger.example"))
        store = secrets.open_store(home)
        engine = Dispatcher(q, lambda: build_transport(current, store), max_per_minute=600, on_progress=events.append)
        assert len((await engine.run()).sent) == 6
    done = [e for e in events if e.outcome is Outcome.SENT]
    assert [(e.rate, e.eta) for e in done[:2]] == [(None, None), (None, None)]  # one or two mails are no measure
    assert all(e.rate is not None and 0 < e.rate * 60 <= 600 for e in done[2:])
    assert [e.left for e in events] == sorted((e.left for e in events), reverse=True) and events[-1].left == 0


def test_send_with_nothing_due_says_so_in_both_languages_and_as_json(cli: Cli, home: Home, tmp_path: Path) -> None:
    """Nothing due (the queue's only mail is held): nothing is tried, and the summary is all zeros."""
    configure(cli, home, type("Nowhere", (), {"host": "127.0.0.1", "port": 9, "mode": "plain", "ca_file": ""}))
    assert cli("hold", str(enqueue(cli, tmp_path, "kunde@aerger.example"))).code == 0
    said = cli("send")
    assert (said.code, said.out, said.err) == (0, "0 sent, 0 deferred, 0 failed, 0 uncertain\n", "")
    said = cli("--lang", "de", "send", "--all")
    assert (said.code, said.out, said.err) == (0, "0 gesendet, 0 zurückgestellt, 0 fehlgeschlagen, 0 unsicher\n", "")
    said = cli("send", "--json")
    assert (said.code, said.err) == (0, "")
    fields = '"sent": [],\n  "deferred": [],\n  "failed": [],\n  "uncertain": [],\n  "held": [],\n  "not_sendable": []'
    assert said.out == '{\n  "ok": true,\n  ' + fields + ',\n  "left": 0,\n  "stopped": null\n}\n'


def test_send_with_nothing_due_checks_each_config_toml_once(cli: Cli, home: Home) -> None:
    """`opos-tui send` with nothing due checks config.toml (pydantic, the most of its start) only if the checks
    have not accepted it as it is now: one changed since is checked again, and one that does not fit is refused
    every time, nothing due or not."""

    def send() -> tuple[str, str]:
        out, err = in_a_process(home, ["send"], "f'{code} pydantic={\"pydantic\" in sys.modules}'")
        return out, err.splitlines()[-1]

    nothing = "0 sent, 0 deferred, 0 failed, 0 uncertain\n"
    assert cli("config", "set", "smtp.host", "127.0.0.1").code == 0
    assert send() == (nothing, "0 pydantic=True")  # saved, but not yet read back by the model as it is now
    assert send() == (nothing, "0 pydantic=False")
    home.config_file.write_text(home.config_file.read_text().replace("127.0.0.1", "mail.example.com"))
    assert send() == (nothing, "0 pydantic=True")  # edited by hand: checked again
    assert send() == (nothing, "0 pydantic=False")
    home.config_file.write_text("[smtp]\nport = 'many'\n")
    for _ in range(2):
        out, said = send()
        assert out == "" and said == "2 pydantic=True"
    broken = cli("send")
    assert broken.code == 2 and "smtp.port" in broken.err


def test_send_with_nothing_due_starts_neither_asyncio_nor_the_send_run(home: Home) -> None:
    """`opos-tui send` run by cron every minute mostly finds nothing due: it counts, and says so, without
    importing asyncio and the send run (the better part of its start)."""
    heavy = ("asyncio", "opos_tui.services.send_run", "opos_tui.services.dispatcher")
    out, err = in_a_process(home, ["send"], f"repr(sorted(m for m in sys.modules if m.startswith({heavy!r})))")
    assert out == "0 sent, 0 deferred, 0 failed, 0 uncertain\n"
    assert err == "[]"
