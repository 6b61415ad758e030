"""The one interface every transport offers, and what it reports back.

A transport is a session: ``connect()`` once (handshake, TLS, login), then ``send()`` many messages over
it, then ``close()``. Failures are raised as ``OposError`` subclasses whose ``category`` tells the
dispatcher what to do (transient: defer and retry; permanent: this mail failed; configuration: stop the
run; interaction: a person must sign in). ``DeliveryUncertain`` says the connection broke after the
message data went out: the mail may have arrived, so it must never be resent automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from opos_tui.services.errors import Category, OposError


@dataclass(frozen=True)
class Envelope:
    """SMTP envelope: MAIL FROM and RCPT TO (To, Cc and Bcc addresses; Bcc never appears in the headers)."""

    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class SendResult:
    """What the server said to one message."""

    reply: str
    """The final reply to the message data, code and text, e.g. ``250 2.0.0 Ok: queued as 4F2A1``."""
    refused: dict[str, str] = field(default_factory=dict)
    """Recipients the server refused while others were accepted: address -> reply (code and text)."""


class DeliveryUncertain(OposError):
    """The message data was sent, but no final reply came: it may have arrived. Never resent by itself."""

    category = Category.PERMANENT


class Transport(Protocol):
    async def connect(self) -> None: ...

    async def send(self, message: bytes, envelope: Envelope) -> SendResult: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
