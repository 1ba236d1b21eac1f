"""The ledger: minute throttle, daily budget, sharing between processes (no real sleeps)."""
from __future__ import annotations

import multiprocessing
import stat

import pytest

from etl.api import Ledger
from etl.api.ledger import DAY, seconds_needed
from etl.clock import FakeClock, SystemClock
from etl.config import Settings
from etl.errors import BudgetExhausted


def make_ledger(tmp_path, *, per_minute=10, per_day=500, clock=None) -> Ledger:
    return Ledger(tmp_path / "acct" / "ledger.sqlite", max_per_minute=per_minute,
                  max_per_day=per_day, clock=clock or FakeClock())


def send(ledger: Ledger, clock: FakeClock, latency: float = 0.0) -> None:
    """One request: reserve, the response arrives ``latency`` later, complete."""
    row = ledger.reserve()
    clock.advance(latency)
    ledger.complete(row)


def test_ten_requests_at_ten_a_minute_never_wait(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, clock=clock)
    for _ in range(10):
        send(ledger, clock, latency=0.2)
    assert clock.slept == []


def test_the_eleventh_waits_until_sixty_seconds_after_the_first_response(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, clock=clock)
    arrivals = []
    for _ in range(11):
        send(ledger, clock, latency=0.5)
        arrivals.append(clock.time())
    # The 11th was sent once the first response (not its request) was 60 s old.
    eleventh_sent = arrivals[10] - 0.5
    assert eleventh_sent == pytest.approx(arrivals[0] + 60)
    assert sum(clock.slept) == pytest.approx(arrivals[0] + 60 - (arrivals[9]))


def test_sliding_window_never_holds_more_than_the_limit(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=3, per_day=0, clock=clock)
    sent_at = []
    for _ in range(10):
        row = ledger.reserve()
        sent_at.append(clock.time())
        clock.advance(1.0)
        ledger.complete(row)
    for t in sent_at:
        in_window = [s for s in sent_at if t - 60 < s <= t]
        assert len(in_window) <= 3


def test_budget_exhausted_says_how_many_and_when_it_frees(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=1000, per_day=5, clock=clock)
    first_arrival = None
    for _ in range(5):
        send(ledger, clock, latency=1.0)
        first_arrival = first_arrival or clock.time()
    with pytest.raises(BudgetExhausted) as caught:
        ledger.reserve()
    err = caught.value
    assert (err.used, err.limit) == (5, 5)
    assert err.frees_at == pytest.approx(first_arrival + DAY)
    assert "5 of 5" in err.message and "frees up at" in err.message
    assert err.exit_code == 75
    # Rejected reserves record nothing; a day later the first one frees up.
    assert ledger.usage().used_24h == 5
    clock.now = first_arrival + DAY + 0.001
    ledger.reserve()
    assert ledger.usage().used_24h == 5


def test_no_daily_budget_still_records(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=10_000, per_day=0, clock=clock)
    for _ in range(600):
        send(ledger, clock)
    usage = ledger.usage()
    assert (usage.used_24h, usage.limit, usage.remaining, usage.next_free_at) == (600, 0, None, None)


def test_any_large_limit_is_accepted(tmp_path):
    ledger = make_ledger(tmp_path, per_minute=10**9, per_day=10**12)
    ledger.reserve()
    assert ledger.usage().remaining == 10**12 - 1


def test_usage_reports_the_rolling_day(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=100, per_day=500, clock=clock)
    send(ledger, clock)
    first = clock.time()
    clock.advance(3600)
    for _ in range(3):
        send(ledger, clock)
    usage = ledger.usage()
    assert (usage.used_24h, usage.limit, usage.remaining) == (4, 500, 496)
    assert usage.next_free_at == pytest.approx(first + DAY)
    clock.advance(DAY - 3600 + 1)
    assert ledger.usage().used_24h == 3


def test_old_rows_are_pruned(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=10_000, per_day=0, clock=clock)
    for _ in range(150):
        send(ledger, clock)
    clock.advance(DAY + 1)
    for _ in range(100):
        send(ledger, clock)
    (rows,) = ledger._connection().execute("SELECT COUNT(*) FROM requests").fetchone()
    assert rows < 250
    assert ledger.usage().used_24h == 100


def test_ledger_file_is_private_and_keyed_by_account(tmp_path):
    settings = Settings(api_key="secret-key-xyz", state_dir=tmp_path / "state")
    ledger = Ledger.for_settings(settings, clock=FakeClock())
    ledger.reserve()
    assert ledger.path == settings.account_dir / "ledger.sqlite"
    assert "secret-key-xyz" not in str(ledger.path) and "secret-key-xyz" not in repr(ledger)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ledger.path.parent.stat().st_mode) == 0o700
    other = Ledger.for_settings(settings.with_(api_key="another-key"), clock=FakeClock())
    assert other.path != ledger.path


@pytest.mark.parametrize(("n", "window", "expected"), [
    (0, [], 0.0),
    (10, [], 0.0),               # fits the free slots
    (11, [], 60.0),              # the 11th follows the 1st a minute later
    (20, [], 60.0),
    (21, [], 120.0),
    (5, [970.0] * 5, 0.0),       # 5 free slots
    (6, [970.0] * 5, 30.0),      # waits for the oldest (970 + 60 - 1000)
    (1, [950.0 + i for i in range(10)], 10.0),
    (11, [950.0 + i for i in range(10)], 70.0),
])
def test_seconds_needed(n, window, expected):
    assert seconds_needed(n, window, 1000.0, 10) == pytest.approx(expected)


def test_estimate_matches_what_the_throttle_does(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, per_minute=4, per_day=0, clock=clock)
    for _ in range(3):
        send(ledger, clock, latency=2.0)
    start = clock.time()
    estimate = ledger.estimate_seconds(9)
    for _ in range(9):
        send(ledger, clock)      # instant responses, so the estimate is exact
    assert clock.time() - start == pytest.approx(estimate)
    assert estimate > 0


# -- two real processes share one ledger --------------------------------------------------

def _reserve_many(args) -> int:
    path, attempts = args
    ledger = Ledger(path, max_per_minute=10**9, max_per_day=500, clock=SystemClock())
    done = 0
    for _ in range(attempts):
        try:
            row = ledger.reserve()
        except BudgetExhausted:
            continue
        ledger.complete(row)
        done += 1
    ledger.close()
    return done


def test_two_processes_share_the_daily_budget(tmp_path):
    path = tmp_path / "shared" / "ledger.sqlite"
    # Create the file first so both processes open the same initialised database.
    Ledger(path, max_per_minute=10, max_per_day=500).usage()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        sent = pool.map(_reserve_many, [(path, 400), (path, 400)])
    assert sum(sent) == 500
    assert all(n >= 100 for n in sent)
    assert Ledger(path, max_per_minute=10, max_per_day=500).usage().used_24h == 500


def test_unusable_state_dir_is_a_config_error_naming_it(tmp_path):
    from etl.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ledger = make_ledger(blocker / "state", per_minute=10, per_day=500)
    with pytest.raises(ConfigError, match="INTAKEQ_ETL_STATE_DIR") as info:
        ledger.reserve()
    assert str(blocker) in info.value.message
