"""The message bytes as they go on the wire: well-formed, CRLF only, short lines, attachments intact."""

from __future__ import annotations

import os
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from opos_tui.services.compose import BadLetter, build_message
from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Queue, Recipient


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
    with Queue(tmp_path / "queue.db") as q:
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
    with Queue(tmp_path / "queue.db") as q:
        queued = q.enqueue(replace(good, **change))
        with pytest.raises(BadLetter) as caught:
            build_message(queued, q.attachments(queued.id))
    assert str(caught.value).startswith("this mail cannot be written as an e-mail: ")
    assert len(str(caught.value).splitlines()) == 1
