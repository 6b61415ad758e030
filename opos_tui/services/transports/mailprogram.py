"""What the transports that hand a mail to a local mail program share (Simple MAPI, Outlook, sendmail).

The interface gives every transport the rendered message and its envelope. A mail program on Windows wants
the parts instead: subject, body, recipients by kind, attachments as files. ``parse_mail`` takes them out of
the rendered RFC 5322 bytes (so what goes out is exactly what was queued and checked), and
``attachment_files`` writes the attachments, which are the queue's own copy, into a private folder for the
duration of one call.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self

from opos_tui.services.transports.base import (
    Envelope,
    HandshakeEvent,
    Observer,
    SessionState,
    Stage,
    envelope_address,
)


class LocalSession:
    """What the transports that hand mails to a program on this computer share: a session state (there is no
    channel of their own to encrypt, so ``encrypted`` is True, as the interface asks) and the steps reported
    to the observer. Subclasses implement ``connect``, ``send`` and ``close``."""

    def __init__(self, observer: Observer | None) -> None:
        self.observer = observer
        self._state = SessionState(encrypted=True)

    @property
    def state(self) -> SessionState:
        return self._state

    def _at(self, stage: Stage) -> None:
        """The step now in progress (the one reported as failed if an error follows)."""
        self._state = SessionState(stage, encrypted=True)

    def _report(self, stage: Stage, summary: str) -> None:
        self._at(stage)
        if self.observer is not None:
            self.observer(HandshakeEvent(stage, "ok", summary))

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@dataclass(frozen=True)
class Recipient:
    name: str
    address: str
    """ASCII form (the domain in IDNA form), as a mail program's address book and any relay take it."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedMail:
    subject: str
    body: str
    """The plain-text body with Windows line ends (CRLF)."""
    to: tuple[Recipient, ...]
    cc: tuple[Recipient, ...]
    bcc: tuple[Recipient, ...]
    """The envelope's recipients that are in neither To nor Cc (the archive copy, ``sender.bcc``)."""
    attachments: tuple[Attachment, ...]


def parse_mail(message: bytes, envelope: Envelope) -> ParsedMail:
    """The parts of a rendered mail: subject, plain-text body, To/Cc from its headers, Bcc from the envelope,
    and its attachments with their file names."""
    parsed = message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)

    def listed(name: str) -> tuple[Recipient, ...]:
        header = parsed[name]
        if header is None:
            return ()
        assert isinstance(header, AddressHeader)
        return tuple(Recipient(a.display_name, envelope_address(a.addr_spec)) for a in header.addresses)

    to, cc = listed("To"), listed("Cc")
    shown = {r.address.lower() for r in (*to, *cc)}
    bcc = tuple(
        Recipient("", address)
        for address in dict.fromkeys(envelope_address(r) for r in envelope.recipients)
        if address.lower() not in shown
    )
    body_part = parsed.get_body(preferencelist=("plain",))
    body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")  # Windows line ends, whatever the wire had
    attachments: list[Attachment] = []
    for number, part in enumerate(parsed.iter_attachments(), 1):
        data = part.get_content()
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8")
        attachments.append(Attachment(part.get_filename() or f"attachment-{number}", data))
    return ParsedMail(str(parsed.get("Subject", "")), body, to, cc, bcc, tuple(attachments))


def _safe_name(filename: str, number: int, fits: Callable[[str], bool]) -> str:
    """The attachment's own file name where the file system and the mail program can take it, else a plain one:
    the recipient sees the name of the file, so it is kept whenever possible."""
    name = filename.replace("/", "_").replace("\\", "_").strip(". ")
    if name and not any(c in name for c in '<>:"|?*') and all(ord(c) >= 32 for c in name) and fits(name):
        return name
    suffix = Path(filename).suffix
    return f"attachment-{number}{suffix if suffix[1:].isascii() and suffix[1:].isalnum() else ''}"


@contextmanager
def attachment_files(
    attachments: Sequence[Attachment], fits: Callable[[str], bool] = lambda _name: True
) -> Iterator[list[Path]]:
    """Write the attachments into a new private folder (0700, files 0600), one sub-folder each so equal
    names cannot collide, and yield their full paths; everything is removed afterwards, whatever happened.
    ``fits``: whether a file name can be passed to the mail program (the ANSI code page of old MAPI)."""
    folder = Path(tempfile.mkdtemp(prefix="opos-tui-"))  # mkdtemp: owner-only, whatever the umask
    try:
        paths: list[Path] = []
        for number, attachment in enumerate(attachments, 1):
            slot = folder / str(number)
            slot.mkdir(mode=0o700)
            path = slot / _safe_name(attachment.filename, number, fits)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            with open(descriptor, "wb") as out:
                out.write(attachment.data)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)
