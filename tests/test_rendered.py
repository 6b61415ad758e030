"""Each mail is written once, when it is queued (or at its first claim, for one queued before), and what goes on
the wire is byte for byte what ``build_message`` writes for the item, with its Date and Message-ID put in.
Against a real aiosmtpd server and real SQLite queues."""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import pytest

from opos_tui.services.compose import LetterRequest, build_message, default_sender, prepare, wire_message
from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.home import Home
from opos_tui.services.queue import QueueItem, Recipient, SqliteQueue, Status
from opos_tui.services.queue.headers import date_header
from opos_tui.services.secrets import open_store
from opos_tui.services.settings import Settings, check
from opos_tui.services.transports.registry import build_transport
from tests.pdfs import write_letter
from tests.servers.smtp import StartServer

SENDER = {"address": "buchhaltung@mueller.example", "name": "Müller GmbH – Buchhaltung"}


def settings(**sections: object) -> Settings:
    return check({"sender": SENDER, **sections})


def request(tmp_path: Path, n: int, **changes: object) -> LetterRequest:
    pdf = write_letter(tmp_path / f"Mahnung_{n}_Größe.pdf", f"M-{n}", f"K{n}", "Jörg Ärger")
    base = LetterRequest(
        type="dunning",
        level=2,
        to=[f'"Ärger, Jörg" <joerg{n}@aerger.example>'],
        cc=["Müller Stahl <kunde@müller-stahl.de>"],
        attachments=[pdf],
        vars={"customer_name": "Jörg Ärger & Söhne KG " * 3, "document_number": f"M-{n}"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def claimed(queue: SqliteQueue, item_id: int) -> QueueItem:
    item = queue.claim([item_id])
    assert item is not None and item.date
    return item


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"sender": {**SENDER, "reply_to": "antwort@mueller.example", "bcc": "archiv@mueller.example"}},
        {"sender": {}},  # queued before a sender was set: From is the one in force when it goes
        {"letters": {"signature": "Müller GmbH\n.\n..Punkt am Zeilenanfang"}},
        # A Message-ID too long for one line: put in as the email package folds it.
        {"sender": {"address": f"buchhaltung@{'forderungsmanagement.' * 3}mueller-gruppe.example"}},
    ],
)
def test_the_wire_bytes_are_the_ones_build_message_writes(tmp_path: Path, config: dict[str, object]) -> None:
    current = settings(**config)
    random.seed(1)  # the MIME boundary is random: the same one for both
    new = prepare(current, request(tmp_path, 1))
    assert new.rendered is not None
    with SqliteQueue(tmp_path / "queue.db") as queue:
        item = claimed(queue, queue.enqueue(new).id)
        rendered = queue.rendered(item.id)
        assert rendered == new.rendered
        wire = wire_message(item, rendered, default_sender(settings()))
        random.seed(1)
        expected = build_message(
            replace(item, sender=item.sender or default_sender(settings())), queue.attachments(item.id)
        )
    assert wire == expected
    assert f"Date: {item.date}\r\nMessage-ID: {item.message_id}\r\n".encode() in wire


def test_a_date_header_is_the_one_the_email_package_writes_for_its_second() -> None:
    """The Date header is remembered per second (a run writes the same one for many mails): each is still the one
    the email package writes for its own second, also after another second's, and across a change of summer time
    (in the zone the tests run in)."""
    for at in (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.0, 1_700_000_000.5, 1_711_846_799.9, 1_711_846_800.1):
        assert date_header(at) == formatdate(at, localtime=True)


def send_all(queue: SqliteQueue, current: Settings, home: Home) -> None:
    store = open_store(home)
    dispatcher = Dispatcher(queue, lambda: build_transport(current, store), sender=default_sender(current))
    result = asyncio.run(dispatcher.run(skip_check=queue.ids()))
    assert result.all_went, result


def boundaryless(message: bytes) -> bytes:
    """The message with its (random) MIME boundary replaced by one fixed string."""
    found = re.search(rb'boundary="([^"]+)"', message)
    assert found is not None
    return message.replace(found.group(1), b"BOUNDARY")


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "announced-ahead"])
def test_what_arrives_is_what_build_message_writes(
    home: Home, tmp_path: Path, smtp_server: StartServer, pipelining: bool
) -> None:
    """Over a real SMTP session: lines starting with a dot (dot-stuffed on the way, unstuffed by the server) and
    umlauts arrive as build_message writes them, apart from nothing; also each mail announced ahead with the end
    of the last one's data (PIPELINING), its Date fixed when it was looked at."""
    server = smtp_server("plain", pipelining=pipelining)
    current = server.settings(sender__address=SENDER["address"], sender__name=SENDER["name"])
    body = "Erste Zeile\n.\n.. zwei Punkte\n.Punkt\nEnde\n"
    with SqliteQueue(tmp_path / "queue.db") as queue:
        letters = [request(tmp_path, n, body=body, subject=f"Mahnung {n} .") for n in (1, 2, 3)]
        ids = queue.enqueue_many(prepare(current, letter) for letter in letters)
        send_all(queue, current, home)
        items = [queue.get(i) for i in ids]
        expected = [build_message(item, queue.attachments(item.id)) for item in items]
    assert all(item.status is Status.SENT and item.date for item in items)
    assert [boundaryless(arrived.content) for arrived in server.received] == [boundaryless(e) for e in expected]


def test_a_mail_queued_without_its_rendering_is_written_at_its_first_claim(
    home: Home, tmp_path: Path, smtp_server: StartServer
) -> None:
    """An item queued by an older version (no rendering stored) is written when it is claimed, kept, and goes
    out as build_message writes it."""
    server = smtp_server("plain")
    current = server.settings(sender__address=SENDER["address"])
    old = replace(prepare(current, request(tmp_path, 2)), rendered=None)
    with SqliteQueue(tmp_path / "queue.db") as queue:
        item_id = queue.enqueue(old).id
        assert queue.rendered(item_id) is None
        send_all(queue, current, home)
        kept = queue.rendered(item_id)
        item = queue.get(item_id)
        expected = build_message(item, queue.attachments(item_id))
    assert kept is not None
    (arrived,) = server.received
    assert boundaryless(arrived.content) == boundaryless(expected)


def test_changed_recipients_are_written_again_before_the_mail_goes(
    home: Home, tmp_path: Path, smtp_server: StartServer
) -> None:
    server = smtp_server("plain")
    current = server.settings(sender__address=SENDER["address"])
    with SqliteQueue(tmp_path / "queue.db") as queue:
        item_id = queue.enqueue(prepare(current, request(tmp_path, 3))).id
        queue.set_recipients(item_id, [Recipient("to", "richtig@example.com", "Richtige Kundin")])
        assert queue.rendered(item_id) is None  # the old rendering named the old recipients
        send_all(queue, current, home)
        item = queue.get(item_id)
        expected = build_message(item, queue.attachments(item_id))
    (arrived,) = server.received
    assert arrived.rcpt_tos == ["richtig@example.com"]
    assert b"To: Richtige Kundin <richtig@example.com>\r\n" in arrived.content
    assert boundaryless(arrived.content) == boundaryless(expected)
