"""Planning reads are kept (issue 11, items 5 and 6): a dry run's reads serve the real run,
and a plan needing more reads than a day's budget is completed over several runs.

Requests are counted in the sandbox's log; the budget is the ledger's (INTAKEQ_MAX_PER_DAY
raised between runs, as the next day would raise it).
"""
from __future__ import annotations

import re
import stat

from test_import import export_csv, import_, read_rows, write_rows

from etl.api import Ledger


def gets(sandbox) -> list:
    return [e for e in sandbox.log if e.method == "GET"]


def edit_cities(run_cli, tmp_path, n: int) -> tuple:
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    edited = [r for r in rows if r["FirstName"] and r["LastName"]][:n]
    for i, r in enumerate(edited):
        r["City"] = f"Keptville {i}"
    write_rows(path, header, rows)
    return path, {int(r["ClientId"]): r["City"] for r in edited}


def reads_file(path):
    return path.parent / (path.stem + ".reads.sqlite")


def used_today(settings) -> int:
    ledger = Ledger.for_settings(settings)
    try:
        return ledger.usage().used_24h
    finally:
        ledger.close()


def test_a_dry_runs_reads_serve_the_real_run_and_a_staff_change_since_is_read_and_kept(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=300, seed=21)            # a full pull would be 4 pages: 3 look-ups are cheaper
    path, cities = edit_cities(run_cli, tmp_path, 3)
    sandbox.log.clear()

    dry = import_(run_cli, path, "--dry-run")

    assert dry.exit_code == 0, dry.output
    assert len(gets(sandbox)) == 3
    assert "live data: 3 per-client look-up(s) (3 read(s))" in dry.output
    assert stat.S_IMODE(reads_file(path).stat().st_mode) == 0o600
    assert not (path.parent / (path.stem + ".checkpoint.sqlite")).exists()   # a dry run never makes it

    changed = next(iter(cities))
    sandbox.store.staff_edit(changed, Email="staff.changed@example.org")     # between dry run and run
    sandbox.log.clear()

    run = import_(run_cli, path)

    assert run.exit_code == 0, run.output
    sent = gets(sandbox)
    assert len(sent) == 1 and "dateUpdatedStart" in sent[0].query           # the freshness query only
    assert "(1 read(s), 2 reused from the dry run)" in run.output
    for cid, city in cities.items():
        assert sandbox.store.clients[cid]["City"] == city
    assert sandbox.store.clients[changed]["Email"] == "staff.changed@example.org"   # staff's change kept
    assert not reads_file(path).exists()              # the import is done: its reads are gone


def test_in_doubt_the_real_run_reads_as_without_a_dry_run(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=300, seed=22)
    path, cities = edit_cities(run_cli, tmp_path, 3)
    assert import_(run_cli, path, "--dry-run").exit_code == 0

    sandbox.log.clear()
    # other options: read again, and a note says why (not with --quiet: notes are progress)
    other = run_cli("import", path, "--yes", "--dry-run", "--blank", "clear")
    assert other.exit_code == 0, other.output
    assert len(gets(sandbox)) == 3
    assert "not used (the dry run had other options)" in other.output

    sandbox.log.clear()
    run = import_(run_cli, path, env={"INTAKEQ_REUSE_DRY_RUN_MINUTES": "0"})   # reuse turned off
    assert run.exit_code == 0, run.output
    assert len(gets(sandbox)) == 3
    assert "reused" not in run.output
    for cid, city in cities.items():
        assert sandbox.store.clients[cid]["City"] == city


def test_a_plan_needing_three_days_of_reads_finishes_in_four_runs_with_no_read_thrown_away(
        sandbox, run_cli, settings, tmp_path):
    sandbox.reset(n_clients=1100, seed=23)           # a full pull: 12 pages; 10 look-ups are cheaper
    path, cities = edit_cities(run_cli, tmp_path, 10)
    sandbox.log.clear()
    codes, reads, outputs = [], [], []
    for run in range(4):
        budget = {"INTAKEQ_MAX_PER_DAY": str(used_today(settings) + 4)} if run < 3 else None   # 4 a "day"
        before = len(gets(sandbox))
        result = run_cli("import", path, "--yes", env=budget)     # not --quiet: its notes are checked
        codes.append(result.exit_code)
        reads.append(len(gets(sandbox)) - before)
        outputs.append(result.output)

    assert codes == [75, 75, 75, 0], outputs
    assert "client read(s) kept in" in outputs[0]
    assert re.search(r"live data: 10 per-client look-up\(s\) \(\d+ read\(s\), \d+ reused from earlier runs\)",
                     outputs[3]), outputs[3]
    assert reads[0] == 4                              # all of the first day's budget went to look-ups
    assert sum(reads) <= len(cities) + 3              # the plan's 10 look-ups + one freshness query a later run
    for cid, city in cities.items():
        assert sandbox.store.clients[cid]["City"] == city


def test_a_full_pull_larger_than_a_days_budget_goes_on_the_next_day_where_it_stopped(
        sandbox, run_cli, settings, tmp_path):
    sandbox.reset(n_clients=650, seed=24)            # a full pull: 7 pages
    path = tmp_path / "foreign.csv"                  # no export behind it: live is a full pull
    path.write_text("FirstName,LastName,Email\nNadia,Newcomer,nadia.newcomer@example.org\n", encoding="utf-8")
    codes, reads, outputs = [], [], []
    for run in range(4):
        budget = {"INTAKEQ_MAX_PER_DAY": str(used_today(settings) + 4)} if run < 3 else None   # 4 a "day"
        before = len(gets(sandbox))
        result = import_(run_cli, path, env=budget)
        codes.append(result.exit_code)
        reads.append(len(gets(sandbox)) - before)
        outputs.append(result.output)
        if result.exit_code == 0:
            break
    assert codes[0] == 75 and codes[-1] == 0, outputs
    # day 1: 4 pages, kept; day 2: a check page and the last 3; day 3: the catch-up (updated,
    # created, deleted), then the create: nothing read twice but the check page
    assert reads == [4, 4, 3]
    assert sum(reads) <= 7 + 3 * len(codes) + 3       # as a full export spanning days
    created = [c for c in sandbox.store.clients.values() if c.get("Email") == "nadia.newcomer@example.org"]
    assert len(created) == 1
