"""Bulk enqueue (``opos-tui enqueue --batch``): one mail per line, each line all or nothing.

Each line is one JSON object in the spool manifest format, its attachments paths as given (relative to the
current folder). A line is checked exactly as ``enqueue`` checks one mail (``compose.prepare``) and is
either queued whole or refused with the reason; a refused line never stops the lines after it. The
settings are read once for the whole batch, and the good lines of each chunk are queued in one transaction,
so a month-end run of 10,000 letters costs a few hundred commits rather than 10,000 processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from opos_tui.services.compose import BadLetter, prepare
from opos_tui.services.errors import OposError
from opos_tui.services.queue import NewItem, Queue
from opos_tui.services.settings import Settings
from opos_tui.services.spool import parse_request

CHUNK = 250
"""Lines per transaction: large enough that commits cost little, small enough that results flow steadily."""


@dataclass(frozen=True)
class LineResult:
    """What became of one input line: queued as ``item_id`` with ``message_id``, or refused with ``error``."""

    line: int
    item_id: int | None = None
    message_id: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        if self.error is not None:
            return {"line": self.line, "error": self.error}
        return {"line": self.line, "id": self.item_id, "message_id": self.message_id}


def _paths(names: list[str]) -> list[Path]:
    return [Path(name) for name in names]


def _prepare(settings: Settings, raw: bytes) -> NewItem:
    if not raw.strip():
        raise BadLetter("an empty line: give one JSON object per line", "eine leere Zeile: ein JSON-Objekt pro Zeile")
    request, _ = parse_request(raw, _paths)
    return prepare(settings, request)


def enqueue_lines(settings: Settings, queue: Queue, lines: Iterable[bytes]) -> Iterator[LineResult]:
    """Queue the mail of every line; one result per line, in order, as soon as its chunk is committed."""
    chunk: list[tuple[int, NewItem | OposError]] = []
    for number, raw in enumerate(lines, start=1):
        try:
            chunk.append((number, _prepare(settings, raw)))
        except OposError as exc:
            chunk.append((number, exc))
        if len(chunk) == CHUNK:
            yield from _commit(queue, chunk)
            chunk = []
    yield from _commit(queue, chunk)


def _commit(queue: Queue, chunk: list[tuple[int, NewItem | OposError]]) -> Iterator[LineResult]:
    good = [(number, item) for number, item in chunk if isinstance(item, NewItem)]
    ids = dict(zip([n for n, _ in good], queue.enqueue_many([i for _, i in good]), strict=True)) if good else {}
    message_ids = queue.message_ids(list(ids.values())) if ids else {}
    for number, outcome in chunk:
        if isinstance(outcome, OposError):
            yield LineResult(number, error=str(outcome))
        else:
            yield LineResult(number, ids[number], message_ids[ids[number]])
