"""Small, valid PDFs with a real text layer, written by hand (no PDF library needed to make them).

The text is set in Helvetica with WinAnsiEncoding, so German umlauts come out right in any viewer and in a
text extractor: what the queue screen's plausibility check reads.
"""

from __future__ import annotations

from pathlib import Path


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(*lines: str) -> bytes:
    """A one-page A4 PDF showing ``lines`` as text."""
    content = b"BT /F1 12 Tf 72 770 Td 16 TL\n"
    for line in lines:
        content += b"(" + _escape(line) + b") Tj T*\n"
    content += b"ET\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_letter(path: Path, document_number: str, customer_number: str = "", customer: str = "") -> Path:
    """A dunning letter or payment advice PDF whose text names its document (and customer)."""
    lines = [f"Beleg {document_number}"]
    if customer:
        lines.append(f"Kunde {customer}")
    if customer_number:
        lines.append(f"Kundennummer {customer_number}")
    path.write_bytes(make_pdf(*lines, "Bitte überweisen Sie den offenen Betrag."))
    return path
