"""Import of the manifests the accounting system drops into the spool folder.

One JSON manifest per mail, its files beside it::

    {"type": "dunning", "level": 2, "to": ["..."], "cc": [], "attachments": ["Mahnung_2_K1001.pdf"],
     "subject": optional, "body": optional, "vars": {"customer_name": ..., "document_number": ...}}

A good manifest is queued, then moved with its files to ``done/``; a bad one is moved with its files to
``rejected/`` with ``<name>.error.txt`` beside it saying why (``K1001.json`` -> ``K1001.error.txt``). Both
folders are made inside the spool folder read (``spool/inbox/done``, ``spool/inbox/rejected``), so importing
from any folder keeps its results with it and never writes next to it. Nothing is deleted, and nothing is
overwritten: a name already taken gets a numbered suffix. A manifest is identified by its name and content,
so importing the same one again (copied back, or after a crash between queueing and moving) never queues it
twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opos_tui.services.compose import BadLetter, LetterRequest, prepare
from opos_tui.services.errors import ConfigError
from opos_tui.services.files import write_atomic
from opos_tui.services.home import Home
from opos_tui.services.queue import DuplicateImport, Queue
from opos_tui.settings import Settings

FIELDS = {"type", "level", "to", "cc", "attachments", "subject", "body", "vars"}


@dataclass(frozen=True)
class Imported:
    manifest: str
    item_id: int
    duplicate: bool = False
    """True if this manifest had been queued before (as ``item_id``): not queued again."""


@dataclass(frozen=True)
class Rejected:
    manifest: str
    reason: str


@dataclass
class ImportReport:
    inbox: Path
    done: Path
    rejected_dir: Path
    imported: list[Imported] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def default_inbox(home: Home) -> Path:
    """``spool/inbox`` in the home folder, made on first use so the accounting system has a place to drop into."""
    inbox = home.spool_dir / "inbox"
    inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    return inbox


def _strings(manifest: dict[str, Any], key: str, required: bool) -> list[str]:
    value = manifest.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadLetter(f"'{key}' must be a list of texts", f"'{key}' muss eine Liste von Texten sein")
    if required and not value:
        raise BadLetter(f"'{key}' is missing or empty", f"'{key}' fehlt oder ist leer")
    return value


def _optional_text(manifest: dict[str, Any], key: str) -> str | None:
    value = manifest.get(key)
    if value is not None and not isinstance(value, str):
        raise BadLetter(f"'{key}' must be a text", f"'{key}' muss ein Text sein")
    return value


def _attachment_paths(inbox: Path, names: list[str]) -> list[Path]:
    paths: list[Path] = []
    for name in names:
        # Only files beside the manifest: a manifest must not pull files from elsewhere on the server.
        if Path(name).name != name or name in ("", ".", ".."):
            raise BadLetter(
                f"attachment '{name}' must be a file name beside the manifest, not a path",
                f"Anhang '{name}' muss ein Dateiname neben dem Manifest sein, kein Pfad",
            )
        paths.append(inbox / name)
    return paths


def parse_manifest(inbox: Path, raw: bytes) -> tuple[LetterRequest, list[str]]:
    """A manifest's request and the attachment names it references; ``BadLetter`` if it is malformed."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadLetter(f"not valid JSON: {exc}", f"kein gültiges JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BadLetter("the manifest must be a JSON object", "das Manifest muss ein JSON-Objekt sein")
    unknown = sorted(set(manifest) - FIELDS)
    if unknown:
        raise BadLetter(f"unknown field(s): {', '.join(unknown)}", f"unbekannte(s) Feld(er): {', '.join(unknown)}")
    letter_type = manifest.get("type")
    if not isinstance(letter_type, str):
        raise BadLetter("'type' is missing", "'type' fehlt")
    level = manifest.get("level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise BadLetter(f"'level' must be a whole number, not {level!r}", f"'level' muss ganzzahlig sein: {level!r}")
    values = manifest.get("vars", {})
    if not isinstance(values, dict):
        raise BadLetter("'vars' must be an object", "'vars' muss ein Objekt sein")
    names = _strings(manifest, "attachments", required=True)
    request = LetterRequest(
        type=letter_type,
        level=level,
        to=_strings(manifest, "to", required=True),
        cc=_strings(manifest, "cc", required=False),
        attachments=_attachment_paths(inbox, names),
        subject=_optional_text(manifest, "subject"),
        body=_optional_text(manifest, "body"),
        vars=values,
    )
    return request, names


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while target.exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def _move(source: Path, folder: Path) -> Path | None:
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, source.name)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None  # another import moved it first
    return target


def _references(inbox: Path, manifests: list[Path]) -> Counter[str]:
    """How many manifests reference each file: a file shared by two manifests moves with the last one."""
    counts: Counter[str] = Counter()
    for manifest in manifests:
        try:
            _, names = parse_manifest(inbox, manifest.read_bytes())
        except (OSError, BadLetter):
            continue
        counts.update(set(names))
    return counts


def import_spool(settings: Settings, queue: Queue, inbox: Path) -> ImportReport:
    """Queue every ``*.json`` manifest in ``inbox`` (in name order) and move it and its files away."""
    if not inbox.is_dir():
        raise ConfigError(f"spool folder not found: {inbox}", f"Spool-Ordner nicht gefunden: {inbox}")
    report = ImportReport(inbox, inbox / "done", inbox / "rejected")
    manifests = sorted(p for p in inbox.glob("*.json") if p.is_file())
    references = _references(inbox, manifests)
    for manifest in manifests:
        try:
            raw = manifest.read_bytes()
        except FileNotFoundError:
            continue  # taken by a concurrent import
        names: list[str] = []
        try:
            request, names = parse_manifest(inbox, raw)
            request.source_key = hashlib.sha256(manifest.name.encode() + b"\0" + raw).hexdigest()
            try:
                item_id, duplicate = queue.enqueue(prepare(settings, request)).id, False
            except DuplicateImport as known:
                item_id, duplicate = known.item_id, True
        except BadLetter as exc:
            moved = _move(manifest, report.rejected_dir)
            if moved is not None:
                write_atomic(moved.with_suffix(".error.txt"), f"{exc.en}\n{exc.de}\n".encode(), 0o644)
                _move_files(inbox, names, references, report.rejected_dir)
                report.rejected.append(Rejected(manifest.name, exc.en))
            continue
        if _move(manifest, report.done) is not None:
            _move_files(inbox, names, references, report.done)
        report.imported.append(Imported(manifest.name, item_id, duplicate))
    return report


def _move_files(inbox: Path, names: list[str], references: Counter[str], folder: Path) -> None:
    for name in dict.fromkeys(names):
        references[name] -= 1
        path = inbox / name
        if references[name] <= 0 and path.is_file():
            _move(path, folder)
