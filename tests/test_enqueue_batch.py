"""`opos-tui enqueue --batch -`: one mail per JSON line, each line queued whole or refused with its reason,
one result line per input line, exit 1 if any line was refused, 2 for unusable usage."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import batch
from opos_tui.services.home import Home
from opos_tui.services.queue import SqliteQueue
from tests.conftest import Cli
from tests.pdfs import write_letter


@pytest.fixture
def sender(cli: Cli, home: Home) -> None:
    assert cli("config", "set", "sender.address", "buchhaltung@mueller.example").code == 0


@pytest.fixture
def letters(tmp_path: Path) -> Path:
    """A working folder with two letters in a subfolder, as the accounting system leaves them."""
    (tmp_path / "out").mkdir()
    write_letter(tmp_path / "out" / "Mahnung_K1.pdf", "M-1", "K1", "Ärger & Söhne KG")
    write_letter(tmp_path / "out" / "Avis_K2.pdf", "Z-2", "K2", "Müller GmbH")
    return tmp_path


def manifest(n: int, attachments: list[str] | None = None, **changed: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "dunning",
        "level": 2,
        "to": [f"Kunde {n} <kunde{n}@aerger.example>"],
        "attachments": attachments or ["out/Mahnung_K1.pdf"],
        "vars": {"customer_name": f"Ärger {n}", "document_number": f"M-{n}", "customer_number": "K1"},
    }
    return line | changed


def run_batch(folder: Path, lines: list[str], *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    """The real command in a process of its own, started in ``folder``, the lines on its standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "opos_tui", "enqueue", "--batch", "-", *extra],
        input="".join(line + "\n" for line in lines).encode(),
        capture_output=True,
        cwd=folder,
        env=os.environ,
        timeout=120,
    )
    out = done.stdout.decode()
    return done.returncode, [json.loads(line) for line in out.splitlines()], done.stderr.decode()


def queued(home: Home) -> list[tuple[int, str, str, list[str]]]:
    """(id, message_id, first recipient, attachment names) of every queued mail, oldest first."""
    with SqliteQueue(home.queue_db) as q:
        items = [q.get(i) for i in sorted(q.ids())]
    return [(i.id, i.message_id, i.recipients[0].address, list(i.attachments)) for i in items]


def test_mixed_lines_one_result_each_good_ones_queued(home: Home, sender: None, letters: Path) -> None:
    lines = [
        json.dumps(manifest(1)),
        json.dumps(manifest(2, to=["not an address"])),
        "",
        "{not json",
        json.dumps(manifest(3, attachments=["out/missing.pdf"])),
        json.dumps(manifest(4, type="payment-advice", level=None, attachments=["out/Avis_K2.pdf"])),
        json.dumps(manifest(5, vars={"document_number": "M-5"})),  # the shipped text needs customer_name
        json.dumps(["a list"]),
        json.dumps(manifest(6, extra="field")),
    ]
    code, results, err = run_batch(letters, lines)
    assert code == 1, err
    assert [r["line"] for r in results] == list(range(1, len(lines) + 1))
    good = [r for r in results if "error" not in r]
    assert [r["line"] for r in good] == [1, 6]
    assert all(set(r) == {"line", "id", "message_id"} for r in good)
    bad = {r["line"]: r["error"] for r in results if "error" in r}
    assert all(set(r) == {"line", "error"} for r in results if "error" in r)
    assert "'not an address'" in bad[2]
    assert "empty line" in bad[3]
    assert "not valid JSON" in bad[4]
    assert "not found: out/missing.pdf" in bad[5]
    assert "${customer_name}" in bad[7]
    assert "JSON object" in bad[8]
    assert "extra" in bad[9]
    assert queued(home) == [
        (good[0]["id"], good[0]["message_id"], "kunde1@aerger.example", ["Mahnung_K1.pdf"]),
        (good[1]["id"], good[1]["message_id"], "kunde4@aerger.example", ["Avis_K2.pdf"]),
    ]


def test_all_good_exits_0_attachments_relative_to_the_current_folder(home: Home, sender: None, letters: Path) -> None:
    code, results, err = run_batch(letters, [json.dumps(manifest(n)) for n in range(3)])
    assert code == 0, err
    assert err == ""
    assert [(r["line"], r["id"]) for r in results] == [(1, 1), (2, 2), (3, 3)]
    assert [m for _, m, _, _ in queued(home)] == [r["message_id"] for r in results]


def test_a_refused_line_leaves_nothing_of_itself(home: Home, sender: None, letters: Path) -> None:
    """The first attachment of line 2 is fine, its second is missing: nothing of line 2 is queued, not its
    recipients, not its first attachment."""
    lines = [
        json.dumps(manifest(1)),
        json.dumps(manifest(2, attachments=["out/Avis_K2.pdf", "out/missing.pdf"])),
        json.dumps(manifest(3)),
    ]
    code, results, _ = run_batch(letters, lines)
    assert code == 1
    assert "error" in results[1]
    db = sqlite3.connect(home.queue_db)
    counts = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("items", "recipients")]
    names = [row[0] for row in db.execute("SELECT filename FROM attachments ORDER BY item_id")]
    db.close()
    assert counts == [2, 2]
    assert names == ["Mahnung_K1.pdf", "Mahnung_K1.pdf"]


def test_results_keep_their_order_across_chunks(
    home: Home, sender: None, letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several transactions (a chunk of 4 lines here), refused lines among them, at a chunk's border too."""
    monkeypatch.setattr(batch, "CHUNK", 4)
    monkeypatch.chdir(letters)
    lines = [json.dumps(manifest(n, to=["bad"] if n in (3, 4, 9) else [f"k{n}@aerger.example"])) for n in range(1, 11)]
    with SqliteQueue(home.queue_db) as q:
        results = list(batch.enqueue_lines(settings_of(home), q, [line.encode() for line in lines]))
    assert [r.line for r in results] == list(range(1, 11))
    assert [r.line for r in results if r.error] == [3, 4, 9]
    assert [r.item_id for r in results if not r.error] == [1, 2, 3, 4, 5, 6, 7]
    assert [a for _, _, a, _ in queued(home)] == [f"k{n}@aerger.example" for n in (1, 2, 5, 6, 7, 8, 10)]


def settings_of(home: Home) -> Any:
    from opos_tui.services import settings

    return settings.load(home)


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "--batch", "-", "--to", "k@aerger.example"],
        ["enqueue", "--batch", "-", "--type", "dunning"],
        ["enqueue", "--type", "dunning", "--to", "k@aerger.example"],
        ["enqueue", "--batch", "no-such-file.jsonl"],
    ],
)
def test_unusable_usage_exits_2_and_queues_nothing(cli: Cli, home: Home, sender: None, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2
    assert result.err.startswith("opos-tui: ")
    assert "Traceback" not in result.err
    assert not home.queue_db.exists()
