"""Time, injectable: everything that waits or timestamps goes through a Clock.

Tests pass a ``FakeClock`` so that no test sleeps for the real rate limit.
"""
from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time (epoch seconds) and real sleeps."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_760_000_000.0):
        self.now = float(start)
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
