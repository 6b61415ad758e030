"""Real PDFs for the tests: the app's own hand-written PDFs (opos_tui.services.pdf), with a real text layer
that the plausibility check reads."""

from __future__ import annotations

from pathlib import Path

from opos_tui.services.pdf import make_pdf

__all__ = ["make_pdf", "write_letter"]


def write_letter(path: Path, document_number: str, customer_number: str = "", customer: str = "") -> Path:
    """A dunning letter or payment advice PDF whose text names its document (and customer)."""
    lines = [f"Beleg {document_number}"]
    if customer:
        lines.append(f"Kunde {customer}")
    if customer_number:
        lines.append(f"Kundennummer {customer_number}")
    path.write_bytes(make_pdf(*lines, "Bitte überweisen Sie den offenen Betrag."))
    return path
