"""Interrupted and faulty imports: kill -9 at random moments, lost responses, budget stops.

The sandbox runs in this process; imports run as real subprocesses (``python -m etl``)
talking to it over loopback HTTP, so a SIGKILL can land between a write taking effect
and its answer (the sandbox's write latency makes that common).
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from test_import import export_csv, read_rows, results_of, write_rows

from etl.api import IntakeQClient, Ledger
from etl.clock import FakeClock
from etl.errors import Interrupted
from etl.importer import ImportOptions, Paths, plan_identity, run_import
from etl.importer.checkpoint import Checkpoint
from etl.sandbox import Faults

NEW_ROWS = [
    {"FirstName": "Crash", "LastName": "Withmail", "Email": "crash.withmail@example.org", "Tags": "new"},
    {"FirstName": "Crash", "LastName": "Nocontact"},                       # no email, no phone
    {"FirstName": "Kill", "LastName": "Ninetest", "Phone": "(555) 010-9999"},
    {"FirstName": "Kill", "LastName": "Nocontact"},
]


def make_edits(run_cli, sandbox, tmp_path) -> tuple[Path, dict]:
    """Export, then edit: 6 cities, 3 tag adds, 4 new rows. Returns the file and what to expect."""
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    expect = {"city": {}, "tags": {}, "new": [(r["FirstName"], r["LastName"]) for r in NEW_ROWS]}
    for i, r in enumerate(rows[:6]):
        r["City"] = f"Crashville {i}"
        expect["city"][int(r["ClientId"])] = r["City"]
    for r in rows[6:9]:
        r["Tags"] = "; ".join(filter(None, [r["Tags"], "crash-test"]))
        expect["tags"][int(r["ClientId"])] = "crash-test"
    write_rows(path, header, rows + NEW_ROWS)
    return path, expect


def assert_account_is_exactly(sandbox, expect, n_before):
    clients = sandbox.store.clients
    for cid, city in expect["city"].items():
        assert clients[cid]["City"] == city
    for cid, tag in expect["tags"].items():
        assert tag in clients[cid]["Tags"]
    names = Counter((c["FirstName"], c["LastName"]) for c in clients.values())
    for name in expect["new"]:
        assert names[name] == 1, f"{name}: {names[name]} clients"
    assert len(clients) == n_before + len(expect["new"])


def spawn_import(cli_env, path, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "etl", "import", str(path), "--yes", "--quiet", *extra],
        env={**os.environ, **cli_env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def writes_so_far(sandbox) -> int:
    return sum(1 for e in sandbox.log if e.method in ("POST", "DELETE"))


def saves_so_far(sandbox) -> int:
    return sum(1 for e in sandbox.log if e.method == "POST" and e.path.rstrip("/").endswith("/clients"))


def test_kill_minus_nine_at_random_moments_then_resume_gives_the_exact_account(sandbox, run_cli, cli_env, tmp_path):
    sandbox.reset(n_clients=30, seed=7)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    sandbox.configure(faults=Faults(seed=1, write_latency=0.15))
    sandbox.log.clear()
    rng = random.Random(42)
    kills = 0
    for _attempt in range(12):
        start_writes = writes_so_far(sandbox)
        proc = spawn_import(cli_env, path)
        deadline = time.monotonic() + 60
        while proc.poll() is None and writes_so_far(sandbox) == start_writes and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None and kills < 4:
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode in (-signal.SIGKILL, 4), err
    assert proc.returncode == 0, err
    assert kills >= 1
    assert_account_is_exactly(sandbox, expect, n_before)
    needed_saves = len(expect["city"]) + len(expect["new"])
    assert saves_so_far(sandbox) <= needed_saves + kills

    sandbox.log.clear()
    again = run_cli("import", path, "--yes", "--quiet")
    assert again.exit_code == 0, again.output
    assert writes_so_far(sandbox) == 0


def test_five_percent_failures_and_lost_responses_still_give_the_exact_account(sandbox, run_cli, cli_env, tmp_path):
    sandbox.reset(n_clients=30, seed=8)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    sandbox.configure(faults=Faults(seed=5, fail_before=0.05, lost_response=0.05))
    for _attempt in range(5):
        result = run_cli("import", path, "--yes", "--quiet")
        if result.exit_code == 0:
            break
        assert result.exit_code == 4, result.output     # rows left pending: a re-run retries them
    assert result.exit_code == 0, result.output
    sandbox.configure(faults=Faults())
    assert_account_is_exactly(sandbox, expect, n_before)


def test_lost_responses_on_every_write_are_verified_not_duplicated(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=20, seed=9)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    sandbox.configure(faults=Faults(seed=2, lost_response=1.0))

    result = run_cli("import", path, "--yes", "--quiet")

    sandbox.configure(faults=Faults())
    assert result.exit_code == 0, result.output
    assert_account_is_exactly(sandbox, expect, n_before)


def test_a_budget_stop_exits_75_and_the_same_command_finishes_the_job(sandbox, run_cli, settings, tmp_path):
    sandbox.reset(n_clients=30, seed=10)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    ledger = Ledger.for_settings(settings)
    used = ledger.usage().used_24h
    ledger.close()
    budget = used + 2 + 5          # the planning reads, then five writes

    stopped = run_cli("import", path, "--yes", "--quiet", env={"INTAKEQ_MAX_PER_DAY": str(budget)})

    assert stopped.exit_code == 75, stopped.output
    statuses = Counter(r["status"] for r in results_of(path).values())
    assert statuses["pending"] > 0
    assert re.search(                    # the line runbooks/recovery.md quotes
        rf"^error: stopped: the daily request budget is used up\. {statuses['updated'] + statuses['created']} "
        rf"row\(s\) written, {statuses['pending']} left; the budget frees up at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC: "
        r"run the same command again then \(or add --wait\)$", stopped.output, re.M), stopped.output

    finished = run_cli("import", path, "--yes", "--quiet")
    assert finished.exit_code == 0, finished.output
    assert_account_is_exactly(sandbox, expect, n_before)


class StaffEditsWhileWeSleep(FakeClock):
    """A fake clock whose first long sleep (the budget's, not the minute's) lets 'staff'
    edit the clients meanwhile."""

    def __init__(self, start, on_long_sleep):
        super().__init__(start)
        self.on_long_sleep = on_long_sleep

    def sleep(self, seconds):
        if seconds > 120 and self.on_long_sleep:
            self.on_long_sleep()
            self.on_long_sleep = None
        super().sleep(seconds)


def test_wait_sleeps_until_the_budget_frees_then_replans_so_nothing_stale_or_double_is_sent(
        sandbox, run_cli, settings, tmp_path):
    sandbox.reset(n_clients=30, seed=11)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    ledger = Ledger.for_settings(settings)
    used = ledger.usage().used_24h
    ledger.close()
    tight = settings.with_(max_per_day=used + 2 + 5)

    def staff_edit_everyone():
        for cid in expect["city"]:
            sandbox.store.staff_edit(cid, Email=f"staff{cid}@example.org")

    clock = StaffEditsWhileWeSleep(time.time(), staff_edit_everyone)
    client = IntakeQClient(tight, clock=clock)
    opts = ImportOptions()
    paths = Paths.beside(path)
    sandbox.log.clear()
    with Checkpoint(paths.checkpoint, plan_identity(path, opts)) as cp:
        run = run_import(client, tight, path, opts, paths, checkpoint=cp, wait=True)
    client.close()

    assert run.stopped_by is None
    assert sum(clock.slept) > 3600                       # it did wait for the budget (in steps)
    assert_account_is_exactly(sandbox, expect, n_before)
    for cid in expect["city"]:                           # staff edits made during the wait are kept
        assert sandbox.store.clients[cid]["Email"] == f"staff{cid}@example.org"
    assert saves_so_far(sandbox) == len(expect["city"]) + len(expect["new"])


def test_ctrl_c_stops_after_the_request_in_flight_and_the_same_command_resumes(sandbox, run_cli, cli_env, tmp_path):
    sandbox.reset(n_clients=30, seed=12)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    sandbox.configure(faults=Faults(seed=1, write_latency=0.3))
    sandbox.log.clear()
    proc = spawn_import(cli_env, path)
    deadline = time.monotonic() + 60
    while proc.poll() is None and writes_so_far(sandbox) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "run the same command again" in err
    statuses = Counter(r["status"] for r in results_of(path).values())
    assert statuses["pending"] > 0

    sandbox.configure(faults=Faults())
    finished = run_cli("import", path, "--yes", "--quiet")
    assert finished.exit_code == 0, finished.output
    assert_account_is_exactly(sandbox, expect, n_before)


# --------------------------------------------------------------------------- Ctrl-C during waits


def edit_two_cities(run_cli, tmp_path) -> Path:
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    for i, r in enumerate(rows[:2]):
        r["City"] = f"Waitville {i}"
    return write_rows(path, header, rows)


def ledger_after_planning(run_cli, settings, path) -> tuple[int, int, int]:
    """(used in 24 h, used in the last minute, reads one planning costs), measured by a dry run."""
    ledger = Ledger.for_settings(settings)
    before = ledger.usage().used_24h
    dry = run_cli("import", path, "--dry-run", "--quiet")
    assert dry.exit_code == 0, dry.output
    usage = ledger.usage()
    ledger.close()
    return usage.used_24h, usage.used_last_minute, usage.used_24h - before


def interrupt_once_stderr_says(proc, marker: str) -> tuple[float, str]:
    """SIGINT as soon as ``marker`` appears on stderr; (seconds until exit, all of stderr)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            break
    assert proc.poll() is None, "".join(seen)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    rest = proc.communicate(timeout=30)[1]
    return time.monotonic() - sent, "".join(seen) + rest


