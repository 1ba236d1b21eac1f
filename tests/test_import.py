"""End-to-end import tests: the real CLI against the sandbox over loopback HTTP."""
from __future__ import annotations

import copy
import csv
import json
import sqlite3
from pathlib import Path

import pytest

# --------------------------------------------------------------------------- helpers


def export_csv(run_cli, out: Path) -> Path:
    result = run_cli("export", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out / "clients.csv"


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict], *, crlf=False) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\r\n" if crlf else "\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in header})
    return path


def writes(sandbox) -> list:
    return [e for e in sandbox.log if e.method in ("POST", "DELETE")]


def saves(sandbox) -> list:
    return [e for e in sandbox.log if e.method == "POST" and e.path.rstrip("/").endswith("/clients")]


def snapshot_store(sandbox) -> dict[int, dict]:
    return copy.deepcopy(sandbox.store.clients)


def without_update_stamp(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "LastUpdateDate"}


def import_(run_cli, path, *args, env=None):
    return run_cli("import", path, "--yes", "--quiet", *args, env=env)


def row_of(rows, client_id):
    return next(r for r in rows if r["ClientId"] == str(client_id))


def results_of(path: Path) -> dict[int, dict]:
    _, rows = read_rows(path.parent / (path.stem + ".results.csv"))
    return {int(r["row"]): r for r in rows}


# --------------------------------------------------------------------------- the story


def test_twelve_cells_only_the_edited_clients_are_saved_and_a_rerun_writes_nothing(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=60, seed=3)
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    edited = {}
    plan = [("Email", "new{}@example.org"), ("City", "Springfield"), ("LastName", "Newname{}")]
    for i, r in enumerate(rows[5:17]):          # 12 cells over 12 clients
        column, value = plan[i % 3]
        r[column] = value.format(i) if "{}" in value else value
        edited[int(r["ClientId"])] = (column, r[column])
    write_rows(path, header, rows)
    before = snapshot_store(sandbox)
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 12
    assert all(e.method == "POST" for e in writes(sandbox))
    after = sandbox.store.clients
    for cid, record in before.items():
        if cid not in edited:
            assert after[cid] == record, f"client {cid} was touched"
            continue
        column, value = edited[cid]
        assert after[cid][column] == value
        changed = {k for k in record if without_update_stamp(record).get(k) != without_update_stamp(after[cid]).get(k)}
        allowed = {column} | ({"Name"} if column == "LastName" else set())
        if not record.get("MobilePhone"):   # IntakeQ copies Phone into an empty MobilePhone on save
            allowed.add("MobilePhone")
        assert changed <= allowed, (cid, changed)   # a partial body would have cleared fields

    sandbox.log.clear()
    again = import_(run_cli, path)
    assert again.exit_code == 0, again.output
    assert writes(sandbox) == []


