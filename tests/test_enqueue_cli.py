"""`opos-tui enqueue`, `queue`, `hold`, `release`, `retry`, `delete`, `mark-sent`: the exact contract, and
bad input refused at the door with exit 2 and the queue unchanged."""

from __future__ import annotations

import json
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from opos_tui.services.compose import build_message
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import Cli, in_a_process, run_cli
from tests.pdfs import write_letter

QUEUE_FIELDS = {
    "id",
    "status",
    "type",
    "level",
    "to",
    "subject",
    "attachments",
    "attempts",
    "error",
    "message_id",
    "created_at",
    "sent_at",
}


@pytest.fixture
def sender(cli: Cli, home: Home) -> None:
    assert cli("config", "set", "sender.address", "buchhaltung@mueller.example").code == 0
    assert cli("config", "set", "sender.name", "Müller GmbH – Buchhaltung").code == 0


@pytest.fixture
def letter(tmp_path: Path) -> Path:
    return write_letter(tmp_path / "Mahnung_2_K1001_Größe.pdf", "R-2024-0815", "K1001", "Jörg Ärger")


def dunning(*extra: str, letter: Path) -> list[str]:
    return [
        "enqueue",
        "--type",
        "dunning",
        "--level",
        "2",
        "--to",
        "Jörg Ärger <joerg@aerger.example>",
        "--attach",
        str(letter),
        "--var",
        "customer_name=Ärger & Söhne KG",
        "--var",
        "document_number=R-2024-0815",
        "--var",
        "customer_number=K1001",
        *extra,
    ]