def assert_stopped_with_one_save_and_results(proc, elapsed, err, sandbox, path):
    assert proc.returncode == 130, err
    assert elapsed < 2.0, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in err
    assert "result: 1 pending" in err and "run the same command again" in err
    statuses = Counter(r["status"] for r in results_of(path).values())
    assert statuses["updated"] == 1 and statuses["pending"] == 1
    assert saves_so_far(sandbox) == 1


def test_ctrl_c_during_a_wait_for_the_daily_budget_stops_within_a_second(
        sandbox, run_cli, cli_env, settings, tmp_path):
    path = edit_two_cities(run_cli, tmp_path)
    used, _, reads = ledger_after_planning(run_cli, settings, path)
    sandbox.log.clear()
    proc = spawn_import(cli_env, path, "--wait",
                        env={"INTAKEQ_MAX_PER_DAY": str(used + reads + 1)})   # room for one save

    elapsed, err = interrupt_once_stderr_says(proc, "waiting until")

    assert_stopped_with_one_save_and_results(proc, elapsed, err, sandbox, path)


def test_ctrl_c_during_a_per_minute_wait_stops_within_a_second(sandbox, run_cli, cli_env, settings, tmp_path):
    path = edit_two_cities(run_cli, tmp_path)
    _, last_minute, reads = ledger_after_planning(run_cli, settings, path)
    sandbox.log.clear()
    proc = spawn_import(cli_env, path,
                        env={"INTAKEQ_MAX_PER_MINUTE": str(last_minute + reads + 1)})  # one save, then a wait

    elapsed, err = interrupt_once_stderr_says(proc, "requests a minute")

    assert_stopped_with_one_save_and_results(proc, elapsed, err, sandbox, path)


