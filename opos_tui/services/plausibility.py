"""Does the attachment belong to this mail? The check that runs before anything goes out.

A dunning letter sent to the wrong customer is the worst thing this tool can do, and the likeliest way it
happens is a swapped file: the accounting system wrote customer A's PDF next to customer B's manifest. So the
text of an item's attachments must name the item's document number, and its customer number where the item
gives one. Anything that cannot be confirmed is flagged, not passed: an item without a document number, or
whose attachments have no readable text (a scan, an encrypted or broken PDF).

Reading PDF text is slow (milliseconds per file), so results are stored in the queue (``Queue.record_checks``)
and computed once per item; attachments never change after enqueue.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from opos_tui.i18n import tr
from opos_tui.services.queue import Attachment, Queue, UnknownItems

MAX_PAGES = 20
"""Pages read per PDF: letters are short, and the numbers stand on the first pages."""


class Problem(StrEnum):
    NO_DOCUMENT_NUMBER = "no-document-number"
    """The item names no document number: there is nothing to compare the attachment with."""
    NO_TEXT = "no-text"
    """No attachment has readable text (a scan, an encrypted or broken PDF)."""
    DOCUMENT_MISSING = "document-missing"
    """The attachments' text does not contain the item's document number."""
    CUSTOMER_MISSING = "customer-missing"
    """The attachments' text does not contain the item's customer number."""


@dataclass(frozen=True)
class Finding:
    """One thing the plausibility check found wrong with a mail, with the value concerned."""

    problem: Problem
    value: str = ""

    def describe(self) -> str:
        return tr(*self.texts())

    def texts(self) -> tuple[str, str]:
        """What is wrong, in English and German."""
        v = self.value
        match self.problem:
            case Problem.NO_DOCUMENT_NUMBER:
                return (
                    "the mail names no document number, so its attachment cannot be checked",
                    "die Mail nennt keine Belegnummer, der Anhang ist nicht prüfbar",
                )
            case Problem.NO_TEXT:
                return (
                    "no attachment has readable text (scan, encrypted or broken PDF)",
                    "kein Anhang hat lesbaren Text (Scan, verschlüsseltes oder defektes PDF)",
                )
            case Problem.DOCUMENT_MISSING:
                return f"document number {v} is not in the attachment", f"Belegnummer {v} steht nicht im Anhang"
            case Problem.CUSTOMER_MISSING:
                return f"customer number {v} is not in the attachment", f"Kundennummer {v} steht nicht im Anhang"


@dataclass(frozen=True)
class Verdict:
    """What the plausibility check found about a mail: nothing (ok) or its findings."""

    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> str:
        return json.dumps([{"problem": f.problem.value, "value": f.value} for f in self.findings])

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        return cls(tuple(Finding(Problem(f["problem"]), f["value"]) for f in json.loads(text)))


@dataclass(frozen=True)
class PdfSummary:
    """What the detail view shows about an attached PDF."""

    pages: int
    first_page_text: str
    error: str | None = None
    """Why the file could not be read as a PDF, else None."""


def read_pdf(data: bytes) -> tuple[list[str], PdfSummary]:
    """The text of a PDF's first pages, and what the detail view shows about it."""
    # pypdf is imported here so that commands that never read a PDF start without it.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about sloppy PDFs would garble the TUI
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return [], PdfSummary(len(reader.pages), "", tr("encrypted", "verschlüsselt"))
        texts = [page.extract_text() or "" for page in reader.pages[:MAX_PAGES]]
        return texts, PdfSummary(len(reader.pages), texts[0] if texts else "")
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        return [], PdfSummary(0, "", str(exc) or type(exc).__name__)


def attachment_text(attachment: Attachment) -> str:
    if attachment.data.startswith(b"%PDF-"):
        return "\n".join(read_pdf(attachment.data)[0])
    if attachment.content_type.startswith("text/"):
        return attachment.data.decode("utf-8", errors="replace")
    return ""


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def names(text: str, number: str) -> bool:
    """Whether ``number`` stands in ``text`` as a whole word: K1001 is not found in K10011."""
    needle = _normalise(number)
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text) is not None


def check(document_number: str, customer_number: str, attachments: Sequence[Attachment]) -> Verdict:
    """The plausibility of one item: its attachments' text must name its document (and customer) number."""
    if not document_number.strip():
        return Verdict((Finding(Problem.NO_DOCUMENT_NUMBER),))
    text = _normalise("\n".join(attachment_text(a) for a in attachments))
    if not text:
        return Verdict((Finding(Problem.NO_TEXT),))
    findings: list[Finding] = []
    if not names(text, document_number):
        findings.append(Finding(Problem.DOCUMENT_MISSING, document_number))
    if customer_number.strip() and not names(text, customer_number):
        findings.append(Finding(Problem.CUSTOMER_MISSING, customer_number))
    return Verdict(tuple(findings))


def check_items(queue: Queue, ids: Sequence[int]) -> dict[int, Verdict]:
    """Check these items and store the results; items deleted meanwhile are left out."""
    results: dict[int, Verdict] = {}
    for item_id in ids:
        try:
            item = queue.get(item_id)
        except UnknownItems:
            continue
        results[item_id] = check(item.document_number, item.customer_number, queue.attachments(item_id))
    queue.record_checks((i, v.ok, v.to_json()) for i, v in results.items())
    return results


def check_unchecked(
    queue: Queue,
    ids: Sequence[int] | None = None,
    *,
    batch: int = 100,
    keep_going: Callable[[], bool] = lambda: True,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Check every unsent item (or those of ``ids``) that has no result yet, newest first, in batches (one
    transaction each). ``keep_going`` is asked before each batch; ``on_batch`` gets (checked, to check).
    Returns how many were checked."""
    todo = queue.unchecked(ids, limit=len(ids) if ids is not None else 1_000_000_000)
    done = 0
    for start in range(0, len(todo), batch):
        if not keep_going():
            break
        check_items(queue, todo[start : start + batch])
        done = min(start + batch, len(todo))
        if on_batch is not None:
            on_batch(done, len(todo))
    return done


def verdict(queue: Queue, item_id: int) -> Verdict:
    """An item's stored result, checking it now if it has none; ``UnknownItems`` if there is no such item."""
    detail = queue.check_detail(item_id)
    if detail is not None:
        return Verdict.from_json(detail)
    found = check_items(queue, [item_id])
    if item_id not in found:
        raise UnknownItems([item_id])
    return found[item_id]
