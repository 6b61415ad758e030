"""A clock a test moves by hand, for the queue's ``clock``: times come out the same on every run."""

from __future__ import annotations


class HandClock:
    def __init__(self, start: float = 1_767_261_600.0) -> None:  # 2026-01-01 10:00 UTC
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