class StopsAfterOne(requests.Session):
    """HTTP that asks the run to stop (as Ctrl-C does) once the first ``method`` request is answered."""

    def __init__(self, clock, method: str):
        super().__init__()
        self.clock, self.method = clock, method

    def request(self, method, url, **kwargs):
        try:
            return super().request(method, url, **kwargs)
        finally:
            if method == self.method:
                self.clock.request_stop()


def test_after_a_stop_request_no_request_starts_not_even_verifying_a_lost_save(sandbox, run_cli, settings, tmp_path):
    path = edit_two_cities(run_cli, tmp_path)
    sandbox.configure(faults=Faults(seed=3, lost_response=1.0))   # the retry loop would verify, then go on
    clock = FakeClock(time.time())
    client = IntakeQClient(settings, clock=clock, session=StopsAfterOne(clock, "POST"))
    opts, paths = ImportOptions(), Paths.beside(path)
    sandbox.log.clear()
    with Checkpoint(paths.checkpoint, plan_identity(path, opts)) as cp:
        run = run_import(client, settings, path, opts, paths, checkpoint=cp)
        states = {row: st.status for row, st in cp.all().items()}
    client.close()

    assert isinstance(run.stopped_by, Interrupted)
    assert sandbox.log[-1].method == "POST" and writes_so_far(sandbox) == 1   # nothing after the save
    assert sorted(states.values()) == ["inflight"]                             # verified by the next run
    assert Counter(r["status"] for r in results_of(path).values())["pending"] == 2


