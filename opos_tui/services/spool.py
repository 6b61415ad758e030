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

Only regular files of the folder itself are read: a manifest or attachment that is a symbolic link (or has
further names, hard links), a device or a pipe is rejected, checked on the opened file, so nothing can be
swapped in between. Only what has stopped changing is imported: a manifest or attachment that another process
still has open for writing (on Linux, where a read lease tells), or that changes while it is read, is left
in the folder for the next import, and a file is moved only as it was read. The accounting system should
write each file under another name and rename it into place when it is complete, the manifest last
(``K1001.json.tmp`` -> ``K1001.json``): a rename is atomic, so an import never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opos_tui.services.compose import ATTACHMENT, BadLetter, LetterRequest, Reader, prepare
from opos_tui.services.errors import ConfigError
from opos_tui.services.files import (
    FileMissing,
    FileProblem,
    Snapshot,
    StillWriting,
    being_written,
    make_folder,
    narrow,
    read_regular,
    write_atomic,
)
from opos_tui.services.home import Home
from opos_tui.services.queue import DuplicateImport, NewItem, Queue
from opos_tui.services.settings import Settings

FIELDS = {"type", "level", "to", "cc", "attachments", "subject", "body", "vars"}
MANIFEST = ("manifest", "Manifest")
MAX_MANIFEST_BYTES = 1024 * 1024


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
    waiting: list[str] = field(default_factory=list)
    """Manifests left in the folder because they or their files are still being written."""


def default_inbox(home: Home) -> Path:
    """``spool/inbox`` in the home folder, made on first use so the accounting system has a place to drop into."""
    inbox = home.spool_dir / "inbox"
    make_folder(inbox)
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


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise BadLetter(
                f"the key '{key}' appears twice in one object: which one is meant?",
                f"der Schlüssel '{key}' steht zweimal in einem Objekt: welcher ist gemeint?",
            )
        found[key] = value
    return found


def parse_manifest(inbox: Path, raw: bytes) -> tuple[LetterRequest, list[str]]:
    """A manifest's request and the attachment names it references; ``BadLetter`` if it is malformed."""
    return parse_request(raw, lambda names: _attachment_paths(inbox, names))


def parse_request(raw: bytes, paths: Callable[[list[str]], list[Path]]) -> tuple[LetterRequest, list[str]]:
    """A mail in the manifest format (one JSON object), its attachments found by ``paths`` from their names;
    ``BadLetter`` if it is malformed."""
    try:
        manifest = json.loads(raw.decode("utf-8"), object_pairs_hook=_object)
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
        attachments=paths(names),
        subject=_optional_text(manifest, "subject"),
        body=_optional_text(manifest, "body"),
        vars=values,
    )
    return request, names


