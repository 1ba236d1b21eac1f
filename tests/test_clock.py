"""The clock carries the run's stop request (Ctrl-C): sleeps wake on it, requests ask it first."""
from __future__ import annotations

import threading
import time

import pytest

from etl.api import Ledger
from etl.clock import FakeClock, SystemClock
from etl.errors import Interrupted


def test_a_real_sleep_wakes_within_a_second_of_a_stop_request():
    clock = SystemClock()
    threading.Timer(0.1, clock.request_stop).start()   # as the SIGINT handler would
    started = time.monotonic()
    with pytest.raises(Interrupted):
        clock.sleep(3600)
    assert time.monotonic() - started < 1.0


def test_a_sleep_after_a_stop_request_does_not_start():
    clock = FakeClock()
    clock.request_stop()
    with pytest.raises(Interrupted):
        clock.sleep(60)
    assert clock.slept == []


def test_a_full_minute_window_wait_stops_without_recording_a_request(tmp_path):
    clock = FakeClock()
    ledger = Ledger(tmp_path / "ledger.sqlite", max_per_minute=2, max_per_day=0, clock=clock)
    for _ in range(2):
        ledger.complete(ledger.reserve())
    clock.request_stop()
    with pytest.raises(Interrupted):
        ledger.reserve()                                 # would wait for the minute window
    assert ledger.usage().used_24h == 2
    ledger.close()
