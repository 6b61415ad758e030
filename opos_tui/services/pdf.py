"""Small, valid PDFs with a real text layer, written by hand (no PDF library needed to make them).

The text is set in Helvetica with WinAnsiEncoding, so German umlauts come out right in any viewer and in a
text extractor (what the plausibility check reads). Used for the demo's letters and by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points


@dataclass(frozen=True)
class TextLine:
    """One line of text at a position on the page, in points from the bottom left corner."""

    x: float
    y: float
    text: str
    size: float = 10
    bold: bool = False


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


_FONTS = (b"Helvetica", b"Helvetica-Bold")


def _document(content: bytes, fonts: int) -> bytes:
    """The PDF file around one page's content stream, with the first ``fonts`` of ``_FONTS`` as /F1, /F2."""
    font_refs = b" ".join(f"/F{n + 1} {5 + n} 0 R".encode() for n in range(fonts))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] /Contents 4 0 R".encode()
        + b" /Resources << /Font << "
        + font_refs
        + b" >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"endstream",
        *(
            b"<< /Type /Font /Subtype /Type1 /BaseFont /" + name + b" /Encoding /WinAnsiEncoding >>"
            for name in _FONTS[:fonts]
        ),
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


def page_pdf(lines: Sequence[TextLine]) -> bytes:
    """A one-page A4 PDF showing each line where it says, in Helvetica or Helvetica-Bold."""
    content = bytearray()
    for line in lines:
        font = b"/F2" if line.bold else b"/F1"
        content += b"BT " + font + f" {line.size:g} Tf {line.x:g} {line.y:g} Td (".encode()
        content += _escape(line.text) + b") Tj ET\n"
    return _document(bytes(content), fonts=2)


def make_pdf(*lines: str) -> bytes:
    """A one-page A4 PDF showing ``lines`` as 12 pt text from the top left, one below the other."""
    content = b"BT /F1 12 Tf 72 770 Td 16 TL\n"
    for line in lines:
        content += b"(" + _escape(line) + b") Tj T*\n"
    content += b"ET\n"
    return _document(content, fonts=1)
