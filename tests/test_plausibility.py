"""The plausibility check on real PDFs: a swapped attachment is flagged, a matching one passes, results are
stored once per item."""

from __future__ import annotations

from pathlib import Path

import pytest

from opos_tui.services import plausibility
from opos_tui.services.plausibility import Problem
from opos_tui.services.queue import Attachment, LetterType, NewAttachment, NewItem, Recipient, SqliteQueue, UnknownItems
from tests.pdfs import make_pdf
from tests.test_queue_sqlite import a_file_of_version


def pdf(*lines: str) -> Attachment:
    data = make_pdf(*lines)
    return Attachment(0, "Mahnung.pdf", "application/pdf", len(data), data)


def problems(verdict: plausibility.Verdict) -> list[tuple[Problem, str]]:
    return [(f.problem, f.value) for f in verdict.findings]


def test_a_letter_naming_its_document_and_customer_passes() -> None:
    verdict = plausibility.check("R-2024-0815", "K1001", [pdf("2. Mahnung R-2024-0815", "Kundennummer K1001")])
    assert verdict.ok
    assert verdict.findings == ()


def test_a_swapped_letter_is_flagged_for_document_and_customer() -> None:
    other_customers_letter = pdf("2. Mahnung R-2024-0816", "Kundennummer K1002")
    verdict = plausibility.check("R-2024-0815", "K1001", [other_customers_letter])
    assert not verdict.ok
    assert problems(verdict) == [(Problem.DOCUMENT_MISSING, "R-2024-0815"), (Problem.CUSTOMER_MISSING, "K1001")]
    assert "R-2024-0815" in verdict.findings[0].describe()


def test_numbers_count_as_whole_words_only() -> None:
    # K1001 must not be found inside K10011, nor R-1 inside R-10.
    verdict = plausibility.check("R-1", "K1001", [pdf("Beleg R-10", "Kundennummer K10011")])
    assert problems(verdict) == [(Problem.DOCUMENT_MISSING, "R-1"), (Problem.CUSTOMER_MISSING, "K1001")]


def test_any_attachment_may_name_the_document_and_case_and_spacing_do_not_matter() -> None:
    terms = pdf("Allgemeine Geschäftsbedingungen")
    letter = pdf("Zahlungsavis   za-77", "Kundennummer k1001")
    assert plausibility.check("ZA-77", "K1001", [terms, letter]).ok


def test_what_cannot_be_confirmed_is_flagged() -> None:
    assert problems(plausibility.check("", "K1", [pdf("Beleg R-1")])) == [(Problem.NO_DOCUMENT_NUMBER, "")]
    assert problems(plausibility.check("R-1", "", [pdf()])) == [(Problem.NO_TEXT, "")]
    broken = Attachment(0, "x.pdf", "application/pdf", 12, b"%PDF-1.4 junk")
    assert problems(plausibility.check("R-1", "", [broken])) == [(Problem.NO_TEXT, "")]


def test_a_customer_number_is_only_checked_where_given() -> None:
    assert plausibility.check("R-1", "", [pdf("Beleg R-1")]).ok


def test_read_pdf_gives_pages_and_the_first_pages_text() -> None:
    texts, summary = plausibility.read_pdf(make_pdf("Beleg R-1", "Bitte überweisen Sie"))
    assert summary.pages == 1 and summary.error is None
    assert "Bitte überweisen Sie" in summary.first_page_text
    assert texts == [summary.first_page_text]
    _, broken = plausibility.read_pdf(b"%PDF-1.4 junk")
    assert broken.error


def new_item(document: str, attachment: bytes) -> NewItem:
    return NewItem(
        type=LetterType.DUNNING,
        level=1,
        sender="buchhaltung@example.test",
        recipients=(Recipient("to", "kunde@example.test"),),
        subject=f"1. Mahnung {document}",
        body="Guten Tag\n",
        attachments=(NewAttachment("Mahnung.pdf", attachment),),
        vars={"customer_name": "Müller GmbH", "customer_number": "K1001", "document_number": document},
    )


def test_results_are_stored_in_the_queue_once(tmp_path: Path) -> None:
    with SqliteQueue(tmp_path / "queue.db") as queue:
        good, swapped = queue.enqueue_many(
            [
                new_item("R-1", make_pdf("Beleg R-1", "Kundennummer K1001")),
                new_item("R-2", make_pdf("Beleg R-3", "Kundennummer K1003")),
            ]
        )
        assert [r.plausible for r in queue.page()] == [None, None]
        assert queue.unchecked() == [swapped, good]
        assert plausibility.check_unchecked(queue) == 2
        assert queue.unchecked() == []
        assert {r.id: r.plausible for r in queue.page()} == {good: True, swapped: False}
        assert queue.flagged([good, swapped]) == [swapped]
        # Stored, not recomputed: the verdict comes from the queue.
        assert not plausibility.verdict(queue, swapped).ok
        assert plausibility.check_unchecked(queue) == 0
        with pytest.raises(UnknownItems):
            plausibility.verdict(queue, 999)
        # A deleted item takes its result with it.
        queue.delete([swapped])
        assert queue.flagged([swapped]) == []


def test_a_queue_of_schema_1_gains_the_results_table(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    a_file_of_version(path, 1)
    with SqliteQueue(path) as queue:
        (item_id,) = queue.enqueue_many([new_item("R-1", make_pdf("Beleg R-1", "K1001"))])
        assert plausibility.verdict(queue, item_id).ok
