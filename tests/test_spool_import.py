"""`opos-tui import [DIR]`: good manifests queued and moved to done/, bad ones to rejected/ with a reason,
nothing deleted, nothing queued twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.home import Home
from opos_tui.services.queue import Queue
from tests.conftest import Cli
from tests.pdfs import write_letter


def manifest(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "dunning",
        "level": 2,
        "to": ["Jörg Ärger <joerg@aerger.example>"],
        "cc": [],
        "attachments": ["Mahnung_2_K1001.pdf"],
        "vars": {
            "customer_name": "Ärger & Söhne KG",
            "customer_number": "K1001",
            "document_number": "M-2024-17",
            "amount": 1234.56,
            "currency": "EUR",
            "due_date": "2024-12-31",
        },
    }
    data.update(changes)
    return data


@pytest.fixture
def inbox(cli: Cli, home: Home) -> Path:
    assert cli("config", "set", "sender.address", "buchhaltung@mueller.example").code == 0
    folder = home.spool_dir / "inbox"
    folder.mkdir(parents=True)
    return folder


def drop(inbox: Path, name: str, data: dict[str, Any] | str, *pdfs: str) -> None:
    for pdf in pdfs:
        write_letter(inbox / pdf, "M-2024-17", "K1001")
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    (inbox / name).write_text(text, encoding="utf-8")


def queued(home: Home) -> list[tuple[str, tuple[str, ...]]]:
    with Queue(home.queue_db) as q:
        return [(r.subject, r.attachments) for r in q.page()]


def test_good_and_bad_manifests(cli: Cli, home: Home, inbox: Path) -> None:
    drop(inbox, "K1001.json", manifest(), "Mahnung_2_K1001.pdf")
    drop(inbox, "advice.json", manifest(type="payment-advice", level=None, attachments=["Avis.pdf"]), "Avis.pdf")
    drop(inbox, "broken.json", '{"type": "dunning", ', "broken.pdf")
    drop(inbox, "unknown-type.json", manifest(type="invoice", attachments=["U.pdf"]), "U.pdf")
    drop(inbox, "missing-file.json", manifest(attachments=["not-there.pdf"]))
    drop(inbox, "bad-address.json", manifest(to=["joerg(at)aerger"], attachments=["B.pdf"]), "B.pdf")
    drop(inbox, "path.json", manifest(attachments=["../../config.toml"]))
    (inbox / "Fake.pdf").write_bytes(b"MZ\x90\x00 not a pdf")
    drop(inbox, "fake-pdf.json", manifest(attachments=["Fake.pdf"]))
    pdf_bytes = (inbox / "Mahnung_2_K1001.pdf").read_bytes()

    result = cli("import")
    assert result.code == 1  # something was rejected
    assert "Traceback" not in result.err
    subjects = sorted(s for s, _ in queued(home))
    assert subjects == ["2. Mahnung M-2024-17", "Zahlungsavis M-2024-17"]

    done, rejected = inbox / "done", inbox / "rejected"
    assert sorted(p.name for p in done.iterdir()) == ["Avis.pdf", "K1001.json", "Mahnung_2_K1001.pdf", "advice.json"]
    assert (done / "Mahnung_2_K1001.pdf").read_bytes() == pdf_bytes
    bad = ["bad-address.json", "broken.json", "fake-pdf.json", "missing-file.json", "path.json", "unknown-type.json"]
    for name in bad:
        assert (rejected / name).is_file()
        assert (rejected / name.replace(".json", ".error.txt")).read_text().strip()
    assert "JSON" in (rejected / "broken.error.txt").read_text()
    assert "invoice" in (rejected / "unknown-type.error.txt").read_text()
    assert "not-there.pdf" in (rejected / "missing-file.error.txt").read_text()
    assert "joerg(at)aerger" in (rejected / "bad-address.error.txt").read_text()
    assert "not a PDF" in (rejected / "fake-pdf.error.txt").read_text()
    assert (rejected / "B.pdf").is_file() and (rejected / "Fake.pdf").is_file()  # moved with their manifest
    assert not (home.root / "config.toml").is_relative_to(rejected)
    assert (home.root / "config.toml").is_file()  # a manifest cannot take files from elsewhere
    # nothing deleted: only broken.pdf (no readable manifest names it) stays in the inbox
    assert sorted(p.name for p in inbox.iterdir()) == ["broken.pdf", "done", "rejected"]


def test_the_same_manifest_twice_is_queued_once(cli: Cli, home: Home, inbox: Path) -> None:
    drop(inbox, "K1001.json", manifest(), "Mahnung_2_K1001.pdf")
    assert cli("import").code == 0
    done = inbox / "done"
    shutil.copy(done / "K1001.json", inbox / "K1001.json")
    shutil.copy(done / "Mahnung_2_K1001.pdf", inbox / "Mahnung_2_K1001.pdf")
    again = cli("import", "--json")
    assert again.code == 0
    report = json.loads(again.out)
    assert report["imported"][0]["duplicate"] is True
    assert len(queued(home)) == 1
    # nothing overwritten in done/
    assert sorted(p.name for p in done.iterdir()) == [
        "K1001.1.json",
        "K1001.json",
        "Mahnung_2_K1001.1.pdf",
        "Mahnung_2_K1001.pdf",
    ]


def test_a_file_shared_by_two_manifests(cli: Cli, home: Home, inbox: Path) -> None:
    drop(inbox, "a.json", manifest(), "Mahnung_2_K1001.pdf")
    drop(inbox, "b.json", manifest(to=["zweite@aerger.example"]))
    assert cli("import").code == 0
    assert [a for _, a in queued(home)] == [("Mahnung_2_K1001.pdf",), ("Mahnung_2_K1001.pdf",)]


def test_import_from_another_folder_and_missing_folder(cli: Cli, home: Home, tmp_path: Path, inbox: Path) -> None:
    other = tmp_path / "erp" / "out"
    other.mkdir(parents=True)
    drop(other, "K1001.json", manifest(), "Mahnung_2_K1001.pdf")
    assert cli("import", str(other)).code == 0
    assert (other / "done" / "K1001.json").is_file()
    missing = cli("import", str(tmp_path / "nope"))
    assert missing.code == 2 and "nope" in missing.err


def test_the_default_inbox_is_made_on_first_import(cli: Cli, home: Home) -> None:
    result = cli("import")
    assert result.code == 0, result.err
    assert (home.spool_dir / "inbox").is_dir()
    assert "0 imported" in result.out


def test_what_send_cannot_write_is_rejected(cli: Cli, home: Home, inbox: Path) -> None:
    # Each of these was queued by older versions and then stopped `send` when it tried to write the mail.
    crashers = {
        "local-non-ascii": manifest(to=["jörg@aerger.example"]),
        "local-dots": manifest(to=["Jörg <jo..erg@aerger.example>"]),
        "subject-line-separator": manifest(subject="2. Mahnung\u2028M-2024-17"),
        "value-next-line": manifest(vars={**manifest()["vars"], "document_number": "M-2024\x8517"}),
    }
    for name, data in crashers.items():
        drop(inbox, f"{name}.json", {**data, "attachments": [f"{name}.pdf"]}, f"{name}.pdf")
    result = cli("import")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert queued(home) == []
    rejected = inbox / "rejected"
    for name in crashers:
        assert (rejected / f"{name}.json").is_file()
        reason = (rejected / f"{name}.error.txt").read_text()
        assert "before the @" in reason or "line break" in reason, reason