def queue_json(cli: Cli) -> list[dict]:
    result = cli("queue", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_enqueue_and_list(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    result = cli(*dunning("--json", letter=letter))
    assert result.code == 0, result.err
    made = json.loads(result.out)
    assert set(made) == {"id", "message_id"}
    (row,) = queue_json(cli)
    assert set(row) == QUEUE_FIELDS
    assert row["id"] == made["id"] and row["message_id"] == made["message_id"]
    assert row["status"] == "pending" and row["type"] == "dunning" and row["level"] == 2
    assert row["to"] == ["Jörg Ärger <joerg@aerger.example>"]
    assert row["subject"] == "2. Mahnung R-2024-0815"  # the shipped German default
    assert row["attachments"] == ["Mahnung_2_K1001_Größe.pdf"]
    assert row["attempts"] == 0 and row["error"] is None and row["sent_at"] is None
    assert row["created_at"].endswith("Z")
    # the queue keeps its own copy: the accounting system may delete its file
    original = letter.read_bytes()
    letter.unlink()
    with open_queue(home) as q:
        assert q.attachments(made["id"])[0].data == original
    human = cli("queue")
    assert f"#{made['id']}" in human.out and "pending" in human.out


def test_the_message_as_it_goes_out(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    cli("config", "set", "sender.bcc", "archiv@mueller.example")
    made = json.loads(cli(*dunning("--cc", "Büro <buero@aerger.example>", "--json", letter=letter)).out)
    with open_queue(home) as q:
        item = q.claim()
        assert item is not None
        raw = build_message(item, q.attachments(made["id"]))
        assert item.envelope_recipients == ("joerg@aerger.example", "buero@aerger.example", "archiv@mueller.example")
    assert raw.isascii()  # everything encoded (RFC 2047 / 2231 / quoted-printable)
    assert b"archiv@mueller.example" not in raw  # Bcc only in the envelope
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "2. Mahnung R-2024-0815"
    assert parsed["From"] == "Müller GmbH – Buchhaltung <buchhaltung@mueller.example>"
    assert parsed["To"] == "Jörg Ärger <joerg@aerger.example>"
    assert parsed["Cc"] == "Büro <buero@aerger.example>"
    assert parsed["Message-ID"] == made["message_id"] and parsed["Date"]
    body = parsed.get_body(("plain",))
    assert body is not None and "Ärger & Söhne KG" in body.get_content()
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "Mahnung_2_K1001_Größe.pdf"
    assert attachment.get_content() == letter.read_bytes()


def test_own_subject_and_body_need_no_values(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    result = cli(
        "enqueue", "--type", "payment-advice", "--to", "a@example.com", "--attach", str(letter),
        "--subject", "Ihr Zahlungsavis", "--body", "Anbei, 100 $ pro Stück.",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert queue_json(cli)[0]["subject"] == "Ihr Zahlungsavis"


def test_templates_from_config(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    assert cli("config", "set", "letters.language", "en").code == 0
    assert cli(*dunning(letter=letter)).code == 0
    assert queue_json(cli)[0]["subject"] == "Second reminder R-2024-0815"
    assert cli("config", "set", "dunning_2.subject", "Mahnung ${document_number}: ${amount} ${currency}").code == 0
    missing = cli(*dunning(letter=letter))
    assert missing.code == 2
    assert "dunning_2.subject" in missing.err and "${amount}" in missing.err
    ok = cli(*dunning("--var", "amount=1.234,56", "--var", "currency=EUR", letter=letter))
    assert ok.code == 0
    assert queue_json(cli)[0]["subject"] == "Mahnung R-2024-0815: 1.234,56 EUR"
    assert cli("config", "set", "letters.attachment_name", "Mahnung_${document_number}.pdf").code == 0
    assert cli(*dunning("--var", "amount=1", "--var", "currency=EUR", letter=letter)).code == 0
    assert queue_json(cli)[0]["attachments"] == ["Mahnung_R-2024-0815.pdf"]
    bad = cli("config", "set", "payment_advice.subject", "Avis ${document_number")
    assert bad.code == 2 and "placeholder" in bad.err


def bad_inputs(tmp_path: Path, letter: Path) -> list[tuple[str, list[str]]]:
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"<html>not a pdf</html>")
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024))
    unreadable = tmp_path / "secret.pdf"
    unreadable.write_bytes(b"%PDF-1.4\n")
    unreadable.chmod(0)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    good = dunning(letter=letter)

    def with_(flag: str, value: str) -> list[str]:
        i = good.index(flag)
        return [*good[: i + 1], value, *good[i + 2 :]]

    return [
        ("missing attachment", with_("--attach", str(tmp_path / "nope.pdf"))),
        ("attachment is a folder", with_("--attach", str(tmp_path))),
        ("unreadable attachment (path through a file)", with_("--attach", str(letter / "x.pdf"))),
        *([("unreadable attachment", with_("--attach", str(unreadable)))] if os.geteuid() != 0 else []),
        ("not a PDF", with_("--attach", str(fake))),
        ("too large", [*good, "--attach", str(big)]),
        ("empty attachment", with_("--attach", str(empty))),
        ("the same file twice", [*good, "--attach", str(letter)]),
        ("the same file twice by another path", [*good, "--attach", str(letter.parent / "." / letter.name)]),
        ("11 recipients", [*good, *[a for n in range(10) for a in ("--cc", f"kopie{n}@aerger.example")]]),
        ("invalid address", with_("--to", "joerg@@aerger")),
        ("two addresses in one", with_("--to", "a@example.com, b@example.com")),
        ("CR/LF in a name", with_("--to", "Evil\r\nBcc: victim@example.com <a@example.com>")),
        ("CR/LF in the subject", [*good, "--subject", "Mahnung\r\nBcc: victim@example.com"]),
        ("CR/LF in a value used in the subject", [*good, "--var", "document_number=R-1\nBcc: x@example.com"]),
        ("unknown type", with_("--type", "invoice")),
        ("level 0", with_("--level", "0")),
        ("level 10", with_("--level", "10")),
        ("level not a number", with_("--level", "zwei")),
        ("missing placeholder value", [a for a in good if not a.startswith("customer_name")][:-1]),
        ("bad --var", [*good, "--var", "novalue"]),
        ("no recipient", [a for a in good if a not in ("--to", "Jörg Ärger <joerg@aerger.example>")]),
    ]


def test_every_bad_input_is_refused_and_the_queue_unchanged(
    cli: Cli, home: Home, sender: None, letter: Path, tmp_path: Path
) -> None:
    assert cli("config", "set", "smtp.max_message_mb", "1").code == 0
    assert cli(*dunning(letter=letter)).code == 0
    with open_queue(home) as q:
        before = (q.version(), q.count())
    for why, argv in bad_inputs(tmp_path, letter):
        result = cli(*argv)
        assert result.code == 2, why
        assert result.out == "", why
        assert "Traceback" not in result.err, why
        assert result.err.strip(), why
        with open_queue(home) as q:
            assert (q.version(), q.count()) == before, why


def test_enqueue_before_a_sender_is_configured(cli: Cli, home: Home, letter: Path) -> None:
    # Queueing needs no From yet: the item takes the sender in force when it is sent (see test_send).
    result = cli(*dunning("--json", letter=letter))
    assert result.code == 0, result.err
    assert json.loads(cli("queue", "--json").out)[0]["status"] == "pending"


def test_hold_release_retry_delete_mark_sent(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    ids = [json.loads(cli(*dunning("--json", letter=letter)).out)["id"] for _ in range(3)]
    a, b, c = ids
    assert cli("hold", str(a), str(b)).code == 0
    assert {r["id"]: r["status"] for r in queue_json(cli)} == {a: "held", b: "held", c: "pending"}
    held = json.loads(cli("queue", "--status", "held", "--json").out)
    assert sorted(r["id"] for r in held) == [a, b]
    assert cli("release", str(b)).code == 0
    again = cli("release", str(c))  # not held: said so, exit 1
    assert again.code == 1 and f"#{c}" in again.err
    assert cli("hold", "9999").code == 2  # unknown item: bad input, nothing changed
    with open_queue(home) as q:
        for item_id, status in ((b, Status.FAILED), (c, Status.UNCERTAIN)):
            assert q.claim([item_id]) is not None
            if status is Status.FAILED:
                q.record_failed(item_id, "550 5.1.1 no such user")
            else:
                q.record_uncertain(item_id, "connection lost after DATA")
    assert cli("retry").code == 2
    assert cli("retry", "--all").code == 0
    assert {r["id"]: r["status"] for r in queue_json(cli)}[b] == "pending"
    with open_queue(home) as q:
        assert q.claim([c]) is not None
        q.record_uncertain(c, "connection lost after DATA")
    assert cli("mark-sent", str(c)).code == 0
    rows = {r["id"]: r for r in queue_json(cli)}
    assert rows[c]["status"] == "sent" and rows[c]["sent_at"]
    refused = cli("delete", str(a), str(c), "--yes")
    assert refused.code == 1  # c is sent: never deleted
    assert {r["id"] for r in queue_json(cli)} == {b, c}
    asks = cli("delete", str(b), stdin="")
    assert asks.code == 2 and "--yes" in asks.err  # no answer to the question
    declined = cli("delete", str(b), stdin="n\n")
    assert declined.code == 0 and "[y/N]" in declined.err
    assert {r["id"] for r in queue_json(cli)} == {b, c}
    assert cli("delete", str(b), stdin="j\n").code == 0
    assert {r["id"] for r in queue_json(cli)} == {c}
    assert cli("queue", "--status", "nonsense").code == 2


def test_actions_report_as_json(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    a, b = (json.loads(cli(*dunning("--json", letter=letter)).out)["id"] for _ in range(2))
    held = cli("hold", str(a), "--json")
    assert held.code == 0
    assert json.loads(held.out) == {"changed": [a], "skipped": []}
    again = cli("hold", str(a), str(b), "--json")
    assert again.code == 1  # a is held already
    assert json.loads(again.out) == {"changed": [b], "skipped": [{"id": a, "status": "held"}]}
    assert json.loads(cli("release", str(a), str(b), "--json").out)["changed"] == [a, b]
    assert json.loads(cli("retry", "--all", "--json").out) == {"changed": [], "skipped": []}
    deleted = cli("delete", str(a), "--yes", "--json")
    assert json.loads(deleted.out) == {"changed": [a], "skipped": []}
    assert [r["id"] for r in json.loads(cli("queue", "--json").out)] == [b]


def test_a_dunning_letter_without_a_level_is_the_first_reminder(
    cli: Cli, home: Home, sender: None, letter: Path
) -> None:
    args = [a for a in dunning("--json", letter=letter) if a not in ("--level", "2")]
    assert "--level" not in args
    result = cli(*args)
    assert result.code == 0, result.err
    row = json.loads(cli("queue", "--json").out)[0]
    assert (row["type"], row["level"]) == ("dunning", 1)
    assert row["subject"].startswith("1. Mahnung")


# Unicode line separators: every character str.splitlines() breaks on besides \r and \n.
LINE_SEPARATORS = ("\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e")


def send_crashers(tmp_path: Path, letter: Path) -> list[tuple[str, list[str]]]:
    """Inputs that older versions queued and that `send` then could not write: it stopped the run."""
    good = dunning(letter=letter)

    def with_to(value: str) -> list[str]:
        i = good.index("--to")
        return [*good[: i + 1], value, *good[i + 2 :]]

    vt_name = tmp_path / "Mahnung\vK1001.pdf"  # a real file whose name holds a vertical tab
    vt_name.write_bytes(letter.read_bytes())
    return [
        ("non-ASCII local part", with_to("jörg@aerger.example")),
        ("local part starts with a dot", with_to(".joerg@aerger.example")),
        ("local part ends with a dot", with_to("Jörg <joerg.@aerger.example>")),
        ("two dots in the local part", with_to("jo..erg@aerger.example")),
        *((f"{ch!r} in the subject", [*good, "--subject", f"Mahnung{ch}R-2024-0815"]) for ch in LINE_SEPARATORS),
        ("U+2028 in a value used in the subject", [*good, "--var", "document_number=R-1\u2028x"]),
        (
            "\\v in a file name",
            [*good[: good.index("--attach") + 1], str(vt_name), *good[good.index("--attach") + 2 :]],
        ),
    ]


def door_inputs() -> list[tuple[str, list[str]]]:
    """Inputs no mail can carry, refused with a reason of their own."""
    return [
        ("local part over 64 characters", ["--to", "a" * 65 + "@aerger.example"]),
        ("domain label over 63 characters", ["--to", "joerg@" + "a" * 64 + ".example"]),
        ("international label over 63 characters as IDNA", ["--to", "joerg@" + "äöüßéèêçñåøæœ" * 4 + ".example"]),
        ("address over 254 characters", ["--to", "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".example"]),
        ("domain that IDNA 2008 cannot encode", ["--to", "kunde@☃.example"]),
        ("underscore in the domain", ["--to", "kunde@aerger_gmbh.example"]),
        ("hyphen at the start of a label", ["--to", "kunde@-aerger.example"]),
        ("U+2028 in a name", ["--to", "Jörg\u2028Ärger <joerg@aerger.example>"]),
        ("NUL in the subject", ["--subject", "Mahnung\x00"]),
        ("not UTF-8 in the body", ["--body", "Gr\udcfc\udcdfe"]),  # a Latin-1 argument decoded as by Python
        ("not UTF-8 in an unused value", ["--var", "note=\udce4"]),
    ]


def test_what_send_cannot_write_is_refused_at_the_door(
    cli: Cli, home: Home, sender: None, letter: Path, tmp_path: Path
) -> None:
    assert cli(*dunning(letter=letter)).code == 0
    with open_queue(home) as q:
        before = (q.version(), q.count())
    cases = [
        *send_crashers(tmp_path, letter),
        *((why, [*dunning(letter=letter), *extra]) for why, extra in door_inputs()),
    ]
    for why, argv in cases:
        result = cli(*argv)
        assert result.code == 2, why
        assert result.out == "", why
        assert "Traceback" not in result.err, why
        assert len(result.err.strip().splitlines()) == 1, (why, result.err)
        with open_queue(home) as q:
            assert (q.version(), q.count()) == before, why


def test_address_errors_say_what_is_wrong(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    def error(to: str, *lang: str) -> str:
        good = dunning(letter=letter)
        i = good.index("--to")
        return cli(*lang, *good[: i + 1], to, *good[i + 2 :]).err

    assert "before the @ contains 'ö'" in error("jörg@aerger.example")
    assert "must not start or end with a dot" in error("joerg.@aerger.example")
    assert "65 characters, at most 64" in error("a" * 65 + "@aerger.example")
    assert "at most 63" in error("joerg@" + "äöüßéèêçñåøæœ" * 4 + ".example")
    assert "at most 254" in error("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".example")
    assert "IDNA" in error("kunde@☃.example")
    assert "U+2028" in error("Jörg\u2028Ärger <joerg@aerger.example>")
    assert "der Teil vor dem @ enthält 'ö'" in error("jörg@aerger.example", "--lang", "de")


def test_an_international_domain_is_queued_as_typed(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    good = dunning(letter=letter)
    i = good.index("--to")
    result = cli(*good[: i + 1], "Kunde <kunde@straße.example>", *good[i + 2 :], "--json")
    assert result.code == 0, result.err
    assert queue_json(cli)[0]["to"] == ["Kunde <kunde@straße.example>"]  # what the operator reads
    with open_queue(home) as q:
        item = q.get(json.loads(result.out)["id"])
        raw = build_message(item, [])
    assert b"To: Kunde <kunde@xn--strae-oqa.example>" in raw  # IDNA 2008 keeps the ß (not "strasse")


def test_recipients_are_capped_by_a_setting(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    ten = [a for n in range(9) for a in ("--cc", f"kopie{n}@aerger.example")]
    assert cli(*dunning(*ten, letter=letter)).code == 0  # To + 9 Cc = the default 10
    eleven = cli(*dunning(*ten, "--to", "zweite@aerger.example", letter=letter))
    assert eleven.code == 2
    assert "11 recipients" in eleven.err and "letters.max_recipients (10)" in eleven.err
    assert len(queue_json(cli)) == 1
    assert cli("config", "set", "letters.max_recipients", "11").code == 0
    assert cli(*dunning(*ten, "--to", "zweite@aerger.example", letter=letter)).code == 0


def test_a_device_or_pipe_is_refused_before_it_is_read(
    cli: Cli, home: Home, sender: None, letter: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "Mahnung.pdf"
    os.mkfifo(fifo)
    # A FIFO nobody writes to blocked the open; /dev/zero was read until memory ran out.
    for special in (fifo, Path("/dev/zero")):
        argv = [a if a != str(letter) else str(special) for a in dunning(letter=letter)]
        result = run_cli(*argv)
        assert result.code == 2, result.err
        assert "not a regular file" in result.err
        assert "Traceback" not in result.err
    assert queue_json(cli) == []


def test_enqueue_checks_each_config_toml_once(cli: Cli, home: Home, sender: None, letter: Path) -> None:
    """An accounting system that queues each letter with an `enqueue` of its own pays for checking the settings
    (pydantic: most of the start) once per config.toml, not once per letter. A file edited by hand is checked
    again; one with a value the checks change (here the spaces around an address) is checked every time, and
    read as the checks made it."""

    def enqueue() -> str:
        out, err = in_a_process(home, dunning(letter=letter), "f'{code} pydantic={\"pydantic\" in sys.modules}'")
        assert out.startswith("queued #")
        return err.splitlines()[-1]

    assert enqueue() == "0 pydantic=True"  # saved by `config set`, not yet read back as it is now
    assert enqueue() == "0 pydantic=False"
    text = home.config_file.read_text()
    home.config_file.write_text(text.replace("Müller GmbH – Buchhaltung", "Müller GmbH"))
    assert enqueue() == "0 pydantic=True"
    assert enqueue() == "0 pydantic=False"
    home.config_file.write_text(text.replace('"buchhaltung@mueller.example"', '" buchhaltung@mueller.example "'))
    assert enqueue() == "0 pydantic=True"
    assert enqueue() == "0 pydantic=True"
    with open_queue(home) as queue:
        senders = [queue.get(row.id).sender for row in queue.page()]
    assert senders == [
        *["Müller GmbH – Buchhaltung <buchhaltung@mueller.example>"] * 2,
        *["Müller GmbH <buchhaltung@mueller.example>"] * 2,
        *["Müller GmbH – Buchhaltung <buchhaltung@mueller.example>"] * 2,
    ]