def test_a_file_resaved_by_a_spreadsheet_with_no_edits_makes_zero_writes(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    for r in rows:     # what Excel does to untouched cells
        r["ClientId"] = r["ClientId"] + ".0"
        if r.get("DateOfBirth"):
            y, m, d = r["DateOfBirth"].split("-")
            r["DateOfBirth"] = f"{int(m)}/{int(d)}/{y}"
        if r.get("Archived"):
            r["Archived"] = r["Archived"].upper()
        if r.get("BillingType"):
            r["BillingType"] = r["BillingType"] + ".0"
    write_rows(path, header, rows, crlf=True)
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []
    assert "unchanged" in result.output


def test_dry_run_sends_no_write_and_writes_the_plan(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Dryville"
    write_rows(path, header, rows)
    sandbox.log.clear()

    result = run_cli("import", path, "--dry-run")

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []
    _, plan = read_rows(path.parent / "clients.plan.csv")
    assert [(p["ClientId"], p["action"], p["field"], p["new"]) for p in plan] == \
        [(rows[0]["ClientId"], "update", "City", "Dryville")]
    assert "1 client save(s)" in result.output
    assert not (path.parent / "clients.checkpoint.sqlite").exists()       # created by a first write only


# --------------------------------------------------------------------------- columns, blanks, tags


def test_a_file_with_only_client_id_and_email_updates_emails_only(sandbox, run_cli, tmp_path):
    export_csv(run_cli, tmp_path / "export")
    target = sorted(sandbox.store.clients)[2]
    path = write_rows(tmp_path / "export" / "clients.csv", ["ClientId", "Email"],
                      [{"ClientId": str(target), "Email": "only.email@example.org"}])
    before = snapshot_store(sandbox)

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    after = sandbox.store.clients[target]
    assert after["Email"] == "only.email@example.org"
    assert without_update_stamp(after) == {**without_update_stamp(before[target]), "Email": "only.email@example.org"}


@pytest.mark.parametrize("blank, expect_cleared", [("keep", False), ("clear", True)])
def test_blank_cells_keep_or_clear(sandbox, run_cli, tmp_path, blank, expect_cleared):
    export_csv(run_cli, tmp_path / "export")
    target = next(cid for cid, c in sorted(sandbox.store.clients.items()) if c.get("City"))
    path = write_rows(tmp_path / "export" / "clients.csv", ["ClientId", "City"],
                      [{"ClientId": str(target), "City": ""}])
    sandbox.log.clear()

    result = import_(run_cli, path, "--blank", blank)

    assert result.exit_code == 0, result.output
    city = sandbox.store.clients[target].get("City")
    assert (city in (None, "")) is expect_cleared
    assert len(saves(sandbox)) == (1 if expect_cleared else 0)


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_tags_merge_adds_and_replace_also_removes_what_the_admin_deleted(sandbox, run_cli, tmp_path, mode):
    cid = sorted(sandbox.store.clients)[0]
    sandbox.store.staff_edit(cid, Tags=["keep", "drop"])
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    row_of(rows, cid)["Tags"] = "keep; new"
    write_rows(path, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, path, "--tags", mode)

    assert result.exit_code == 0, result.output
    tags = set(sandbox.store.clients[cid]["Tags"])
    assert tags == ({"keep", "new", "drop"} if mode == "merge" else {"keep", "new"})
    assert saves(sandbox) == []            # a tag-only change uses only the tag endpoints
    assert len(writes(sandbox)) == (1 if mode == "merge" else 2)


# --------------------------------------------------------------------------- new rows


def test_a_new_row_matching_an_existing_client_becomes_an_update_not_a_duplicate(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    existing = next(r for r in rows if r["Email"] and r["FirstName"])
    new_row = {k: "" for k in header}
    new_row.update(FirstName=existing["FirstName"], LastName=existing["LastName"],
                   Email=existing["Email"].upper(), City="Matchtown")
    others = [r for r in rows if r is not existing]       # the client's own row is not in this file
    write_rows(path, header, others + [new_row])
    count = len(sandbox.store.clients)

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert len(sandbox.store.clients) == count
    assert sandbox.store.clients[int(existing["ClientId"])]["City"] == "Matchtown"


def test_new_rows_are_created_with_their_tags_and_a_rerun_creates_nothing(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    new = [{"FirstName": "Newa", "LastName": "Person", "Email": "newa@example.org", "Tags": "fresh; a\\;b"},
           {"FirstName": "Newb", "LastName": "Nomail"}]
    write_rows(path, header, rows + new)
    count = len(sandbox.store.clients)

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert len(sandbox.store.clients) == count + 2
    made = {c["FirstName"]: c for c in sandbox.store.clients.values() if c["LastName"] in ("Person", "Nomail")}
    assert set(made["Newa"]["Tags"]) == {"fresh", "a;b"}
    results = results_of(path)
    made_ids = {str(c["ClientId"]) for c in made.values()}
    assert {r["status"] for r in results.values() if r["ClientId"] in made_ids} == {"created"}

    sandbox.log.clear()
    again = import_(run_cli, path)
    assert again.exit_code == 0, again.output
    assert writes(sandbox) == []
    assert len(sandbox.store.clients) == count + 2


# --------------------------------------------------------------------------- three-way


def test_staff_edits_since_the_export_are_kept_and_same_field_changes_conflict(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    a, b = rows[0], rows[1]
    b_city_before = b["City"]
    a["City"] = "AdminCity"                       # admin edits City of a
    b["City"] = "AdminCity"                       # admin edits City of b
    write_rows(path, header, rows)
    sandbox.store.staff_edit(int(a["ClientId"]), Email="staff@example.org")   # another field: kept
    sandbox.store.staff_edit(int(b["ClientId"]), City="StaffCity")            # same field: conflict

    result = import_(run_cli, path)

    assert result.exit_code == 4, result.output
    after_a = sandbox.store.clients[int(a["ClientId"])]
    assert after_a["City"] == "AdminCity" and after_a["Email"] == "staff@example.org"
    assert sandbox.store.clients[int(b["ClientId"])]["City"] == "StaffCity"
    _, plan = read_rows(path.parent / "clients.plan.csv")
    conflict = next(p for p in plan if p["action"] == "conflict")
    assert (conflict["field"], conflict["old"], conflict["new"], conflict["base"]) == \
        ("City", "StaffCity", "AdminCity", b_city_before)
    assert results_of(path)[rows.index(b) + 2]["status"] == "conflict"

    forced = import_(run_cli, path, "--prefer", "file")
    assert forced.exit_code == 0, forced.output
    assert sandbox.store.clients[int(b["ClientId"])]["City"] == "AdminCity"


def test_an_import_without_a_base_is_two_way_and_warns(sandbox, run_cli, tmp_path, cli_env):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[3]["City"] = "Twoway"
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = write_rows(other / "from-another-system.csv", header, rows)
    fresh_state = {"INTAKEQ_ETL_STATE_DIR": str(tmp_path / "other-state")}

    result = import_(run_cli, moved, env=fresh_state)

    assert result.exit_code == 0, result.output
    assert "two-way" in result.output
    assert sandbox.store.clients[int(rows[3]["ClientId"])]["City"] == "Twoway"
    assert len(saves(sandbox)) == 1


# --------------------------------------------------------------------------- bad input


def test_an_invalid_file_sends_nothing_and_exits_1(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["ClientId"] = "abc"
    write_rows(path, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert sandbox.log == []
    assert (path.parent / "clients.report.csv").exists()


def test_two_rows_for_the_same_client_is_an_error_naming_both_rows(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    write_rows(path, header, rows + [dict(rows[0])])
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert result.output.endswith(
        f"error: {path}: 2 validation error(s); nothing was sent. Full report: {path.parent / 'clients.report.csv'}. "
        f"First: row 2, column ClientId: the same ClientId is also on row {len(rows) + 2}\n"), result.output


def test_a_changed_input_file_starts_anew_after_a_finished_run(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "One"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    rows[0]["City"] = "Two"
    write_rows(path, header, rows)

    again = import_(run_cli, path)

    assert again.exit_code == 0, again.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Two"


def test_a_changed_input_file_refuses_to_resume_an_unfinished_run(sandbox, run_cli, tmp_path):
    from etl.importer import ImportOptions, plan_identity
    from etl.importer.checkpoint import Checkpoint

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "One"
    write_rows(path, header, rows)
    with Checkpoint(path.parent / "clients.checkpoint.sqlite", plan_identity(path, ImportOptions())) as cp:
        cp.begin(2, "save", client_id=int(rows[0]["ClientId"]))      # killed while its save was in flight
    rows[0]["City"] = "Two"
    write_rows(path, header, rows)

    refused = import_(run_cli, path)
    assert refused.exit_code == 1
    assert "belongs to another version of the input file" in refused.output and "--restart" in refused.output

    restarted = import_(run_cli, path, "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Two"


@pytest.mark.parametrize("column, bad", [("Email", "not-an-email"), ("DateOfBirth", "31/31/2020")])
def test_a_file_that_fails_validation_leaves_no_checkpoint_and_the_fixed_file_imports_without_restart(
        sandbox, run_cli, tmp_path, column, bad):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Fixed later"
    good = rows[0][column]
    rows[0][column] = bad
    write_rows(path, header, rows)

    refused = import_(run_cli, path)

    assert refused.exit_code == 1, refused.output
    assert writes(sandbox) == []
    assert not (path.parent / "clients.checkpoint.sqlite").exists()

    rows[0][column] = good
    write_rows(path, header, rows)
    fixed = import_(run_cli, path)                   # the same command: no --restart needed
    assert fixed.exit_code == 0, fixed.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Fixed later"


@pytest.mark.parametrize("option", [("--timezone", "Not/AZone"), ("--date-format", "%Q")])
def test_a_bad_option_value_leaves_no_checkpoint(sandbox, run_cli, tmp_path, option):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Edited"
    write_rows(path, header, rows)

    refused = import_(run_cli, path, *option)

    assert refused.exit_code == 1, refused.output
    assert writes(sandbox) == []
    assert not (path.parent / "clients.checkpoint.sqlite").exists()
    assert import_(run_cli, path).exit_code == 0


def test_a_checkpoint_that_never_sent_anything_is_replaced_silently_by_another_file(sandbox, run_cli, tmp_path):
    from etl.importer import ImportOptions, plan_identity
    from etl.importer.checkpoint import Checkpoint

    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Replaced"
    write_rows(path, header, rows)
    checkpoint = path.parent / "clients.checkpoint.sqlite"
    # What an older version left after a refused run: the identity of another file, no row.
    db = sqlite3.connect(checkpoint)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('identity', 'another version of the file');")
    db.close()

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert "--restart" not in result.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Replaced"
    with Checkpoint(checkpoint, plan_identity(path, ImportOptions())) as now_this_files:
        assert [st.status for st in now_this_files.all().values()] == ["updated"]


def test_checkpoint_results_and_plan_files_are_owner_only(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Private"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    for name in ("clients.checkpoint.sqlite", "clients.results.csv", "clients.plan.csv"):
        assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name


def test_skip_invalid_imports_the_valid_rows_and_writes_the_rejects(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "ValidEdit"
    rows[1]["BillingType"] = "7"              # not 0, 1 or 2
    write_rows(path, header, rows)

    result = import_(run_cli, path, "--skip-invalid")

    assert result.exit_code == 0, result.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "ValidEdit"
    _, rejects = read_rows(path.parent / "clients.rejects.csv")
    assert [r["row"] for r in rejects] == ["3"]
    assert "BillingType" in rejects[0]["problems"]
    assert results_of(path)[3]["status"] == "skipped"
    assert (path.parent / "clients.rejects.csv").stat().st_mode & 0o777 == 0o600


def test_an_unknown_column_is_named_and_never_sent(sandbox, run_cli, tmp_path):
    export_csv(run_cli, tmp_path / "export")
    target = sorted(sandbox.store.clients)[0]
    path = write_rows(tmp_path / "export" / "clients.csv", ["ClientId", "Emial"],
                      [{"ClientId": str(target), "Emial": "typo@example.org"}])
    before = copy.deepcopy(sandbox.store.clients[target])
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 0, result.output
    assert "Emial" in result.output
    assert writes(sandbox) == []
    assert sandbox.store.clients[target] == before


def test_a_new_row_matching_a_client_that_also_has_its_own_row_is_an_error_naming_both(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    existing = next(r for r in rows if r["Email"] and r["FirstName"])
    new_row = {k: "" for k in header}
    new_row.update(FirstName=existing["FirstName"], LastName=existing["LastName"], Email=existing["Email"],
                   City="Elsewhere")
    write_rows(path, header, rows + [new_row])
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 1
    assert f"rows {rows.index(existing) + 2} and {len(rows) + 2} are the same client" in result.output
    assert writes(sandbox) == []


def test_reimporting_after_restart_keeps_the_name_that_followed_a_last_name_edit(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    row = next(r for r in rows if r["FirstName"] and r["LastName"])
    row["LastName"] = "Renamed"
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    cid = int(row["ClientId"])
    assert sandbox.store.clients[cid]["Name"] == f"{row['FirstName']} Renamed"
    sandbox.log.clear()

    again = import_(run_cli, path, "--restart")

    assert again.exit_code == 0, again.output
    assert writes(sandbox) == []
    assert sandbox.store.clients[cid]["Name"] == f"{row['FirstName']} Renamed"


def test_after_restart_a_created_row_with_email_is_recognised_not_failed(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "Edited"
    write_rows(path, header, rows + [{"FirstName": "Restart", "LastName": "Person",
                                      "Email": "restart.person@example.org"}])
    assert import_(run_cli, path).exit_code == 0
    count = len(sandbox.store.clients)
    sandbox.log.clear()

    again = import_(run_cli, path, "--restart")

    assert again.exit_code == 0, again.output
    assert writes(sandbox) == []
    assert len(sandbox.store.clients) == count
    assert results_of(path)[len(rows) + 2]["status"] == "unchanged"


# --------------------------------------------------------------------------- what the run says


def test_a_rerun_whose_only_remaining_row_is_a_conflict_says_it_needs_a_decision(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["City"] = "AdminCity"
    rows[1]["City"] = "AdminCity"
    write_rows(path, header, rows)
    sandbox.store.staff_edit(int(rows[1]["ClientId"]), City="StaffCity")
    first = import_(run_cli, path)
    assert first.exit_code == 4, first.output

    again = import_(run_cli, path)

    assert again.exit_code == 4, again.output
    assert "nothing to write; 1 conflict needs a decision" in again.output
    assert "already matches" not in again.output


def test_the_conflict_message_counts_in_the_plural():
    from etl.importer.outcome import nothing_to_write
    from etl.importer.reports import RowResult

    conflicts = [RowResult(row, row, "conflict", (), "") for row in (2, 3)]
    assert nothing_to_write(conflicts) == "nothing to write; 2 conflicts need a decision"
    assert nothing_to_write([]) == "nothing to write: IntakeQ already matches the file"


def json_line(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def export_then_edit_one_cell(run_cli, tmp_path, column: str, value: str) -> Path:
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[2][column] = value
    return write_rows(path, header, rows)


def test_import_json_prints_one_summary_line_on_stdout(sandbox, run_cli, tmp_path):
    path = export_then_edit_one_cell(run_cli, tmp_path, "City", "Jsonville")

    result = import_(run_cli, path, "--json")

    assert result.exit_code == 0, result.output
    summary = json_line(result)
    assert summary["plan"] == {"update": 1, "unchanged": 19}
    assert summary["results"] == {"unchanged": 19, "updated": 1}
    assert summary["requests"] == 2                                    # one page read, one save
    assert summary["files"] == [str(path.parent / name) for name in
                                ("clients.plan.csv", "clients.plan.xlsx", "clients.plan.html", "clients.results.csv")]
    assert summary["exit_status"] == 0 and summary["error"] is None
    assert summary["base"] and summary["dry_run"] is False
    assert "Jsonville" not in result.stdout                           # counts, never client data


def test_import_json_prints_its_line_on_exit_1_too(sandbox, run_cli, tmp_path):
    path = export_then_edit_one_cell(run_cli, tmp_path, "Email", "not-an-email")

    result = import_(run_cli, path, "--json")

    assert result.exit_code == 1, result.output
    summary = json_line(result)
    assert summary["exit_status"] == 1 and "validation error" in summary["error"]
    assert summary["plan"] is None and summary["results"] is None and summary["requests"] == 0
    assert summary["files"] == [str(path.parent / "clients.report.csv")]
    assert "error:" in result.stderr                                  # the human line stays on stderr