def test_a_stop_request_while_planning_stops_at_the_next_read(sandbox, settings, tmp_path):
    sandbox.reset(n_clients=350, seed=4)                     # a full pull is 4 pages
    path = write_rows(tmp_path / "other-system.csv", ["FirstName", "LastName"],
                      [{"FirstName": "Plan", "LastName": "Stopper"}])
    clock = FakeClock(time.time())
    client = IntakeQClient(settings, clock=clock, session=StopsAfterOne(clock, "GET"))
    sandbox.log.clear()

    with pytest.raises(Interrupted, match="nothing was written"):
        run_import(client, settings, path, ImportOptions(base="none"), Paths.beside(path), checkpoint=None)
    client.close()

    assert [e.method for e in sandbox.log] == ["GET"]


def test_a_fault_storm_never_exits_1_after_a_write_and_repeated_runs_reach_the_exact_account(
        sandbox, run_cli, tmp_path, monkeypatch):
    """30% of requests fail before any effect, 20% of writes lose their answer: reads that
    verify a lost write fail too. Whatever a run meets after its first write, it leaves a
    results file and exits 4 (or 0), never 1; re-running the same command converges."""
    import etl.api.client

    sandbox.reset(n_clients=30, seed=13)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)
    results = path.parent / (path.stem + ".results.csv")
    # The CLI builds its own client: give it a fake clock so read retries back off instantly.
    monkeypatch.setattr(etl.api.client, "SystemClock", lambda: FakeClock(time.time()))
    # Seed 23: among the faults it draws, a lost write whose verifying read fails 4 times running.
    sandbox.configure(faults=Faults(seed=23, fail_before=0.3, lost_response=0.2))
    for _attempt in range(40):
        results.unlink(missing_ok=True)
        writes_before = writes_so_far(sandbox)
        result = run_cli("import", path, "--yes", "--quiet")
        if writes_so_far(sandbox) > writes_before:
            assert result.exit_code != 1, result.output
            assert results.exists(), result.output
        if result.exit_code == 0:
            break
        assert result.exit_code in (1, 4), result.output
    sandbox.configure(faults=Faults())
    assert result.exit_code == 0, result.output
    assert_account_is_exactly(sandbox, expect, n_before)


def test_an_error_after_the_first_write_exits_4_naming_the_results_file_and_the_rerun_finishes(
        sandbox, run_cli, tmp_path, monkeypatch):
    from etl.api import client as api_client
    from etl.errors import AuthError

    sandbox.reset(n_clients=30, seed=14)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    n_before = len(sandbox.store.clients)

    def key_revoked(self, client_id, tag):          # the tag calls come after the saves
        raise AuthError()

    with monkeypatch.context() as patched:
        patched.setattr(api_client.IntakeQClient, "add_tag", key_revoked)
        stopped = run_cli("import", path, "--yes", "--quiet")

    assert stopped.exit_code == 4, stopped.output
    assert "authentication failed" in stopped.output
    assert "results file" in stopped.output and "run the same command again" in stopped.output
    statuses = Counter(r["status"] for r in results_of(path).values())
    assert statuses["updated"] > 0 and statuses["pending"] > 0

    finished = run_cli("import", path, "--yes", "--quiet")
    assert finished.exit_code == 0, finished.output
    assert_account_is_exactly(sandbox, expect, n_before)


