"""`opos-tui import [DIR]`: good manifests queued and moved to done/, bad ones to rejected/ with a reason,
nothing deleted, nothing queued twice."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.home import Home
from opos_tui.services.queue import open_queue
from tests.conftest import Cli, run_cli
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
    with open_queue(home) as q:
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


def test_many_manifests_are_queued_in_one_commit_and_then_moved(cli: Cli, home: Home, inbox: Path) -> None:
    """One durable commit for the mails of many manifests (not one per manifest): each manifest is moved to
    done/ after it, and a bad one between them is rejected as before."""
    for n in range(5):
        drop(inbox, f"K{n}.json", manifest(attachments=[f"M{n}.pdf"]), f"M{n}.pdf")
    drop(inbox, "K2a.json", manifest(to=[]))
    with open_queue(home) as q:
        before = q.version()
    result = cli("import", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert [i["manifest"] for i in report["imported"]] == [f"K{n}.json" for n in range(5)]
    assert [r["manifest"] for r in report["rejected"]] == ["K2a.json"]
    with open_queue(home) as q:
        assert q.version() - before == 2  # K0-K2 before the rejected manifest, K3-K4 after it
        assert [r.attachments for r in reversed(q.page())] == [(f"M{n}.pdf",) for n in range(5)]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(
        [f"K{n}.json" for n in range(5)] + [f"M{n}.pdf" for n in range(5)]
    )
    assert sorted(p.name for p in inbox.iterdir()) == ["done", "rejected"]


def test_an_import_killed_after_its_commit_queues_nothing_twice(cli: Cli, home: Home, inbox: Path) -> None:
    """What a kill between the commit and the moves leaves: manifests whose mails are queued still in the
    folder, beside new ones. Those are known by their content; the new ones are queued."""
    for n in range(3):
        drop(inbox, f"K{n}.json", manifest(attachments=[f"M{n}.pdf"]), f"M{n}.pdf")
    first = json.loads(cli("import", "--json").out)
    for name in ("K0.json", "M0.pdf", "K2.json", "M2.pdf"):
        shutil.copy(inbox / "done" / name, inbox / name)
    drop(inbox, "K1b.json", manifest(attachments=["M1b.pdf"]), "M1b.pdf")
    again = cli("import", "--json")
    assert again.code == 0, again.err
    ids = {i["manifest"]: i["id"] for i in first["imported"]}
    assert [(i["manifest"], i["duplicate"]) for i in json.loads(again.out)["imported"]] == [
        ("K0.json", True),
        ("K1b.json", False),
        ("K2.json", True),
    ]
    assert [i["id"] for i in json.loads(again.out)["imported"] if i["duplicate"]] == [ids["K0.json"], ids["K2.json"]]
    assert len(queued(home)) == 4
    assert sorted(p.name for p in inbox.iterdir()) == ["done"]


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


def error_of(inbox: Path, manifest_name: str) -> str:
    return (inbox / "rejected" / manifest_name.replace(".json", ".error.txt")).read_text()


def test_links_in_the_inbox_are_rejected(cli: Cli, home: Home, inbox: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "shadow.txt"
    secret.write_text("root:$6$geheim:19000:0:99999:7:::\n")
    (inbox / "shadow.txt").symlink_to(secret)
    drop(inbox, "shadow.json", manifest(attachments=["shadow.txt"]))
    # Not even a real PDF: a link can point anywhere the service user may read.
    elsewhere = write_letter(outside / "Mahnung.pdf", "M-2024-17", "K1001")
    (inbox / "Mahnung_2_K1001.pdf").symlink_to(elsewhere)
    drop(inbox, "pdf-link.json", manifest())
    drop(outside, "K2.json", manifest(attachments=["Avis.pdf"]), "Avis.pdf")
    (inbox / "K2.json").symlink_to(outside / "K2.json")
    os.link(elsewhere, inbox / "hard.pdf")
    drop(inbox, "hard.json", manifest(attachments=["hard.pdf"]))

    result = cli("import")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert queued(home) == []  # nothing queued, so nothing can be sent
    for name in ("shadow.json", "pdf-link.json", "K2.json"):
        assert "symbolic link" in error_of(inbox, name), name
    assert "hard links" in error_of(inbox, "hard.json")
    assert secret.read_text().startswith("root:") and elsewhere.is_file() and (outside / "K2.json").is_file()
    assert (inbox / "rejected" / "shadow.txt").is_symlink()  # the link moved with its manifest, not its target


def test_devices_pipes_empty_and_repeated_files_are_rejected(home: Home, inbox: Path) -> None:
    drop(inbox, "K1001.json", manifest(), "Mahnung_2_K1001.pdf")
    os.mkfifo(inbox / "pipe.pdf")
    drop(inbox, "pipe.json", manifest(attachments=["pipe.pdf"]))
    os.mkfifo(inbox / "fifo.json")  # a manifest nobody writes to
    (inbox / "empty.pdf").write_bytes(b"")
    drop(inbox, "empty.json", manifest(attachments=["empty.pdf"]))
    drop(inbox, "twice.json", manifest(attachments=["Mahnung_2_K1001.pdf", "Mahnung_2_K1001.pdf"]))
    text = json.dumps(manifest(), ensure_ascii=False)
    drop(inbox, "repeated-key.json", text[:-1] + ', "to": ["jemand@anderes.example"]}')
    drop(inbox, "crowd.json", manifest(to=[f"kunde{n}@example.com" for n in range(10_000)]))

    result = run_cli("import")  # in a process of its own: reading a pipe used to hang
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert [s for s, _ in queued(home)] == ["2. Mahnung M-2024-17"]
    assert "not a regular file" in error_of(inbox, "pipe.json")
    assert "not a regular file" in error_of(inbox, "fifo.json")
    assert "empty" in error_of(inbox, "empty.json")
    assert "twice" in error_of(inbox, "twice.json")
    assert "'to' appears twice" in error_of(inbox, "repeated-key.json")
    crowd = error_of(inbox, "crowd.json")
    assert "10000 recipients" in crowd and "letters.max_recipients (10)" in crowd


# A writer that keeps its file open: half of it written, the rest when told (a line on stdin).
WRITER = """
import sys
target, source = sys.argv[1], sys.argv[2]
data = open(source, "rb").read()
with open(target, "wb") as out:
    out.write(data[: len(data) // 2])
    out.flush()
    print("half", flush=True)
    sys.stdin.readline()
    out.write(data[len(data) // 2 :])
"""


@contextlib.contextmanager
def writing(target: Path, data: bytes, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """``target`` half written by another process that keeps it open; call the result to let it finish."""
    source = tmp_path / f"{target.name}.source"
    source.write_bytes(data)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(source)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert writer.stdin is not None and writer.stdout is not None
    assert writer.stdout.readline() == b"half\n"

    def finish() -> None:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0

    try:
        yield finish
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_a_pdf_still_being_written_waits_for_the_next_import(cli: Cli, home: Home, inbox: Path, tmp_path: Path) -> None:
    pdf = write_letter(tmp_path / "complete.pdf", "M-2024-17", "K1001").read_bytes()
    with writing(inbox / "Mahnung_2_K1001.pdf", pdf, tmp_path) as finish:
        drop(inbox, "K1001.json", manifest())
        result = cli("import")
        assert result.code == 0, result.err
        assert "K1001.json: still being written" in result.out
        assert queued(home) == []
        assert sorted(p.name for p in inbox.iterdir()) == ["K1001.json", "Mahnung_2_K1001.pdf"]  # nothing moved
        finish()
    assert cli("import").code == 0
    with open_queue(home) as q:
        [row] = q.page()
        assert q.attachments(row.id)[0].data == pdf  # all of it
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["K1001.json", "Mahnung_2_K1001.pdf"]


def test_a_manifest_still_being_written_is_left_for_the_next_import(
    cli: Cli, home: Home, inbox: Path, tmp_path: Path
) -> None:
    write_letter(inbox / "Mahnung_2_K1001.pdf", "M-2024-17", "K1001")
    text = json.dumps(manifest(), ensure_ascii=False).encode()
    with writing(inbox / "K1001.json", text, tmp_path) as finish:
        result = cli("import", "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out) == {"imported": [], "rejected": [], "waiting": ["K1001.json"]}
        assert sorted(p.name for p in inbox.iterdir()) == ["K1001.json", "Mahnung_2_K1001.pdf"]  # not rejected
        finish()
    assert cli("import").code == 0
    assert queued(home) == [("2. Mahnung M-2024-17", ("Mahnung_2_K1001.pdf",))]