@dataclass(frozen=True)
class _Folder:
    """The folder imported from, its files opened by name relative to it, never through a link."""

    path: Path
    fd: int | None

    @classmethod
    def open(cls, path: Path) -> _Folder:
        if os.open not in os.supports_dir_fd:
            return cls(path, None)
        return cls(path, os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def _name(self, name: str) -> str | Path:
        return name if self.fd is not None else self.path / name

    def manifests(self) -> list[str]:
        with os.scandir(self.fd if self.fd is not None else self.path) as entries:
            return sorted(e.name for e in entries if e.name.endswith(".json") and not e.is_dir(follow_symlinks=False))

    def read(self, name: str, limit: int, what: tuple[str, str]) -> Snapshot:
        return read_regular(self.path / name, limit, what, dir_fd=self.fd, follow=False)

    def reader(self, snapshots: dict[str, Snapshot]) -> Reader:
        """Reads a manifest's attachments from this folder and keeps what it read in ``snapshots``."""

        def read(path: Path, limit: int) -> Snapshot:
            snapshot = self.read(path.name, limit, ATTACHMENT)
            snapshots[path.name] = snapshot
            return snapshot

        return read

    def settled(self, name: str, snapshots: dict[str, Snapshot]) -> bool:
        """Whether a file may be moved: unchanged since it was read, or (not read) open for writing nowhere."""
        if name in snapshots:
            try:
                now = os.stat(self._name(name), dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            return snapshots[name].unchanged(now)
        try:
            fd = os.open(
                self._name(name),
                os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0),
                dir_fd=self.fd,
            )
        except OSError:
            return True  # gone, or a link: the link itself is moved
        try:
            return not being_written(fd)
        finally:
            os.close(fd)

    def is_folder(self, name: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(self._name(name), dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while os.path.lexists(target):
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def _move(source: Path, folder: Path) -> Path | None:
    make_folder(folder)
    narrow(folder, folder=True)  # made world-readable by an earlier version
    target = _free_name(folder, source.name)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None  # another import moved it first
    return target


def _references(folder: _Folder, manifests: list[str]) -> Counter[str]:
    """How many manifests reference each file: a file shared by two manifests moves with the last one."""
    counts: Counter[str] = Counter()
    for name in manifests:
        try:
            _, names = parse_manifest(folder.path, folder.read(name, MAX_MANIFEST_BYTES, MANIFEST).data)
        except (FileProblem, BadLetter):
            continue
        counts.update(set(names))
    return counts


GROUP = 250
"""Manifests queued in one transaction at most: one durable commit for many mails, as ``enqueue --batch``."""
GROUP_BYTES = 64 * 1024 * 1024
"""Attachment bytes a group holds in memory at most before it is queued."""


@dataclass(frozen=True)
class _Ready:
    """A manifest read and checked, its mail prepared: queued with the others of its group, then moved."""

    name: str
    item: NewItem
    names: list[str]
    snapshots: dict[str, Snapshot]


def import_spool(settings: Settings, queue: Queue, inbox: Path) -> ImportReport:
    """Queue every ``*.json`` manifest in ``inbox`` (in name order) and move it and its files away.

    The mails of up to :data:`GROUP` manifests are queued in one transaction, and only then are those
    manifests moved to ``done/``: a killed import leaves every manifest whose mail is not committed where it
    was, and one whose mail is committed but that was not moved yet is known by its content the next time."""
    if not inbox.is_dir():
        raise ConfigError(f"spool folder not found: {inbox}", f"Spool-Ordner nicht gefunden: {inbox}")
    report = ImportReport(inbox, inbox / "done", inbox / "rejected")
    folder = _Folder.open(inbox)
    try:
        manifests = folder.manifests()
        references = _references(folder, manifests)
        group: list[_Ready] = []
        size = 0
        for name in manifests:
            outcome = _prepare_one(settings, folder, name)
            if isinstance(outcome, _Ready):
                group.append(outcome)
                size += sum(len(a.data) for a in outcome.item.attachments)
                if len(group) >= GROUP or size >= GROUP_BYTES:
                    _queue_group(queue, folder, group, references, report)
                    group, size = [], 0
            elif outcome == "waiting":
                report.waiting.append(name)
            elif isinstance(outcome, tuple):
                # Those before it are moved first: a file it shares with them goes where it always went.
                _queue_group(queue, folder, group, references, report)
                group, size = [], 0
                _reject(folder, name, *outcome, references, report)
        _queue_group(queue, folder, group, references, report)
    finally:
        folder.close()
    return report


def _prepare_one(
    settings: Settings, folder: _Folder, name: str
) -> _Ready | tuple[BadLetter | FileProblem, list[str], dict[str, Snapshot]] | Literal["waiting", "gone"]:
    """Read and check one manifest and its files: its prepared mail, why it is rejected (with the attachment
    names and what was read), ``waiting`` (still being written or changed since it was read) or ``gone``
    (taken by a concurrent import)."""
    snapshots: dict[str, Snapshot] = {}
    names: list[str] = []
    try:
        manifest = folder.read(name, MAX_MANIFEST_BYTES, MANIFEST)
        snapshots[name] = manifest
        request, names = parse_manifest(folder.path, manifest.data)
        request.source_key = hashlib.sha256(name.encode() + b"\0" + manifest.data).hexdigest()
        request.read = folder.reader(snapshots)
        new_item = prepare(settings, request)
    except FileMissing:
        return "gone"
    except StillWriting:
        return "waiting"
    except (BadLetter, FileProblem) as exc:
        if not folder.settled(name, snapshots):
            return "waiting"  # rewritten meanwhile: judged again as it is then
        return exc, names, snapshots
    if not all(folder.settled(n, snapshots) for n in snapshots):
        return "waiting"  # changed since it was read: the next import takes it as it is then
    return _Ready(name, new_item, names, snapshots)


def _queue_group(
    queue: Queue, folder: _Folder, group: list[_Ready], references: Counter[str], report: ImportReport
) -> None:
    """Queue the mails of ``group`` in one transaction, then move each manifest and its files to ``done/``."""
    if not group:
        return
    try:
        queued = [
            (ready, item_id, False)
            for ready, item_id in zip(group, queue.enqueue_many([r.item for r in group]), strict=True)
        ]
    except DuplicateImport:
        # Some were queued before (an import killed between its commit and its moves): one at a time, then.
        queued = []
        for ready in group:
            try:
                queued.append((ready, queue.enqueue_many([ready.item])[0], False))
            except DuplicateImport as known:
                queued.append((ready, known.item_id, True))
    for ready, item_id, duplicate in queued:
        if folder.settled(ready.name, ready.snapshots) and _move(folder.path / ready.name, report.done) is not None:
            _move_files(folder, ready.names, references, ready.snapshots, report.done)
        report.imported.append(Imported(ready.name, item_id, duplicate))


def _reject(
    folder: _Folder,
    name: str,
    exc: BadLetter | FileProblem,
    names: list[str],
    snapshots: dict[str, Snapshot],
    references: Counter[str],
    report: ImportReport,
) -> None:
    moved = _move(folder.path / name, report.rejected_dir)
    if moved is not None:
        write_atomic(moved.with_suffix(".error.txt"), f"{exc.en}\n{exc.de}\n".encode())
        _move_files(folder, names, references, snapshots, report.rejected_dir)
        report.rejected.append(Rejected(name, exc.en))


def _move_files(
    folder: _Folder, names: list[str], references: Counter[str], snapshots: dict[str, Snapshot], target: Path
) -> None:
    for name in dict.fromkeys(names):
        references[name] -= 1
        if references[name] <= 0 and not folder.is_folder(name) and folder.settled(name, snapshots):
            _move(folder.path / name, target)