def test_an_error_planning_again_after_a_wait_exits_4_not_1(sandbox, run_cli, settings, tmp_path, monkeypatch):
    import etl.api.client
    import etl.importer.run
    from etl.errors import ApiUnreachable

    sandbox.reset(n_clients=30, seed=15)
    path, expect = make_edits(run_cli, sandbox, tmp_path)
    ledger = Ledger.for_settings(settings)
    budget = ledger.usage().used_24h + 2 + 5          # the planning reads, then five writes
    ledger.close()
    monkeypatch.setattr(etl.api.client, "SystemClock", lambda: FakeClock(time.time()))  # --wait: no real sleep
    real_fetch_live, rounds = etl.importer.run.fetch_live, []

    def unreachable_after_the_wait(*args, **kwargs):
        rounds.append(1)
        if len(rounds) > 1:
            raise ApiUnreachable("cannot reach the server: connection refused")
        return real_fetch_live(*args, **kwargs)

    monkeypatch.setattr(etl.importer.run, "fetch_live", unreachable_after_the_wait)

    stopped = run_cli("import", path, "--yes", "--quiet", "--wait", env={"INTAKEQ_MAX_PER_DAY": str(budget)})

    assert stopped.exit_code == 4, stopped.output
    assert "cannot reach the server" in stopped.output and "run the same command again" in stopped.output
    statuses = Counter(r["status"] for r in results_of(path).values())   # as the first round left it
    assert statuses["updated"] > 0 and statuses["pending"] > 0


def test_a_bug_after_the_first_write_exits_4_not_1(sandbox, run_cli, tmp_path, monkeypatch):
    from etl.api import client as api_client

    sandbox.reset(n_clients=30, seed=16)
    path, expect = make_edits(run_cli, sandbox, tmp_path)

    def a_bug(self, client_id, tag):                 # the tag calls come after the saves
        raise KeyError("oops")

    monkeypatch.setattr(api_client.IntakeQClient, "add_tag", a_bug)
    crashed = run_cli("import", path, "--yes", "--quiet")

    assert crashed.exit_code == 4, crashed.output
    assert "unexpected KeyError" in crashed.output and "run the same command again" in crashed.output
    assert saves_so_far(sandbox) > 0


def test_a_write_with_no_answer_for_a_while_says_what_it_is_waiting_for(sandbox, run_cli, tmp_path, monkeypatch):
    """Issue 9: the terminal says what a run waits for when IntakeQ holds a save."""
    import etl.api.client

    path, _ = make_edits(run_cli, sandbox, tmp_path)
    monkeypatch.setattr(etl.api.client, "SLOW_WRITE_NOTE", 0.05)
    sandbox.configure(faults=Faults(write_latency=0.3))

    result = run_cli("import", path, "--yes", "--quiet")

    assert result.exit_code == 0, result.output
    assert "note: waiting for IntakeQ to answer POST clients (no answer for 0 s;" in result.output
    assert "never sent again blindly" in result.output


def test_a_long_run_keeps_staff_edits_made_while_it_was_sending(sandbox, run_cli, settings, tmp_path):
    """At 10/min a long run's last saves go out long after planning; a save replaces the
    whole client, so the bodies are refreshed from what IntakeQ says changed meanwhile."""
    from etl.importer import Hooks

    sandbox.reset(n_clients=30, seed=13)
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    cities = {int(r["ClientId"]): f"Longrun {i}" for i, r in enumerate(rows[:15])}
    for r in rows[:15]:
        r["City"] = cities[int(r["ClientId"])]
    write_rows(path, header, rows)
    other_field, same_field = list(cities)[-2:]

    class StaffMeanwhile(Hooks):
        def row_done(self, plan):
            if plan.client_id == list(cities)[0]:
                sandbox.store.staff_edit(other_field, Email="staff.meanwhile@example.org")
                sandbox.store.staff_edit(same_field, City="Staff City")

    slow = settings.with_(max_per_minute=1)               # a request a minute: 15 saves take 15 min
    client = IntakeQClient(slow, clock=FakeClock(time.time()))
    opts, paths = ImportOptions(), Paths.beside(path)
    with Checkpoint(paths.checkpoint, plan_identity(path, opts)) as cp:
        run = run_import(client, slow, path, opts, paths, checkpoint=cp, hooks=StaffMeanwhile())
    client.close()

    clients = sandbox.store.clients
    assert clients[other_field]["Email"] == "staff.meanwhile@example.org"      # kept, not overwritten
    assert clients[other_field]["City"] == cities[other_field]
    assert clients[same_field]["City"] == "Staff City"                         # a conflict, not a write
    statuses = {r.client_id: r.status for r in run.results.values()}
    assert statuses[same_field] == "conflict"
    assert sum(1 for s in statuses.values() if s == "updated") == 14
