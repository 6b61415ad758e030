"""How a mail's state is shown, in the queue's list and in a mail's detail alike.

Both screens import these; neither imports the other's module for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from opos_tui.i18n import tr
from opos_tui.services.queue import LetterType, Status

POLL_SECONDS = 0.5
"""How often a screen looks at a file for a change: the demo's mail log, a queue file put back at its place.
(The queue itself wakes the screens that follow it: screens/follow.py.)"""

# Colour alone is lost on some SSH terminals: every status has its symbol and its word.
STATUS_SYMBOL: dict[Status, tuple[str, str]] = {
    Status.PENDING: ("○", "bold blue"),
    Status.HELD: ("‖", "yellow"),
    Status.SENDING: ("»", "cyan"),
    Status.SENT: ("✓", "green"),
    Status.DEFERRED: ("↻", "yellow"),
    Status.FAILED: ("✗", "bold red"),
    Status.UNCERTAIN: ("?", "bold magenta"),
}


STATUS_WORDS: dict[Status, tuple[str, str]] = {
    Status.PENDING: ("pending", "wartet"),
    Status.HELD: ("held", "angehalten"),
    Status.SENDING: ("sending", "sendet"),
    Status.SENT: ("sent", "gesendet"),
    Status.DEFERRED: ("deferred", "verschoben"),
    Status.FAILED: ("failed", "fehlerhaft"),
    Status.UNCERTAIN: ("uncertain", "unsicher"),
}
"""Each status's word, English and German."""


def status_word(status: Status) -> str:
    # The language is asked once per word, not for all seven: the list asks for a word per row shown.
    return tr(*STATUS_WORDS[status])


def status_text(status: Status) -> Text:
    symbol, style = STATUS_SYMBOL[status]
    return Text(f"{symbol} {status_word(status)}", style=style)


def type_label(letter_type: LetterType, level: int | None) -> str:
    if letter_type is LetterType.PAYMENT_ADVICE:
        return tr("Advice", "Avis")
    return tr(f"Dunning {level}", f"{level}. Mahnung")


def arrive_twice(uncertain: Sequence[int]) -> str:
    """The warning before uncertain mails go out again, in their detail (r: resend) and in the list (r: retry)."""
    if len(uncertain) == 1:
        return tr(
            f"#{uncertain[0]} may have arrived already: sending it again may deliver it twice.",
            f"#{uncertain[0]} kam vielleicht schon an: erneutes Senden kann sie doppelt zustellen.",
        )
    return tr(
        f"{len(uncertain):,} uncertain mails may have arrived already: sending them again may deliver them twice.",
        f"{len(uncertain):,} unsichere Mails kamen vielleicht schon an: erneutes Senden kann sie doppelt zustellen.",
    )
