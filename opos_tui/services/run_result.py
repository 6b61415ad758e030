"""What a send run did, and whether a run would find anything to do: without asyncio or the send run, so
that ``send`` with nothing due (cron, every minute) imports neither."""

from __future__ import annotations

from dataclasses import dataclass, field

from opos_tui.services.errors import OposError
from opos_tui.services.queue import Queue


@dataclass
class RunResult:
    """What a send run did with each mail it took, by outcome (ids), and why it stopped early if it did."""

    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    """Held back by the plausibility check (and not confirmed by the operator)."""
    not_sendable: list[int] = field(default_factory=list)
    """Requested ids that were not pending or deferred (held, sent, ...)."""
    left: int = 0
    """Items this run would still have sent when it ended: those it left pending when it stopped or was
    interrupted (and any queued after its last claim)."""
    stopped: OposError | None = None
    """Why the run stopped early (configuration fault, sign-in needed, server unreachable), else None."""

    @property
    def all_went(self) -> bool:
        return not (self.deferred or self.failed or self.uncertain or self.held or self.not_sendable or self.stopped)

    @property
    def finished(self) -> int:
        """Items this run is done with."""
        return len(self.sent) + len(self.deferred) + len(self.failed) + len(self.uncertain) + len(self.held)


def nothing_due(queue: Queue) -> bool:
    """Whether a run over the whole queue would find nothing to send. Claims whose sender is gone are made
    ``uncertain`` first, as every run does before it counts."""
    queue.recover_stale()
    return queue.sendable_count() == 0
