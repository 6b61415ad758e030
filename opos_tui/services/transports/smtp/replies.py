"""SMTP replies read in order, however many arrive at once: for commands sent in one write (PIPELINING, RFC 2920).

aiosmtplib's protocol reads one reply per command it sent and drops what arrives while a reply waits to be
picked up, so it cannot read the replies to MAIL, RCPT ... and DATA written together. :class:`Replies` takes
over reading the connection from it for the time of one mail and then gives it back. A connection lost
meanwhile is passed on to aiosmtplib's protocol, so its client knows the connection is gone.
"""

from __future__ import annotations

import asyncio

from aiosmtplib import SMTPResponse
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.protocol import SMTPProtocol


class Replies(asyncio.Protocol):
    """Reads the replies on ``inner``'s connection until :meth:`close`, which gives reading back to ``inner``."""

    def __init__(self, inner: SMTPProtocol) -> None:
        transport = inner.transport
        if transport is None or transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        self._inner = inner
        self._transport = transport
        self._buffer = bytearray()
        self._lost: SMTPServerDisconnected | None = None
        self._waiter: asyncio.Future[None] | None = None
        transport.set_protocol(self)

    # --- asyncio.Protocol: what the connection says while this reads it --------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._lost = SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False  # the transport closes, and connection_lost() follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = SMTPServerDisconnected("Connection lost")
        self._wake()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # --- use ------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    async def read(self, timeout: float | None) -> SMTPResponse:
        """The next reply (a multi-line one joined with ``\\n``, as aiosmtplib gives them), waiting at most
        ``timeout`` seconds for it to arrive."""
        while (reply := self._next()) is None:
            if self._lost is not None:
                raise self._lost
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            # A timer rather than asyncio.wait_for, which wraps each wait in a task of its own: three per mail.
            timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return reply

    def close(self) -> bool:
        """Give reading back to aiosmtplib's protocol; False if the server said more than was read (the
        connection is then out of step and must not be used again)."""
        if self._transport.get_protocol() is self and not self._transport.is_closing():
            self._transport.set_protocol(self._inner)
        return not self._buffer

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _next(self) -> SMTPResponse | None:
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            try:
                code = int(line[:3])
            except ValueError:
                text = line.decode("utf-8", "replace").strip()
                raise SMTPResponseException(-1, f"Malformed SMTP response line: {text}") from None
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self._buffer[:start]
                return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))
        return None


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))
