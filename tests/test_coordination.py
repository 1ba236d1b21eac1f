"""Runs of one account coordinate through the ledger (issue 11, items 2 and 3):
reservations, the import's checkpoint lock, the server's day-429 remembered."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from etl.api import Ledger
from etl.api.ledger import _HOST, RESERVATION_TTL
from etl.clock import FakeClock
from etl.errors import BudgetExhausted, BudgetReserved, Busy


def make_ledger(tmp_path, *, per_day=10, clock=None) -> Ledger:
    return Ledger(tmp_path / "acct" / "ledger.sqlite", max_per_minute=10**6, max_per_day=per_day,
                  clock=clock or FakeClock())


def send(ledger: Ledger, n: int = 1) -> None:
    for _ in range(n):
        ledger.complete(ledger.reserve())


def add_reservation(ledger: Ledger, *, pid: int, host: str, amount: int, expires: float) -> None:
    with ledger._transaction() as conn:
        conn.execute("INSERT INTO reservations (what, pid, host, amount, spent, created, expires) "
                     "VALUES ('export', ?, ?, ?, 0, ?, ?)", (pid, host, amount, ledger.clock.time(), expires))


# -- the ledger ---------------------------------------------------------------------------

def test_a_reservation_counts_as_used_for_other_runs(tmp_path):
    clock = FakeClock()
    first = make_ledger(tmp_path, clock=clock)
    second = make_ledger(tmp_path, clock=clock)
    with first.hold(8, what="export"):
        with pytest.raises(BudgetReserved, match=r"holds 8 request\(s\).*nothing was sent") as caught:
            second.hold(5, what="export", wait=False)
        assert caught.value.exit_code == 75
        assert second.hold(2, what="import", wait=False).amount == 2     # what is left fits
        send(first, 8)          # the holder spends its own reservation: never refused
        assert second.usage().reserved == 2
    assert second.usage().reserved == 2 and first.usage().used_24h == 8


def test_a_request_outside_the_reservations_is_refused_before_it_is_sent(tmp_path):
    clock = FakeClock()
    holder, other = make_ledger(tmp_path, clock=clock), make_ledger(tmp_path, clock=clock)
    with holder.hold(None, what="export"):     # the rest of the day
        with pytest.raises(BudgetReserved, match="reserved by another run"):
            other.reserve()
    assert other.usage().used_24h == 0


def test_a_waiting_run_goes_on_when_the_holder_releases(tmp_path):
    clock = FakeClock()
    first, second = make_ledger(tmp_path, clock=clock), make_ledger(tmp_path, clock=clock)
    held = first.hold(10, what="export")
    looks = []

    def on_wait(waiting):
        looks.append(waiting)
        if waiting is not None and len(looks) == 2:
            held.release()

    with second.hold(4, what="import", on_wait=on_wait) as mine:
        assert mine.amount == 4
    assert looks[0].first and looks[0].holders[0].unspent == 10 and looks[-1] is None
    assert len(clock.slept) == 2


def test_an_import_sleeping_for_the_budget_keeps_its_reservation(tmp_path):
    from types import SimpleNamespace

    from etl.hooks import Hooks
    from etl.importer.run import _sleep_until

    clock = FakeClock()
    sleeper, other = make_ledger(tmp_path, clock=clock), make_ledger(tmp_path, clock=clock)
    with sleeper.hold(6, what="import"):
        _sleep_until(SimpleNamespace(clock=clock, ledger=sleeper), clock.time() + 3 * 3600, Hooks())
        assert clock.time() >= 1_760_000_000 + 3 * 3600         # hours, slept in steps
        assert max(clock.slept) <= RESERVATION_TTL
        with pytest.raises(BudgetReserved, match=r"import \(pid"):
            other.hold(5, what="export", wait=False)             # still held by the sleeper
    assert other.hold(5, what="export", wait=False).amount == 5


def test_an_import_reserves_the_reads_its_plan_needs_before_sending_them(sandbox, run_cli, monkeypatch, tmp_path):
    sandbox.reset(n_clients=450)             # a full pull would be 5 pages: 3 look-ups are cheaper
    path, edited = _edited_export(run_cli, tmp_path, 3)
    sizes = []
    real = Ledger.reserve_more

    def recorded(self, unspent):
        sizes.append((unspent, len(sandbox.requests())))
        return real(self, unspent)

    monkeypatch.setattr(Ledger, "reserve_more", recorded)
    sandbox.log.clear()
    assert run_cli("import", path, "--yes", "--quiet", env={"INTAKEQ_MAX_PER_DAY": "100"}).exit_code == 0
    # first the 3 per-client reads (before any is sent), then the 3 writes
    assert sizes == [(3, 0), (3, 3)]


def test_a_run_that_cannot_keep_progress_stops_before_sending(tmp_path):
    ledger = make_ledger(tmp_path)
    send(ledger, 6)
    with pytest.raises(BudgetExhausted, match=r"cannot finish this export: it needs 5 request\(s\), 4 of "
                                              r"10 are left, and it cannot keep partial progress"):
        ledger.hold(5, what="export", keeps_progress=False)
    with ledger.hold(5, what="export", keeps_progress=True) as kept:
        assert kept.amount == 4                # it keeps progress: it uses what is left
    send(ledger, 4)
    with pytest.raises(BudgetExhausted, match="10 of 10"):
        ledger.hold(1, what="export")


def test_a_dead_process_reservation_is_released(tmp_path):
    ledger = make_ledger(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    add_reservation(ledger, pid=proc.pid, host=_HOST, amount=10, expires=ledger.clock.time() + 600)
    with ledger.hold(10, what="export", wait=False) as mine:
        assert mine.amount == 10
    assert ledger.usage().reserved == 0


def test_another_hosts_reservation_expires_without_requests(tmp_path):
    clock = FakeClock()
    ledger = make_ledger(tmp_path, clock=clock)
    add_reservation(ledger, pid=1, host="elsewhere.example", amount=10, expires=clock.time() + RESERVATION_TTL)
    with pytest.raises(BudgetReserved, match="pid 1 on elsewhere.example"):
        ledger.hold(1, what="export", wait=False)
    clock.advance(RESERVATION_TTL + 1)
    assert ledger.hold(1, what="export", wait=False).amount == 1


def test_the_server_day_is_remembered_by_every_process(tmp_path):
    clock = FakeClock()
    ledger, other = make_ledger(tmp_path, clock=clock), make_ledger(tmp_path, clock=clock)
    send(ledger, 2)
    ledger.record_server_exhausted(clock.time() + 3600)
    with pytest.raises(BudgetExhausted, match="IntakeQ answered 429 for the day"):
        other.reserve()
    with pytest.raises(BudgetExhausted):
        other.hold(1, what="import")
    usage = other.usage()
    assert (usage.remaining, usage.local_remaining, usage.server_disagrees) == (0, 8, True)
    assert usage.next_free_at == clock.time() + 3600
    clock.advance(3601)
    other.reserve()
    assert other.usage().server_exhausted_until is None


# -- the CLI against the sandbox ----------------------------------------------------------

def _cli(env: dict, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "etl", *map(str, args)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_exports_at_once_with_a_budget_for_one(sandbox, cli_env, tmp_path, state_dir):
    sandbox.reset(n_clients=250, seed=1)              # 3 pages
    env = {**cli_env, "INTAKEQ_MAX_PER_DAY": "3"}
    runs = [_cli(env, "export", "--out", tmp_path / f"out{i}") for i in (1, 2)]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 75], outs
    assert len(sandbox.requests("GET", "clients")) == 3          # one export's requests
    loser = next(err for code, _, err in outs if code == 75)
    # It waited for the first (if it came while that one ran), then found the day used up.
    assert "error: daily request budget used up (3 of 3 in the last 24 h)" in loser
    assert "this export sent nothing" in loser
    written = [d for d in (tmp_path / "out1", tmp_path / "out2") if (d / "manifest.json").exists()]
    assert len(written) == 1


def two_exports_at_once(settings, tmp_path) -> dict:
    """Two library exports of one account started together (threads): name → its
    ExportResult, or the BudgetExhausted that stopped it."""
    import threading

    from etl.api import IntakeQClient
    from etl.export import export_clients

    start = threading.Barrier(2)
    outcomes = {}

    def run(name):
        client = IntakeQClient(settings)
        start.wait()
        try:
            outcomes[name] = export_clients(client, out=tmp_path / name)
        except BudgetExhausted as exc:
            outcomes[name] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_two_exports_in_threads_the_second_waits_for_the_first(sandbox, settings, tmp_path):
    sandbox.reset(n_clients=250, seed=1)

    outcomes = two_exports_at_once(settings.with_(max_per_day=3), tmp_path)

    finished = [n for n, o in outcomes.items() if not isinstance(o, BudgetExhausted) and o.requests == 3]
    stopped = [n for n, o in outcomes.items() if isinstance(o, BudgetExhausted)]
    assert len(finished) == 1 and len(stopped) == 1, outcomes
    # The second waited for the first (on the account's export lock), then found the day spent.
    assert "sent nothing" in outcomes[stopped[0]].message or "used up" in outcomes[stopped[0]].message
    assert len(sandbox.requests("GET", "clients")) == 3


def test_two_full_exports_at_once_with_budget_for_both_both_write_every_client(sandbox, settings, tmp_path):
    """Review finding: two full exports of an account shared its kept pages; the first to
    finish dropped them and the second wrote 103 of 300 clients, exit 0. One at a time now."""
    sandbox.reset(n_clients=250, seed=1)

    outcomes = two_exports_at_once(settings, tmp_path)

    assert {name: len(o.clients) for name, o in outcomes.items()} == {"a": 250, "b": 250}, outcomes
    for name in ("a", "b"):
        with open(tmp_path / name / "clients.csv", newline="", encoding="utf-8-sig") as fh:
            assert sum(1 for _ in csv.DictReader(fh)) == 250


def test_a_second_export_told_not_to_wait_sends_nothing(sandbox, run_cli, settings):
    holder = Ledger.for_settings(settings.with_(max_per_day=50))
    with holder.hold(None, what="export"):
        result = run_cli("export", "--out", settings.state_dir.parent / "o", "--no-wait-for-others",
                         env={"INTAKEQ_MAX_PER_DAY": "50"})
    assert result.exit_code == 75
    assert "reserved by another run" in result.output or "holds 50 request(s)" in result.output
    assert "nothing was sent (--no-wait-for-others)" in result.output
    assert sandbox.requests() == []


def test_the_server_day_429_is_remembered(sandbox, run_cli, tmp_path):
    env = {"INTAKEQ_MAX_PER_DAY": "500"}
    sandbox.force_429(1, retry_after=20_000)
    first = run_cli("export", "--out", tmp_path / "a", env=env)
    assert first.exit_code == 75 and "retry after 20000 s" in first.output
    assert len(sandbox.requests()) == 1
    again = run_cli("export", "--out", tmp_path / "b", env=env)
    assert again.exit_code == 75 and "IntakeQ answered 429 for the day" in again.output
    assert len(sandbox.requests()) == 1                  # the re-run sent nothing
    quota = json.loads(run_cli("quota", "--json", env=env).output)
    assert quota["remaining"] == 0 and quota["local_remaining"] == 499
    assert quota["server_says"]["remaining"] == 0
    assert quota["server_says"]["frees_at"] == pytest.approx(time.time() + 20_000, abs=60)
    text = run_cli("quota", env=env).output
    assert "server says" in text and "local count: 499" in text and "(per the server)" in text
    source = tmp_path / "edit.csv"
    source.write_text("ClientId,FirstName,LastName\n1,A,B\n", encoding="utf-8")
    imported = run_cli("import", source, "--yes", "--base", "none", env=env)
    assert imported.exit_code == 75 and len(sandbox.requests()) == 1


def _edited_export(run_cli, tmp_path, n_edits: int):
    out = tmp_path / "exp"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 0
    path = out / "clients.csv"
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames), list(reader)
    for row in rows[:n_edits]:
        row["FirstName"] = row["FirstName"] + "x"
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path, [int(r["ClientId"]) for r in rows[:n_edits]]


def test_two_imports_of_one_file_at_once_never_write_twice(sandbox, run_cli, cli_env, tmp_path):
    from etl.sandbox import Faults

    path, edited = _edited_export(run_cli, tmp_path, 5)
    sandbox.log.clear()
    sandbox.configure(faults=Faults(write_latency=0.4))     # the first import is still writing
    runs = [_cli(cli_env, "import", path, "--yes") for _ in range(2)]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in runs]
    assert [code for code, _, _ in outs] == [0, 0], outs
    posts = [e for e in sandbox.requests("POST", "clients")]
    assert len(posts) == len(edited)                         # each edit saved once
    assert any("another import of this file is running" in err for _, _, err in outs), outs


@contextlib.contextmanager
def _held_by_another_thread(lock):
    """Hold ``lock`` in another thread (a lock is re-entrant within its own thread)."""
    taken, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            taken.set()
            done.wait(60)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_the_library_import_takes_the_files_lock_too(sandbox, run_cli, settings, tmp_path):
    from etl.api import IntakeQClient
    from etl.clock import SystemClock
    from etl.importer import ImportOptions, Paths, run_import
    from etl.state.lock import checkpoint_lock

    path, _ = _edited_export(run_cli, tmp_path, 2)
    paths = Paths.beside(path)
    sandbox.log.clear()
    with _held_by_another_thread(checkpoint_lock(paths.checkpoint, clock=SystemClock())):
        with IntakeQClient(settings, wait_for_others=False) as client:
            with pytest.raises(Busy):
                run_import(client, settings, path, ImportOptions(), paths, checkpoint=None)
    assert sandbox.requests() == []


def test_an_import_refuses_while_another_holds_the_file(sandbox, run_cli, tmp_path):
    from etl.clock import SystemClock
    from etl.state.lock import checkpoint_lock, lock_path

    path, _ = _edited_export(run_cli, tmp_path, 2)
    sandbox.log.clear()
    checkpoint = path.with_name("clients.checkpoint.sqlite")
    with _held_by_another_thread(checkpoint_lock(checkpoint, clock=SystemClock())):
        result = run_cli("import", path, "--yes", "--no-wait-for-others")
        with pytest.raises(Busy):
            with checkpoint_lock(checkpoint, clock=SystemClock(), wait=False):
                pass
    assert result.exit_code == 75
    assert "another import of this file is running (pid" in result.output
    assert sandbox.requests() == []
    assert oct(lock_path(checkpoint).stat().st_mode & 0o777) == "0o600"
    assert run_cli("import", path, "--yes", "--quiet").exit_code == 0     # released


def test_the_lock_file_is_never_opened_through_a_link(tmp_path):
    from etl.clock import SystemClock
    from etl.errors import PathError
    from etl.state.lock import checkpoint_lock, lock_path

    checkpoint = tmp_path / "x.checkpoint.sqlite"
    target = tmp_path / "elsewhere"
    lock_path(checkpoint).symlink_to(target)
    with pytest.raises(PathError, match="symbolic link"):
        with checkpoint_lock(checkpoint, clock=SystemClock()):
            pass
    assert not target.exists()


def test_a_filtered_export_that_cannot_finish_today_sends_nothing(sandbox, run_cli, settings, tmp_path):
    """Review finding: only a full export keeps its pages; a filtered one that the day's
    budget cannot finish spent what was left and wrote nothing."""
    assert run_cli("export", "--out", tmp_path / "full", "--quiet").exit_code == 0     # 1 page: 20 clients
    ledger = Ledger.for_settings(settings)
    used = ledger.usage().used_24h
    ledger.close()
    sandbox.log.clear()

    result = run_cli("export", "--out", tmp_path / "new" / "filtered", "--created-since", "2000-01-01",
                     "--quiet", "--include-deleted", env={"INTAKEQ_MAX_PER_DAY": str(used + 1)})

    assert result.exit_code == 75, result.output
    assert sandbox.requests() == []
    assert not (tmp_path / "new").exists()       # no empty --out folder left behind


def test_import_wait_started_after_the_budget_ran_out_waits_instead_of_exiting(sandbox, run_cli, settings, tmp_path):
    """Review finding: the budget hold before the first request exited 75 under --wait."""
    from test_import import export_csv, read_rows, write_rows

    from etl.api import IntakeQClient
    from etl.importer import ImportOptions, Paths, plan_identity, run_import
    from etl.importer.checkpoint import Checkpoint

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Waited"
    write_rows(path, header, rows)
    clock = FakeClock(time.time())
    spent = settings.with_(max_per_day=50)
    ledger = Ledger.for_settings(spent, clock=clock)
    while ledger.usage().remaining:                           # nothing left today
        ledger.complete(ledger.reserve())
    ledger.close()
    client = IntakeQClient(spent, clock=clock)

    opts, paths = ImportOptions(), Paths.beside(path)
    with Checkpoint(paths.checkpoint, plan_identity(path, opts)) as cp:
        run = run_import(client, spent, path, opts, paths, checkpoint=cp, wait=True)
    client.close()

    assert run.stopped_by is None
    assert sum(clock.slept) > 3600                             # it slept through the day, in steps
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Waited"
