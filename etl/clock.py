"""Time, injectable: everything that waits or timestamps goes through a Clock.

Tests pass a ``FakeClock`` so that no test sleeps for the real rate limit.

A clock also carries the run's stop request (Ctrl-C sets it): since every wait and
every request goes through the clock, one flag stops them all. A sleep wakes within
``STOP_POLL_SECONDS`` and raises ``Interrupted``; the API client asks
:meth:`raise_if_stopped` before it sends anything.
"""
from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

from .errors import Interrupted

STOP_POLL_SECONDS = 0.2
STOPPED_MESSAGE = "interrupted (Ctrl-C): no further request was sent"


DAY = 86_400.0


def api_day_before(epoch: float) -> date:
    """The day to give IntakeQ's date filters (dateUpdatedStart, dateCreatedStart) so that
    everything since ``epoch`` is covered: the API filters by whole days, in a zone it does
    not state, so one day's margin (the one rule every "changed since" query follows)."""
    return (datetime.fromtimestamp(epoch, timezone.utc) - timedelta(days=1)).date()


def iso_ms(moment: datetime) -> str:
    """A UTC moment (a datetime or pandas Timestamp) as ISO 8601 with milliseconds and a
    ``Z``: ``2026-11-25T18:48:27.120Z``. The one format of instants in files and manifests."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_duration(seconds: float) -> str:
    """A duration as people read it in a plan: ``45 s``, ``12 min``, ``2.5 h``."""
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class _Stoppable:
    """The stop request shared by a run's waits and requests."""

    def __init__(self) -> None:
        # Only set() and is_set() are used: is_set takes no lock, so the signal handler
        # that sets it can never deadlock against the main thread.
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def raise_if_stopped(self) -> None:
        if self._stop.is_set():
            raise Interrupted(STOPPED_MESSAGE)


class SystemClock(_Stoppable):
    """Wall-clock time (epoch seconds) and real sleeps that a stop request cuts short."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        # Short slices: a signal handler cannot end time.sleep early (PEP 475 resumes it),
        # so the flag it sets is looked at between slices.
        deadline = time.monotonic() + max(seconds, 0.0)
        while True:
            self.raise_if_stopped()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, STOP_POLL_SECONDS))


class FakeClock(_Stoppable):
    """A clock that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_760_000_000.0):
        super().__init__()
        self.now = float(start)
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.raise_if_stopped()
        if seconds > 0:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
