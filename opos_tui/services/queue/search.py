"""What the queue's text search looks through: one case-folded text per item, kept with the item and
renewed when its recipients change."""

from __future__ import annotations

from collections.abc import Iterable

from opos_tui.services.queue.model import Recipient

SEARCHED_VARS = ("customer_name", "customer_number", "document_number")


def search_text(subject: str, recipients: Iterable[Recipient], vars: dict[str, str]) -> str:
    """Subject, recipient names and addresses, customer name and number and document number, case-folded."""
    parts = [subject, *(f"{r.name} {r.address}" for r in recipients)]
    parts += [vars.get(k, "") for k in SEARCHED_VARS]
    return "\n".join(parts).casefold()


def search_words(search: str) -> list[str]:
    """The words of a search as typed: an item matches when each of them occurs in its search text."""
    return search.casefold().split()
