"""The two headers the queue fixes for a mail: its Message-ID when it is queued (so a resend after a crash is
recognisable as the same mail) and its Date when it is first sent (so retries carry the same one)."""

from __future__ import annotations

from email.utils import formatdate

from opos_tui.services.addresses import new_message_id

__all__ = ["date_header", "new_message_id"]


_last: tuple[int, str] = (-1, "")
"""The last second a Date header was written for, and that header: a run writes the same one for many mails."""


def date_header(at: float) -> str:
    """The Date header for a first send at ``at`` (seconds since the epoch), in local time as mail clients
    write it."""
    global _last
    second, last = int(at), _last  # read once: another thread may write it meanwhile
    if last[0] != second:
        last = _last = (second, formatdate(second, localtime=True))
    return last[1]
