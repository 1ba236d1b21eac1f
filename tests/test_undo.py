"""``undo`` and ``history`` (issue 12): take back exactly what one import changed, and
nothing staff did since; the account's history of runs.

End to end through the real CLI against the sandbox; kills through ``python -m etl``
subprocesses (as in test_import_resilience).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
from test_import import export_csv, import_, read_rows, snapshot_store, without_update_stamp, write_rows, writes
from test_import_resilience import make_edits, spawn_import, writes_so_far

from etl.importer.history import JournalEntry
from etl.importer.undo import plan_undo_row
from etl.sandbox import Faults

NEW_CLIENT = {"FirstName": "Undone", "LastName": "Newcomer", "Email": "undone.newcomer@example.org"}


def undo(run_cli, what, *args):
    return run_cli("undo", what, "--yes", "--quiet", *args)


def history(run_cli) -> list[dict]:
    result = run_cli("history", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_of(results_csv) -> str:
    _, rows = read_rows(results_csv)
    return rows[0]["run"]


def profiles(sandbox, ids) -> dict[int, dict]:
    return {cid: without_update_stamp(sandbox.store.clients[cid]) for cid in ids}


def edit_everything(run_cli, sandbox, tmp_path):
    """Export, then edit: two emails, a custom field, a tag added, a tag removed, a blank
    cleared (--blank clear), a new client. Returns the file and the edited ClientIds."""
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    custom = next(c for c in header if c.startswith("custom."))
    free = list(rows)

    def take(ok=lambda r: True):
        found = next(r for r in free if ok(r))
        free.remove(found)
        return found

    first, second = take(lambda r: r["Email"]), take(lambda r: r["Email"])
    first["Email"], second["Email"] = "first.changed@example.org", "second.changed@example.org"
    customised = take()
    customised[custom] = "Changed by the import"
    added = take()
    added["Tags"] = "; ".join(filter(None, [added["Tags"], "undo-me"]))
    removed = take(lambda r: r["Tags"] and ";" not in r["Tags"] and "\\" not in r["Tags"])
    removed["Tags"] = ""                                       # its one tag removed (--tags replace)
    blanked = take(lambda r: r["City"])
    blanked["City"] = ""                                       # cleared (--blank clear)
    edited = dict(email=int(first["ClientId"]), email2=int(second["ClientId"]), custom=int(customised["ClientId"]),
                  tag_added=int(added["ClientId"]), tag_removed=int(removed["ClientId"]),
                  blanked=int(blanked["ClientId"]))
    write_rows(path, header, rows + [NEW_CLIENT])
    return path, edited


def test_undo_takes_back_every_change_but_a_staff_edit_which_it_reports(sandbox, run_cli, tmp_path):
    path, edited = edit_everything(run_cli, sandbox, tmp_path)
    before = snapshot_store(sandbox)
    imported = import_(run_cli, path, "--tags", "replace", "--blank", "clear", "--json")
    assert imported.exit_code == 0, imported.output
    run = run_of(tmp_path / "export" / "clients.results.csv")
    assert f"run: {run}" in imported.stderr and json.loads(imported.stdout)["run"] == run
    assert sandbox.store.clients[edited["email"]]["Email"] == "first.changed@example.org"
    assert not sandbox.store.clients[edited["blanked"]]["City"]
    created = max(sandbox.store.clients)
    assert created not in before
    sandbox.store.staff_edit(edited["email2"], Email="staff.fixed@example.org")   # a changed field, changed again

    sandbox.log.clear()
    result = undo(run_cli, run)

    assert result.exit_code == 4, result.output
    staff = edited["email2"]
    for cid, profile in profiles(sandbox, before).items():
        expected = without_update_stamp(before[cid])
        if cid == staff:
            expected["Email"] = "staff.fixed@example.org"     # kept: staff's, not the import's
        assert profile == expected, cid
    assert created in sandbox.store.clients                # cannot be deleted through the API
    folder = tmp_path / "export"
    _, results = read_rows(folder / f"clients.undo-{run}.results.csv")
    by_client = {int(r["ClientId"]): r for r in results}
    conflict = by_client[staff]
    assert conflict["status"] == "conflict"
    assert "staff.fixed@example.org" in conflict["message"] and "second.changed@example.org" in conflict["message"]
    assert before[staff]["Email"] in conflict["message"]
    manual = by_client[created]
    assert manual["status"] == "manual" and "Undone Newcomer" in manual["message"]
    assert "by hand" in manual["message"]
    _, plan = read_rows(folder / f"clients.undo-{run}.plan.csv")
    line = next(p for p in plan if p["action"] == "conflict")
    assert (line["field"], line["old"], line["new"], line["base"]) == \
        ("Email", "staff.fixed@example.org", before[staff]["Email"], "second.changed@example.org")
    assert any(p["action"] == "manual" and p["ClientId"] == str(created) for p in plan)
    assert len(writes(sandbox)) == 5         # 3 saves (email, custom field, blank) + 2 tag calls: no more
    # the undo's review files, as an import's: the conflict marked in the workbook
    from openpyxl import load_workbook

    changes = load_workbook(folder / f"clients.undo-{run}.plan.xlsx")["Changes"]
    assert any(c.comment is not None and "conflict" in c.comment.text for row in changes.iter_rows() for c in row)
    assert "undo plan" in (folder / f"clients.undo-{run}.plan.html").read_text(encoding="utf-8")

    runs = history(run_cli)
    assert [r["kind"] for r in runs] == ["undo", "import"]
    assert runs[0]["undoes"] == run and runs[1]["undone_by"] == runs[0]["run"]
    assert runs[1]["counts"]["created"] == 1 and runs[1]["counts"]["tagged"] == 2

    sandbox.log.clear()
    again = undo(run_cli, folder / "clients.results.csv")        # the results file names the run
    assert again.exit_code == 4, again.output                    # the staff edit still kept
    assert writes(sandbox) == []


def test_an_undo_killed_with_sigkill_and_run_again_reaches_the_same_state(sandbox, run_cli, cli_env, tmp_path):
    sandbox.reset(n_clients=30, seed=7)
    path, _expect = make_edits(run_cli, sandbox, tmp_path)
    before = snapshot_store(sandbox)
    imported = import_(run_cli, path)
    assert imported.exit_code == 0, imported.output
    run = run_of(path.parent / "clients.results.csv")

    sandbox.configure(faults=Faults(seed=1, write_latency=0.15))
    start = writes_so_far(sandbox)
    proc = spawn_undo(cli_env, run)
    deadline = time.monotonic() + 60
    while proc.poll() is None and writes_so_far(sandbox) < start + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert sandbox.wait_idle()          # its last write may still be in write_latency: logged after
    assert proc.returncode == -signal.SIGKILL and writes_so_far(sandbox) > start    # killed mid-run
    sandbox.configure(faults=Faults())

    again = undo(run_cli, run)
    assert again.exit_code == 0, again.output
    assert profiles(sandbox, before) == {cid: without_update_stamp(r) for cid, r in before.items()}
    assert [r["kind"] for r in history(run_cli)] == ["undo", "import"]     # resumed: one undo run
    undone_by = history(run_cli)[0]["run"]
    sandbox.log.clear()
    assert undo(run_cli, run).exit_code == 0
    assert writes(sandbox) == []
    # nothing left to take back: the results file stays the one of the undo that did it
    assert run_of(path.parent / f"clients.undo-{run}.results.csv") == undone_by
    assert [r["kind"] for r in history(run_cli)] == ["undo", "import"]


def test_an_import_killed_mid_run_is_undoable(sandbox, run_cli, cli_env, tmp_path):
    sandbox.reset(n_clients=30, seed=7)
    path, _expect = make_edits(run_cli, sandbox, tmp_path)
    before = snapshot_store(sandbox)
    sandbox.configure(faults=Faults(seed=1, write_latency=0.15))
    proc = spawn_import(cli_env, path)
    deadline = time.monotonic() + 60
    while proc.poll() is None and writes_so_far(sandbox) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert sandbox.wait_idle()
    assert proc.returncode == -signal.SIGKILL
    sandbox.configure(faults=Faults())
    assert any(without_update_stamp(sandbox.store.clients[cid]) != without_update_stamp(r)
               for cid, r in before.items())               # some of its writes landed
    runs = history(run_cli)
    assert len(runs) == 1 and runs[0]["kind"] == "import"

    result = undo(run_cli, runs[0]["run"])

    assert result.exit_code == 0, result.output
    assert profiles(sandbox, before) == {cid: without_update_stamp(r) for cid, r in before.items()}


def test_undoing_an_older_run_keeps_what_a_later_import_changed(sandbox, run_cli, tmp_path):
    first = export_csv(run_cli, tmp_path / "one")
    header, rows = read_rows(first)
    cid = int(rows[0]["ClientId"])
    city_before = rows[0]["City"]
    rows[0]["City"], rows[0]["Email"] = "First Run City", "first.run@example.org"
    write_rows(first, header, rows)
    assert import_(run_cli, first).exit_code == 0
    second = export_csv(run_cli, tmp_path / "two")
    header, rows = read_rows(second)
    rows[0]["City"] = "Second Run City"
    write_rows(second, header, rows)
    assert import_(run_cli, second).exit_code == 0
    older = run_of(tmp_path / "one" / "clients.results.csv")

    result = undo(run_cli, older)

    assert result.exit_code == 4, result.output
    now = sandbox.store.clients[cid]
    assert now["City"] == "Second Run City"                 # the later import's: kept, reported
    assert now["Email"] != "first.run@example.org"          # the rest is taken back
    _, plan = read_rows(tmp_path / "one" / f"clients.undo-{older}.plan.csv")
    line = next(p for p in plan if p["field"] == "City")
    assert line["action"] == "update" and "conflict" in line["note"]
    assert (line["old"], line["new"]) == ("Second Run City", city_before)


def test_an_undo_can_be_undone_and_the_run_undone_again(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    cid, city = int(rows[0]["ClientId"]), rows[0]["City"]
    rows[0]["City"] = "Redo City"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    run = run_of(path.parent / "clients.results.csv")
    assert undo(run_cli, run).exit_code == 0
    assert sandbox.store.clients[cid]["City"] == city
    undo_run = history(run_cli)[0]["run"]

    assert undo(run_cli, undo_run).exit_code == 0            # the undo taken back: the import's value again
    assert sandbox.store.clients[cid]["City"] == "Redo City"
    assert history(run_cli)[-1]["undone_by"] is None          # the import is in effect again
    again = undo(run_cli, run)                               # a new undo run, planned against live
    assert again.exit_code == 0, again.output
    assert sandbox.store.clients[cid]["City"] == city
    runs = history(run_cli)
    assert [r["kind"] for r in runs] == ["undo", "undo", "undo", "import"]
    assert runs[-1]["undone_by"] == runs[0]["run"]


def test_from_python_an_undo_stops_at_the_budget_and_wait_finishes_it(sandbox, run_cli, settings, tmp_path):
    from etl import undo_import
    from etl.api import IntakeQClient, Ledger
    from etl.clock import FakeClock
    from etl.errors import BudgetExhausted
    from etl.importer import open_checkpoint, undo_identity, undo_paths
    from etl.importer.undo import resolve_run

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    before = snapshot_store(sandbox)
    for r in rows[:5]:
        r["City"] = "Budget City"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    target = resolve_run(settings.account_dir, path.parent / "clients.results.csv")
    ledger = Ledger.for_settings(settings)
    used = ledger.usage().used_24h
    ledger.close()
    tight = settings.with_(max_per_day=used + 1 + 2)        # the listing, then two saves
    paths = undo_paths(target)
    clock = FakeClock(time.time())
    client = IntakeQClient(tight, clock=clock)

    cp = open_checkpoint(paths.checkpoint, undo_identity(target), restart=False, dry_run=False)
    stopped = undo_import(client, tight, target.run_id, paths, checkpoint=cp)
    cp.close()
    assert isinstance(stopped.stopped_by, BudgetExhausted) and stopped.run_id
    assert sorted(r.status for r in stopped.results.values()) == ["pending"] * 3 + ["updated"] * 2

    cp = open_checkpoint(paths.checkpoint, undo_identity(target), restart=False, dry_run=False)
    finished = undo_import(client, tight, target.run_id, paths, checkpoint=cp, wait=True)
    cp.close()
    client.close()
    assert finished.stopped_by is None and finished.exit_status() == 0
    assert finished.run_id == stopped.run_id                   # resumed: the same undo run
    assert sum(clock.slept) > 3600                             # it waited for the budget
    assert profiles(sandbox, before) == {cid: without_update_stamp(r) for cid, r in before.items()}


def test_an_undo_never_runs_beside_a_resume_of_its_run(sandbox, run_cli, tmp_path):
    import threading

    from etl.clock import SystemClock
    from etl.state.lock import checkpoint_lock

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Busy City"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    held, release = threading.Event(), threading.Event()

    def the_import_resumed():          # another process's import of the file, as far as the lock tells
        with checkpoint_lock(path.parent / "clients.checkpoint.sqlite", clock=SystemClock()):
            held.set()
            release.wait(30)

    other = threading.Thread(target=the_import_resumed)
    other.start()
    try:
        assert held.wait(10)
        sandbox.log.clear()
        busy = undo(run_cli, path.parent / "clients.results.csv", "--no-wait-for-others")
    finally:
        release.set()
        other.join()
    assert busy.exit_code == 75, busy.output
    assert "another import of this file is running" in busy.output and writes(sandbox) == []
    assert undo(run_cli, path.parent / "clients.results.csv").exit_code == 0


def test_an_unknown_run_is_one_line_and_exit_1(sandbox, run_cli):
    result = run_cli("undo", "20990101T000000-dead", "--yes")
    assert result.exit_code == 1
    assert "no run 20990101T000000-dead" in result.output and "Traceback" not in result.output


def test_plan_undo_row_sets_back_only_what_live_still_holds_from_the_run():
    live = {"ClientId": 7, "City": "Run City", "Email": "staff@example.org", "Tags": ["kept", "added"]}
    row = pd.Series({"ClientId": 7, "City": "Run City", "Email": "staff@example.org", "Phone": None})
    entries = [JournalEntry(2, 7, "City", "Boston", "Run City", "confirmed", 0.0),
               JournalEntry(2, 7, "Email", "old@example.org", "run@example.org", "confirmed", 0.0),
               JournalEntry(2, 7, "Phone", None, "555-0100", "sent", 0.0),          # never landed
               JournalEntry(2, 7, "Tags+added", False, True, "confirmed", 0.0),
               JournalEntry(2, 7, "Tags-gone", True, False, "confirmed", 0.0)]
    plan = plan_undo_row(2, 7, entries, live, row)
    assert [(c.field, c.new) for c in plan.changes] == [("City", "Boston")]
    assert plan.body["City"] == "Boston" and plan.body["Email"] == "staff@example.org"   # a full profile
    assert [c.field for c in plan.conflicts] == ["Email"]
    assert (plan.tag_removes, plan.tag_adds) == (["added"], ["gone"])

    later = plan_undo_row(2, 7, entries, live, row, later={(7, "City"), (7, "Tags:added")})
    assert later.changes == [] and later.tag_removes == []
    assert {c.field for c in later.conflicts} == {"City", "Email", "Tags"}
    forced = plan_undo_row(2, 7, entries, live, row, later={(7, "City")}, prefer_undo=True)
    assert {c.field: c.new for c in forced.changes} == {"City": "Boston", "Email": "old@example.org"}


def test_name_follows_the_names_set_back_and_keeps_a_staff_edit_of_the_other_part():
    """Review finding: the import's derived Name was set back as a field of its own, so a staff
    edit of LastName since made Name a false conflict and left "Imported Staffed"."""
    live = {"ClientId": 30, "FirstName": "Imported", "LastName": "Staffed", "Name": "Imported Staffed"}
    row = pd.Series(live)
    entries = [JournalEntry(2, 30, "FirstName", "Sarah", "Imported", "confirmed", 0.0),
               JournalEntry(2, 30, "Name", "Sarah Smith", "Imported Smith", "confirmed", 0.0)]
    plan = plan_undo_row(2, 30, entries, live, row)
    assert {c.field: c.new for c in plan.changes} == {"FirstName": "Sarah", "Name": "Sarah Staffed"}
    assert plan.conflicts == [] and plan.body["LastName"] == "Staffed"


def test_a_save_refused_before_it_took_effect_leaves_nothing_to_undo(tmp_path):
    from etl.importer.diff import Change, RowPlan
    from etl.importer.history import History, Journal, RunInfo
    from etl.importer.reports import RowResult

    refused = RowPlan(2, 7, "update", changes=[Change("City", "Boston", "Run City")], body={"ClientId": 7})
    saved = RowPlan(3, 8, "update", changes=[Change("City", "Salem", "Run City")], body={"ClientId": 8})
    journal = Journal(tmp_path, RunInfo("20261201T000000-abcd"))
    for plan in (refused, saved):
        journal.sending(plan)                    # before the request: both journalled
    journal.saved(saved)
    journal.row_done(refused, RowResult(2, 7, "failed", ("City",), "IntakeQ refused the save: ..."))
    journal.row_done(saved, RowResult(3, 8, "updated", ("City",)))
    journal.finish([])
    with History(tmp_path) as store:
        entries = store.journal("20261201T000000-abcd")
    assert [(e.row, e.field, e.before, e.after, e.status) for e in entries] == \
        [(3, "City", "Salem", "Run City", "confirmed")]


def spawn_undo(cli_env, run):
    return subprocess.Popen([sys.executable, "-m", "etl", "undo", run, "--yes", "--quiet"],
                            env={**os.environ, **cli_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_an_undone_import_is_not_continued_by_its_command(sandbox, run_cli, settings, tmp_path):
    """Review finding: an import stopped by the budget, then undone, sent its unfinished rows
    when its command was run again (as the exit-75 message says to)."""
    from etl.api import Ledger

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    for r in rows[:5]:
        r["City"] = "Wrong File"
    write_rows(path, header, rows)
    ledger = Ledger.for_settings(settings)
    used = ledger.usage().used_24h
    ledger.close()
    stopped = import_(run_cli, path, env={"INTAKEQ_MAX_PER_DAY": str(used + 1 + 2)})   # a read, 2 writes
    assert stopped.exit_code == 75, stopped.output
    assert len(writes(sandbox)) == 2
    run = run_of(path.parent / "clients.results.csv")
    assert undo(run_cli, run).exit_code == 0
    sandbox.log.clear()

    again = import_(run_cli, path)

    assert again.exit_code == 1
    assert f"run {run} of this checkpoint was undone" in again.output and "--restart" in again.output
    assert writes(sandbox) == [] and not any(c.get("City") == "Wrong File" for c in sandbox.store.clients.values())
    assert import_(run_cli, path, "--restart").exit_code == 0      # a new run, on purpose
    assert sum(c.get("City") == "Wrong File" for c in sandbox.store.clients.values()) == 5


def test_an_undo_killed_after_its_last_write_is_resumed_as_the_same_run(sandbox, run_cli, tmp_path, monkeypatch):
    """CI found it (a race in the SIGKILL test): killed after its last write, before its end
    was on record, the undo's finished checkpoint made the re-run a second undo run."""
    from etl.importer import history as H

    sandbox.reset(n_clients=30, seed=7)
    path, _expect = make_edits(run_cli, sandbox, tmp_path)
    assert import_(run_cli, path).exit_code == 0
    run = run_of(path.parent / "clients.results.csv")

    def killed(self, results):
        self.history.close()
        raise KeyboardInterrupt             # as a SIGKILL would: the round's end never recorded

    monkeypatch.setattr(H.Journal, "finish", killed)
    assert undo(run_cli, run).exit_code == 130
    monkeypatch.undo()

    assert undo(run_cli, run).exit_code == 0
    runs = history(run_cli)
    assert [r["kind"] for r in runs] == ["undo", "import"]
    assert runs[1]["undone_by"] == runs[0]["run"]
