"""What the queue holds, independent of where it is stored: items, their statuses and letter types,
what an operator action did, and the errors the queue raises.

Every engine (:mod:`.sqlite` today) speaks in these types; the screens and the command line read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from enum import StrEnum
from pathlib import Path
from typing import Literal

from opos_tui.services.errors import BadInput, OposError


class Status(StrEnum):
    PENDING = "pending"
    """Waiting to be sent."""
    HELD = "held"
    """Kept back by an operator; not sent until released."""
    SENDING = "sending"
    """Claimed by a sender; its data may be on the wire right now."""
    SENT = "sent"
    """The server accepted it (250)."""
    DEFERRED = "deferred"
    """A temporary failure (4xx, connection lost before the data went out); retried after a backoff."""
    FAILED = "failed"
    """A permanent failure (5xx, or deferred for too long); needs an operator."""
    UNCERTAIN = "uncertain"
    """The data may have gone out but no final reply came: an operator decides (retry or mark sent)."""


class LetterType(StrEnum):
    PAYMENT_ADVICE = "payment-advice"
    """Zahlungsavis."""
    DUNNING = "dunning"
    """Mahnung, with a level 1..9."""


RecipientKind = Literal["to", "cc", "bcc"]

# Which statuses each operator action applies to.
HOLDABLE = frozenset({Status.PENDING, Status.DEFERRED})
RELEASABLE = frozenset({Status.HELD})
RETRYABLE = frozenset({Status.DEFERRED, Status.FAILED, Status.UNCERTAIN})
DELETABLE = frozenset({Status.PENDING, Status.HELD, Status.DEFERRED, Status.FAILED, Status.UNCERTAIN})
EDITABLE = DELETABLE


class QueueError(OposError):
    """The queue file cannot be opened or used (not a queue, disk full, locked for too long)."""


class QueueGone(QueueError):
    """The queue file was deleted or replaced by another while it was open: what this connection reads is
    seen by no other process any more."""

    def __init__(self, path: Path, replaced: bool) -> None:
        if replaced:
            en = f"the queue file {path} was replaced by another file while it was open"
            de = f"die Warteschlangendatei {path} wurde während der Nutzung durch eine andere ersetzt"
        else:
            en = f"the queue file {path} was deleted while it was open"
            de = f"die Warteschlangendatei {path} wurde während der Nutzung gelöscht"
        super().__init__(en, de)


class DuplicateImport(OposError):
    """This spool manifest was imported before; ``item_id`` is the item it became."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"already queued as #{item_id}", f"bereits eingereiht als #{item_id}")
        self.item_id = item_id


class UnknownItems(BadInput):
    """Some item numbers do not exist; nothing was changed."""

    def __init__(self, ids: Sequence[int]) -> None:
        listed = ", ".join(f"#{i}" for i in ids)
        super().__init__(f"no such item: {listed}", f"kein solcher Eintrag: {listed}")
        self.ids = tuple(ids)


@dataclass(frozen=True)
class Recipient:
    """One recipient of a mail: To, Cc or Bcc."""

    kind: RecipientKind
    address: str
    name: str = ""
    refused: str | None = None
    """The server's reply if it refused this recipient (while accepting others), else None."""

    def formatted(self) -> str:
        """``Name <addr>`` as typed by a person (not encoded), or the bare address."""
        return formatted(self.name, self.address)


def formatted(name: str, address: str) -> str:
    """A recipient as :meth:`Recipient.formatted` writes it, without making one first."""
    if not name:
        return address
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


@dataclass(frozen=True)
class NewAttachment:
    """A file to go with a mail being queued, under the name the recipient sees."""

    filename: str
    data: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class Rendered:
    """A mail written once, as it goes on the wire (RFC 5322, CRLF line ends, not dot-stuffed), without the
    headers fixed when it is sent: its Date and Message-ID go in at ``at``; its From at the start while the item
    has no sender."""

    data: bytes
    at: int


@dataclass(frozen=True)
class NewItem:
    """A mail ready to be queued: templates already rendered, addresses and files already checked."""

    type: LetterType
    level: int | None
    sender: str
    """The From header as ``Name <addr>`` or the bare address."""
    recipients: tuple[Recipient, ...]
    subject: str
    body: str
    attachments: tuple[NewAttachment, ...]
    reply_to: str = ""
    vars: dict[str, str] = field(default_factory=dict)
    """The item's placeholder values (customer_name, customer_number, document_number, amount, ...)."""
    source_key: str | None = None
    """Identity of the spool manifest it came from: the same key is never queued twice."""
    rendered: Rendered | None = None
    """The mail written once (``compose.prepare``); None: written when it is first claimed."""


@dataclass(frozen=True)
class AttachmentInfo:
    """A queued mail's attachment, without its bytes (for listing)."""

    position: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Attachment(AttachmentInfo):
    """A queued mail's attachment with its bytes."""

    data: bytes


@dataclass(frozen=True)
class Attempt:
    """One entry of a mail's history: a try to send it, or what an operator did with it."""

    at: datetime
    outcome: str
    """``sent``, ``deferred``, ``failed``, ``uncertain``, ``not-sent``, ``held``, ``retry``, ``marked-sent`` or
    ``released``."""
    reply: str
    """The server's reply (code and text) or what happened, e.g. ``451 4.3.0 try again later``."""


@dataclass(frozen=True)
class ItemRow:
    """One line of the queue listing: cheap to load by the page."""

    id: int
    status: Status
    type: LetterType
    level: int | None
    to: tuple[str, ...]
    """The To recipients, formatted as ``Name <addr>`` where a name is known."""
    customer_name: str
    customer_number: str
    document_number: str
    subject: str
    attachments: tuple[str, ...]
    """Attachment file names, in order."""
    attempts: int
    error: str | None
    message_id: str
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    plausible: bool | None
    """Whether the attachments name this item's document (and customer); None while not checked yet."""


@dataclass(frozen=True)
class QueueItem(ItemRow):
    """Everything about one item, for the detail view and for sending."""

    sender: str
    reply_to: str
    recipients: tuple[Recipient, ...]
    body: str
    vars: dict[str, str]
    attachment_infos: tuple[AttachmentInfo, ...]
    history: tuple[Attempt, ...]
    date: str | None
    """The Date header, fixed at the first send so that retries carry the same one."""
    first_attempt_at: datetime | None

    @property
    def envelope_recipients(self) -> tuple[str, ...]:
        """To, Cc and Bcc addresses, each once, in order."""
        return tuple(dict.fromkeys(r.address for r in self.recipients))


@dataclass(frozen=True)
class ActionResult:
    """What an operator action did: the items it changed, and the ones it could not change and why."""

    changed: tuple[int, ...]
    skipped: dict[int, Status]
    """Items whose status does not allow the action, with that status."""


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 in UTC with a ``Z``, as the command line prints it."""
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")
