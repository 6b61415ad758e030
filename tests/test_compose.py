"""The message bytes as they go on the wire: well-formed, CRLF only, short lines, attachments intact."""

from __future__ import annotations

import os
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from opos_tui.services import settings
from opos_tui.services.compose import (
    REPORT_SECTIONS,
    SAMPLE_VALUES,
    BadLetter,
    LetterRequest,
    build_message,
    prepare,
    preview,
    report_of,
)
from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Recipient, SqliteQueue
from tests.pdfs import write_letter


def test_several_attachments_of_any_size_arrive_intact(tmp_path: Path) -> None:
    blobs = [b"%PDF-" + os.urandom(n) for n in (0, 1, 52, 57 * 100, 57 * 100 + 1, 300_001)]
    blobs.append(b"plain text, \xe4\xf6\xfc\r\n and a bare \n line feed")
    item = NewItem(
        type=LetterType.PAYMENT_ADVICE,
        level=None,
        sender="Müller GmbH <a@mueller.example>",
        recipients=(Recipient("to", "k@aerger.example", "Ärger, Jörg"),),
        subject="Zahlungsavis Ä" * 10,
        body="Zeile 1\nZeile 2 – Grüße\n" + "lang " * 100,
        attachments=tuple(NewAttachment(f"Anhang_{i}_ä.pdf", blob) for i, blob in enumerate(blobs)),
    )
    with SqliteQueue(tmp_path / "queue.db") as q:
        queued = q.enqueue(item)
        raw = build_message(queued, q.attachments(queued.id))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == '"Ärger, Jörg" <k@aerger.example>'
    assert parsed["Subject"] == "Zahlungsavis Ä" * 10
    assert "Date" not in parsed  # not sent yet: the Date is fixed at the first send
    got = [(a.get_filename(), a.get_content()) for a in parsed.iter_attachments()]
    assert got == [(f"Anhang_{i}_ä.pdf", blob) for i, blob in enumerate(blobs)]


OLD_CRASHERS = {
    "non-ASCII local part": {"recipients": (Recipient("to", "jörg@aerger.example"),)},
    "leading dot": {"recipients": (Recipient("to", ".joerg@aerger.example"),)},
    "trailing dot": {"recipients": (Recipient("to", "joerg.@aerger.example"),)},
    "two dots": {"recipients": (Recipient("to", "jo..erg@aerger.example"),)},
    **{f"{ch!r} in the subject": {"subject": f"Zahlungsavis{ch}Z-1"} for ch in "\u2028\u2029\x85\v\f\x1c\x1d\x1e"},
    "\\v in a file name": {"attachments": (NewAttachment("Avis\vZ-1.pdf", b"%PDF-1.4"),)},
}


@pytest.mark.parametrize("change", OLD_CRASHERS.values(), ids=OLD_CRASHERS.keys())
def test_a_mail_queued_unchecked_by_an_older_version_fails_with_a_reason(tmp_path: Path, change: dict) -> None:
    # Queued directly, as older versions did; `send` used to crash on it with the email package's error.
    good = NewItem(
        type=LetterType.PAYMENT_ADVICE,
        level=None,
        sender="Müller GmbH <a@mueller.example>",
        recipients=(Recipient("to", "k@aerger.example"),),
        subject="Zahlungsavis Z-1",
        body="Guten Tag\n",
        attachments=(NewAttachment("Avis_Z-1.pdf", b"%PDF-1.4"),),
    )
    with SqliteQueue(tmp_path / "queue.db") as q:
        queued = q.enqueue(replace(good, **change))
        with pytest.raises(BadLetter) as caught:
            build_message(queued, q.attachments(queued.id))
    assert str(caught.value).startswith("this mail cannot be written as an e-mail: ")
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("section", REPORT_SECTIONS)
@pytest.mark.parametrize("language", ["de", "en"])
def test_the_preview_is_the_mail_a_queued_item_gets(tmp_path: Path, section: str, language: str) -> None:
    every = " ".join("${" + name + "}" for name in settings.LETTER_VALUES)
    level = "" if section == "payment_advice" else " ${level}"
    current = settings.Settings()
    for key, value in [
        ("letters.language", language),
        ("sender.address", "buchhaltung@mueller.example"),
        ("letters.signature", "Müller GmbH\n${customer_number}"),
        ("letters.attachment_name", "${stem}_${customer_number}.${ext}"),
        ("dunning_3.subject", f"Mahnung{level}: {every}"),
        ("payment_advice.body", f"Avis\n{every}"),
    ]:
        current = settings.with_value(current, key, value)
    shown = preview(current, section)
    letter_type, level_number = report_of(section)
    stem = "Zahlungsavis" if level_number is None else f"Mahnung_{level_number}"
    pdf = write_letter(tmp_path / f"{stem}_RE-2025-0815.pdf", "RE-2025-0815")
    request = LetterRequest(
        type=letter_type.value, level=level_number, to=[shown.to], attachments=[pdf], vars=SAMPLE_VALUES[language]
    )
    item = prepare(current, request)
    assert (shown.subject, shown.body, shown.sender) == (item.subject, item.body, item.sender)
    assert [shown.attachment] == [a.filename for a in item.attachments]
    assert "${" not in shown.subject + shown.body + shown.attachment


def test_a_template_no_sample_can_fill_is_named_in_the_preview() -> None:
    # ${level} in the global subject is fine for dunning letters, but a payment advice has no level.
    current = settings.with_value(settings.Settings(), "letters.subject", "Stufe ${level}")
    assert preview(current, "dunning_4").subject == "Stufe 4"
    with pytest.raises(BadLetter, match=r"letters\.subject uses \$\{level\}"):
        preview(current, "payment_advice")


def test_the_faster_header_factory_writes_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header classes made once per kind (not once per header) change nothing on the wire: the message is
    byte for byte the one the email package's own SMTP policy writes (with the same MIME boundary)."""
    import random

    from opos_tui.services import compose

    item = NewItem(
        type=LetterType.DUNNING,
        level=2,
        sender="Müller GmbH – Buchhaltung <buchhaltung@mueller.example>",
        recipients=(
            Recipient("to", "joerg@aerger.example", "Ärger, Jörg"),
            Recipient("cc", "kunde@xn--mller-stahl-thb.de", "Müller Stahl"),
        ),
        subject="2. Mahnung R-2024-0815 für Ärger & Söhne KG " * 3,
        body="Sehr geehrte Damen und Herren,\n\nanbei – Grüße\n" + "lang " * 100,
        attachments=(NewAttachment("Mahnung_2_Größe.pdf", b"%PDF-1.4\n" + os.urandom(5000)),),
        reply_to="antwort@mueller.example",
    )
    with SqliteQueue(tmp_path / "queue.db") as q:
        queued = q.get(q.enqueue(item).id)
        stored = q.attachments(queued.id)
    ours = compose.WIRE
    assert ours is not policy.SMTP
    written = []
    for chosen in (ours, policy.SMTP):
        monkeypatch.setattr(compose, "WIRE", chosen)
        random.seed(2920)  # the MIME boundary is random
        written.append(build_message(queued, stored))
    assert written[0] == written[1]


def test_the_boundary_is_the_one_the_email_package_would_choose() -> None:
    """The boundary is set before writing (the email package would compile a regular expression per mail to
    choose one); it has the package's own form and, from the same random state, the same value."""
    import random
    from email.generator import Generator

    from opos_tui.services import compose

    random.seed(2920)
    ours = compose._boundary()
    random.seed(2920)
    assert ours == Generator._make_boundary()  # type: ignore[attr-defined]
