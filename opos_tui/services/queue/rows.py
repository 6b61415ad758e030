"""What the engines share in reading an item's row: its times, and the fields of an :class:`~.model.ItemRow`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from opos_tui.services.queue.model import LetterType, Status, formatted


class Columns(Protocol):
    """A row of an engine's query, its columns by name (SQLite's ``sqlite3.Row``, PostgreSQL's dict rows)."""

    def __getitem__(self, key: str, /) -> Any: ...


def timestamp(value: float | None) -> datetime | None:
    """A time as both engines store it (seconds since the epoch), in UTC; None for none."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def row_fields(
    r: Columns, *, to: Iterable[Sequence[str]], attachments: Iterable[str], plausible: bool | None
) -> dict[str, Any]:
    """The fields of an :class:`~.model.ItemRow` from a listing's row (its columns named as the fields), with what
    each engine reads its own way: the To recipients as (name, address), the attachments' names and the
    plausibility check's verdict. For an ItemRow, or for a :class:`~.model.QueueItem` made without one first (a
    send run makes an item for every mail)."""
    return {
        "id": int(r["id"]),
        "status": Status(r["status"]),
        "type": LetterType(r["type"]),
        "level": r["level"],
        "to": tuple(formatted(name, address) for name, address in to),
        "customer_name": r["customer_name"],
        "customer_number": r["customer_number"],
        "document_number": r["document_number"],
        "subject": r["subject"],
        "attachments": tuple(attachments),
        "attempts": r["attempts"],
        "error": r["error"],
        "message_id": r["message_id"],
        "created_at": timestamp(r["created_at"]) or datetime.now(UTC),
        "sent_at": timestamp(r["sent_at"]),
        "next_attempt_at": timestamp(r["next_attempt_at"]),
        "plausible": plausible,
    }
