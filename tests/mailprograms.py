"""A queued mail rendered as `send` renders it (and left pending), for the transports that hand mails to a
local mail program: To with an umlaut name, Cc, the archive Bcc of the settings, two PDFs with umlaut names."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from opos_tui.services.compose import LetterRequest, build_message, prepare
from opos_tui.services.home import Home
from opos_tui.services.queue import open_queue
from opos_tui.services.settings import check
from opos_tui.services.transports.base import Envelope
from tests.pdfs import write_letter

TO = "Jörg Ärger <joerg@kunde.example>"
CC = "buchhaltung@kunde.example"
BCC = "archiv@mueller.example"
SENDER = "buchhaltung@mueller.example"
SUBJECT = "1. Mahnung M-2024-0001 – Jörg Ärger & Söhne"


@dataclass(frozen=True)
class Rendered:
    message: bytes
    envelope: Envelope
    pdfs: tuple[Path, ...]
    item_id: int


def rendered_mail(home: Home, tmp_path: Path) -> Rendered:
    settings = check({"sender": {"address": SENDER, "name": "Müller GmbH", "bcc": BCC}, "connection": "smtp"})
    pdfs = (
        write_letter(tmp_path / "Mahnung_1_Jörg_Ärger.pdf", "M-2024-0001", "K1001", "Jörg Ärger"),
        write_letter(tmp_path / "Kontoauszug_Übersicht.pdf", "M-2024-0001"),
    )
    request = LetterRequest(
        "dunning",
        level=1,
        to=[TO],
        cc=[CC],
        attachments=list(pdfs),
        subject=SUBJECT,
        body="Sehr geehrter Herr Ärger,\nbitte überweisen Sie 1.234,56 € bis zum 31.12.\n",
        vars={"customer_name": "Jörg Ärger & Söhne", "document_number": "M-2024-0001"},
    )
    with open_queue(home) as queue:
        queued = queue.enqueue(prepare(settings, request))
        item = queue.claim([queued.id])  # as `send` does: this fixes its Date header
        assert item is not None
        message = build_message(item, queue.attachments(item.id))
        queue.unclaim(item.id, "rendered for a test")
        envelope = Envelope(parseaddr(item.sender)[1], item.envelope_recipients)
    return Rendered(message, envelope, pdfs, item.id)
