"""The workflows admins really run (issue 8): sibling files from one export, continuing
edits, files re-saved by pandas or a spreadsheet, and `validate` telling the truth about
what `import` will refuse.

Each test is a real CLI run against the sandbox over loopback HTTP.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_import import export_csv, import_, read_rows, saves, write_rows, writes


def copy_of(export: Path, name: str) -> tuple[Path, list[str], list[dict]]:
    """A copy of the export's clients.csv beside its manifest, as an admin makes one."""
    path = export.parent / name
    shutil.copy(export, path)
    return (path, *read_rows(path))


def plan_lines(path: Path) -> list[dict]:
    return read_rows(path.parent / (path.stem + ".plan.csv"))[1]


def clients_with(rows, column) -> list[dict]:
    return [r for r in rows if r[column]]


# --------------------------------------------------------------------------- 1. lost update


@pytest.fixture
def siblings(sandbox, run_cli, tmp_path):
    """Export; a.csv edits the Email of 3 clients, b.csv the City of 3 others; a.csv imported."""
    export = export_csv(run_cli, tmp_path / "export")
    a, header, rows_a = copy_of(export, "a.csv")
    b, _, rows_b = copy_of(export, "b.csv")
    emails = {}
    for i, r in enumerate(rows_a[:3]):
        r["Email"] = f"sibling.a{i}@example.org"
        emails[int(r["ClientId"])] = r["Email"]
    cities = {}
    for i, r in enumerate(rows_b[3:6]):
        r["City"] = f"Siblington {i}"
        cities[int(r["ClientId"])] = r["City"]
    write_rows(a, header, rows_a)
    write_rows(b, header, rows_b)
    first = import_(run_cli, a)
    assert first.exit_code == 0, first.output
    sandbox.log.clear()
    return export, a, b, emails, cities


def test_two_files_from_one_export_do_not_undo_each_other(sandbox, run_cli, siblings):
    _, _, b, emails, cities = siblings

    result = import_(run_cli, b)

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 3
    clients = sandbox.store.clients
    assert {cid: clients[cid]["Email"] for cid in emails} == emails
    assert {cid: clients[cid]["City"] for cid in cities} == cities
    kept = [line for line in plan_lines(b) if line["note"].startswith("kept: changed by an earlier import")]
    assert sorted((int(line["ClientId"]), line["field"], line["old"]) for line in kept) == \
        sorted((cid, "Email", email) for cid, email in emails.items())
    assert "kept: 3 cell(s) the file holds as exported, changed in IntakeQ by an earlier import" in result.output


def test_an_unedited_copy_of_the_export_makes_zero_writes_and_zero_reads(sandbox, run_cli, siblings):
    export, _, _, emails, _ = siblings
    copy, _, _ = copy_of(export, "copy.csv")

    result = import_(run_cli, copy)

    assert result.exit_code == 0, result.output
    assert sandbox.log == []
    assert {cid: sandbox.store.clients[cid]["Email"] for cid in emails} == emails


def test_prefer_file_sets_cells_an_earlier_import_changed_back_to_the_export(sandbox, run_cli, siblings):
    export, _, _, emails, _ = siblings
    copy, _, rows = copy_of(export, "copy.csv")
    exported = {int(r["ClientId"]): r["Email"] for r in rows}

    result = import_(run_cli, copy, "--prefer", "file", "--blank", "clear")   # clear: an export's blank too

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 3
    assert {cid: sandbox.store.clients[cid]["Email"] or "" for cid in emails} == \
        {cid: exported[cid] for cid in emails}


def test_a_continuing_edit_writes_new_edits_and_lists_a_typed_back_value_as_kept(sandbox, run_cli, siblings):
    export, a, _, emails, _ = siblings
    header, rows = read_rows(a)
    _, exported = read_rows(export)
    (typed_back, further), other = rows[:2], rows[7]
    typed_back["Email"] = exported[0]["Email"]            # back to the export's value
    further["Email"] = "sibling.a1.again@example.org"      # edited again after its own import
    other["City"] = "Continuedville"
    write_rows(a, header, rows)

    result = import_(run_cli, a)

    assert result.exit_code == 0, result.output
    assert "conflict" not in result.output
    assert len(saves(sandbox)) == 2
    clients = sandbox.store.clients
    assert clients[int(further["ClientId"])]["Email"] == "sibling.a1.again@example.org"
    assert clients[int(other["ClientId"])]["City"] == "Continuedville"
    assert clients[int(typed_back["ClientId"])]["Email"] == emails[int(typed_back["ClientId"])]
    kept = [line for line in plan_lines(a) if line["note"].startswith("kept:")]
    assert [(int(k["ClientId"]), k["field"]) for k in kept] == [(int(typed_back["ClientId"]), "Email")]


def test_a_staff_edit_after_an_import_is_still_a_conflict(sandbox, run_cli, siblings):
    _, a, _, emails, _ = siblings
    cid = next(iter(emails))
    sandbox.store.staff_edit(cid, Email="staff.changed@example.org")
    header, rows = read_rows(a)
    rows[0]["Email"] = "sibling.a0.again@example.org"
    write_rows(a, header, rows)

    result = import_(run_cli, a)

    assert result.exit_code == 4, result.output
    assert writes(sandbox) == []
    assert sandbox.store.clients[cid]["Email"] == "staff.changed@example.org"


# --------------------------------------------------------------------------- 2. spreadsheet damage


def test_a_pandas_round_trip_makes_only_the_real_edits(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=60, seed=3)
    export = export_csv(run_cli, tmp_path / "export")
    frame = pd.read_csv(export)                    # PostalCode 02134 → 2134.0, policy numbers as floats
    frame.loc[0, "City"] = "Pandasville"
    frame.loc[1, "Email"] = "pandas.edit@example.org"
    frame.to_csv(export, index=False)
    _, rows = read_rows(export)
    assert any(r["PostalCode"].endswith(".0") for r in rows)     # the damage is really there
    before = {cid: dict(c) for cid, c in sandbox.store.clients.items()}

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 2
    assert "PostalCode: " in result.output and "cell(s) look reformatted by a spreadsheet (first: row" in result.output
    assert "02134" not in result.output          # no cell value where a log may keep it
    assert "kept as exported" in result.output
    for cid, client in sandbox.store.clients.items():
        assert client["PostalCode"] == before[cid]["PostalCode"]
        assert client["PrimaryInsurancePolicyNumber"] == before[cid]["PrimaryInsurancePolicyNumber"]


@pytest.mark.parametrize("damage", [
    lambda v: v.lstrip("0"),                  # Excel's "open CSV, save": leading zeros stripped
    lambda v: str(float(v)),                  # General cells: 2134.0
])
def test_reformatted_postal_codes_are_not_edits(sandbox, run_cli, tmp_path, damage):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    for r in rows:
        if r["PostalCode"]:
            r["PostalCode"] = damage(r["PostalCode"])
    write_rows(export, header, rows)

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []


def test_scientific_notation_that_lost_digits_is_an_error_before_any_request(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    row = next(i for i, r in enumerate(rows) if r["PrimaryInsurancePolicyNumber"])
    rows[row]["PrimaryInsurancePolicyNumber"] = f"{int(rows[row]['PrimaryInsurancePolicyNumber']):.4E}"
    write_rows(export, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert (f"row {row + 2}, column PrimaryInsurancePolicyNumber: the column was saved as a number by a "
            "spreadsheet and this cell lost digits of its exported value; nothing was sent") in result.output
    checked = run_cli("validate", export)
    assert checked.exit_code == 1
    assert (f"row {row + 2}, PrimaryInsurancePolicyNumber: the column was saved as a number by a spreadsheet "
            "and this cell lost digits of its exported value [spreadsheet_lost_digits]") in checked.output


def test_question_marks_from_a_windows_1252_save_are_not_edits(sandbox, run_cli, tmp_path):
    cid = min(sandbox.store.clients)
    sandbox.store.staff_edit(cid, FirstName="Łukasz", Tags=["café ☕"])
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    with open(export, "w", newline="", encoding="cp1252", errors="replace") as fh:   # "CSV (Comma delimited)"
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    sandbox.log.clear()

    result = import_(run_cli, export, "--encoding", "cp1252", "--tags", "replace")

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []
    assert "'?' in place of characters" in result.output
    assert sandbox.store.clients[cid]["FirstName"] == "Łukasz"
    assert sandbox.store.clients[cid]["Tags"] == ["café ☕"]


def test_without_a_base_the_damage_check_compares_with_live(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    for r in rows:
        r["PostalCode"] = str(float(r["PostalCode"])) if r["PostalCode"] else ""
    write_rows(export, header, rows)

    result = import_(run_cli, export, "--base", "none")

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []
    assert "PostalCode:" in result.output and "look reformatted by a spreadsheet" in result.output


# --------------------------------------------------------------------------- 5. validate = import's checks


def _new(header, **values):
    return {**{k: "" for k in header}, **values}


@pytest.mark.parametrize("case", ["two new rows IntakeQ would merge", "a new row matching another row"])
def test_validate_refuses_what_import_refuses_in_the_same_words(sandbox, run_cli, tmp_path, case):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    if case == "two new rows IntakeQ would merge":
        extra = [_new(header, FirstName="Twin", LastName="One", Email="twin@example.org"),
                 _new(header, FirstName="twin", LastName="Two", Email="TWIN@example.org")]
        first, second, what = len(rows) + 2, len(rows) + 3, "new client, same first name + email"
    else:
        client = next(r for r in rows if r["Email"])
        extra = [_new(header, FirstName=client["FirstName"], LastName="Again", Email=client["Email"])]
        first, second, what = rows.index(client) + 2, len(rows) + 2, f"ClientId {client['ClientId']}"
    write_rows(export, header, rows + extra)
    message = (f"rows {first} and {second} are the same client ({what}; a row without ClientId matches a "
               "client by first name + email or phone): keep one of them")
    sandbox.log.clear()

    checked = run_cli("validate", export)
    imported = import_(run_cli, export)

    assert checked.exit_code == 1 and imported.exit_code == 1
    assert message in checked.output
    assert message in imported.output
    assert sandbox.log == []


def test_validate_reports_spreadsheet_damage_and_number_forms_in_new_rows(run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    for r in rows:
        r["PostalCode"] = r["PostalCode"].lstrip("0")
    new = _new(header, FirstName="Nora", LastName="New", Email="nora@example.org", PostalCode="2134.0")
    write_rows(export, header, rows + [new])

    result = run_cli("validate", export)

    assert result.exit_code == 0, result.output
    assert "base: export" in result.output
    assert "PostalCode: the cell looks reformatted by a spreadsheet; the exported value is kept" in result.output
    assert (f"PostalCode: a text cell in a spreadsheet's number form (like 2134.0); it would be "
            f"sent as it is [number_form_in_new_row]: 1 row(s) (rows {len(rows) + 2})") in result.output


# --------------------------------------------------------------------------- issue 9.1: never a stale base


def test_a_file_whose_export_snapshot_is_gone_stops_before_any_request(sandbox, run_cli, tmp_path, state_dir):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["City"] = "Staleville"
    write_rows(export, header, rows)
    for snapshot in state_dir.glob("accounts/*/snapshots/*"):
        snapshot.unlink()
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert "in the state dir: it is gone" in result.output and "--base none" in result.output


def test_a_file_without_its_manifest_finds_its_export_by_content(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "old")
    header, rows = read_rows(export)
    staff = int(rows[1]["ClientId"])
    sandbox.store.staff_edit(staff, City="Staff City")
    export_csv(run_cli, tmp_path / "newer")                 # a newer export, after the staff edit
    rows[0]["Email"] = "moved.file@example.org"
    desktop = write_rows(tmp_path / "desktop.csv", header, rows)   # no manifest beside it
    sandbox.log.clear()

    result = import_(run_cli, desktop)

    assert result.exit_code == 0, result.output
    assert "no manifest beside the file: the snapshot it agrees with best" in result.output
    assert len(saves(sandbox)) == 1
    assert sandbox.store.clients[staff]["City"] == "Staff City"      # not set back from the old export


def test_a_file_from_an_export_without_its_client_id_column_is_an_error(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    renamed = ["Client ID" if h == "ClientId" else h for h in header]
    write_rows(export, renamed, [{("Client ID" if k == "ClientId" else k): v for k, v in r.items()} for r in rows])
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert "has no ClientId column" in result.output and "'Client ID' looks like it" in result.output


def test_a_name_that_followed_an_imported_first_name_is_ours_not_a_staff_edit(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    cid = int(rows[0]["ClientId"])
    rows[0]["FirstName"] = "Renamed"                      # Name follows it in IntakeQ
    write_rows(export, header, rows)
    assert import_(run_cli, export).exit_code == 0
    rows[0]["Name"] = "Renamed Person"                    # then the admin edits Name too
    write_rows(export, header, rows)

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert sandbox.store.clients[cid]["Name"] == "Renamed Person"


def test_prefer_file_never_sets_back_a_cell_staff_changed_after_the_earlier_import(sandbox, run_cli, siblings):
    export, _, _, emails, _ = siblings
    staff_cid, *others = list(emails)
    sandbox.store.staff_edit(staff_cid, Email="staff.after@example.org")
    copy, _, rows = copy_of(export, "copy.csv")

    result = import_(run_cli, copy, "--prefer", "file", "--blank", "clear")

    assert result.exit_code == 0, result.output
    assert sandbox.store.clients[staff_cid]["Email"] == "staff.after@example.org"
    assert len(saves(sandbox)) == len(others)


def test_a_checkpoint_path_naming_another_database_is_refused_and_left_alone(sandbox, run_cli, tmp_path):
    import sqlite3

    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["City"] = "Elsewhere"
    write_rows(export, header, rows)
    precious = tmp_path / "precious.sqlite"
    with sqlite3.connect(precious) as db:
        db.execute("CREATE TABLE t (x)")
    sandbox.log.clear()

    result = import_(run_cli, export, "--checkpoint", precious)

    assert result.exit_code == 1
    assert "is not a checkpoint of intakeq-etl" in result.output
    assert writes(sandbox) == []
    with sqlite3.connect(precious) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]


def test_a_create_killed_in_flight_in_a_file_without_client_id_is_found_not_repeated(sandbox, run_cli, tmp_path):
    from etl.importer import ImportOptions, plan_identity
    from etl.importer.checkpoint import Checkpoint

    path = tmp_path / "new.csv"
    path.write_text("FirstName,LastName\nNova,Nocontact\n", encoding="utf-8")
    with Checkpoint(tmp_path / "new.checkpoint.sqlite", plan_identity(path, ImportOptions())) as cp:
        cp.begin(2, "create", known_ids=set())           # killed (-9) while its POST was in flight
    sandbox.store.add_client(FirstName="Nova", LastName="Nocontact")    # the create had landed

    result = import_(run_cli, path, "--base", "none")

    assert result.exit_code == 0, result.output
    names = [(c["FirstName"], c["LastName"]) for c in sandbox.store.clients.values()]
    assert names.count(("Nova", "Nocontact")) == 1


def test_content_matching_never_takes_a_small_filtered_export(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "full")
    header, rows = read_rows(export)
    staff = int(rows[9]["ClientId"])
    sandbox.store.staff_edit(staff, City="Staffville")
    some = rows[0]["LastName"]
    assert run_cli("export", "--out", tmp_path / "filtered", "--search", some, "--quiet").exit_code == 0
    rows[1]["Email"] = "moved.again@example.org"
    desktop = write_rows(tmp_path / "desktop.csv", header, rows)
    sandbox.log.clear()

    result = import_(run_cli, desktop, "--dry-run")

    assert result.exit_code == 0, result.output
    assert f"base: export {_export_id(tmp_path / 'full')}" in result.output
    assert not [line for line in plan_lines(desktop) if line["ClientId"] == str(staff)]


def test_a_manifest_replaced_by_a_later_export_into_the_folder_is_not_taken(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    first_id = _export_id(tmp_path / "export")
    mine, header, rows = copy_of(export, "mine.csv")
    rows[0]["City"] = "Mineville"
    write_rows(mine, header, rows)
    staff = int(rows[3]["ClientId"])
    sandbox.store.staff_edit(staff, City="Staff City")
    export_csv(run_cli, tmp_path / "export")              # cron exports into the same folder again
    sandbox.log.clear()

    result = import_(run_cli, mine)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert "were exported before it (their LastUpdateDate is older)" in result.output
    assert f"--base {first_id}" in result.output
    again = import_(run_cli, mine, "--base", first_id)
    assert again.exit_code == 0, again.output
    assert sandbox.store.clients[staff]["City"] == "Staff City"


def test_an_unreadable_snapshot_is_skipped_by_the_content_match(sandbox, run_cli, tmp_path, state_dir):
    export = export_csv(run_cli, tmp_path / "old")
    export_csv(run_cli, tmp_path / "newer")
    newer = next(state_dir.glob(f"accounts/*/snapshots/{_export_id(tmp_path / 'newer')}.parquet"))
    newer.write_bytes(b"not parquet")
    header, rows = read_rows(export)
    rows[0]["City"] = "Readable"
    desktop = write_rows(tmp_path / "desktop.csv", header, rows)

    result = import_(run_cli, desktop)

    assert result.exit_code == 0, result.output
    assert f"base: export {_export_id(tmp_path / 'old')}" in result.output


def test_a_base_option_naming_no_export_folder_says_so(run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")

    result = import_(run_cli, export, "--base", str(tmp_path / "no-such-folder"))

    assert result.exit_code == 1
    assert "not an export folder (a folder with a manifest.json) nor an export id" in result.output


def test_validate_finds_the_base_by_content_as_import_does(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    row = next(i for i, r in enumerate(rows) if r["PrimaryInsurancePolicyNumber"])
    rows[row]["PrimaryInsurancePolicyNumber"] = f"{int(rows[row]['PrimaryInsurancePolicyNumber']):.2E}"
    desktop = write_rows(tmp_path / "desktop.csv", header, rows)

    checked = run_cli("validate", desktop)

    assert checked.exit_code == 1
    assert "no manifest beside the file: the snapshot it agrees with best" in checked.output
    assert "[spreadsheet_lost_digits]" in checked.output


def _export_id(folder: Path) -> str:
    import json

    return json.loads((folder / "manifest.json").read_text())["export_id"]


def test_a_new_row_whose_email_is_edited_after_its_import_is_not_created_twice(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    new = {**{k: "" for k in header}, "FirstName": "Zed", "LastName": "Quux", "Email": "zed1@example.org"}
    write_rows(export, header, rows + [new])
    assert import_(run_cli, export).exit_code == 0
    new["Email"] = "zed2@example.org"                   # the file's ClientId cell is still empty
    write_rows(export, header, rows + [new])

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    zeds = [c for c in sandbox.store.clients.values() if (c["FirstName"], c["LastName"]) == ("Zed", "Quux")]
    assert [c["Email"] for c in zeds] == ["zed2@example.org"]


def test_a_tag_staff_added_and_removed_around_an_import_is_still_added_by_a_sibling(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    a, header, rows_a = copy_of(export, "a.csv")
    b, _, rows_b = copy_of(export, "b.csv")
    cid = int(rows_a[0]["ClientId"])
    sandbox.store.staff_edit(cid, Tags=sandbox.store.clients[cid]["Tags"] + ["vip"])
    rows_a[0]["Tags"] = "; ".join(filter(None, [rows_a[0]["Tags"], "from-a"]))
    write_rows(a, header, rows_a)
    assert import_(run_cli, a).exit_code == 0               # our import's tag call: +from-a only
    sandbox.store.staff_edit(cid, Tags=[t for t in sandbox.store.clients[cid]["Tags"] if t != "vip"])
    rows_b[0]["Tags"] = "; ".join(filter(None, [rows_b[0]["Tags"], "vip"]))
    write_rows(b, header, rows_b)

    result = import_(run_cli, b)

    assert result.exit_code == 0, result.output
    assert "vip" in sandbox.store.clients[cid]["Tags"]


def test_without_a_base_a_tag_saved_in_windows_1252_is_not_a_new_tag(sandbox, run_cli, tmp_path):
    cid = min(sandbox.store.clients)
    sandbox.store.staff_edit(cid, Tags=["café ☕"])
    path = tmp_path / "foreign.csv"
    path.write_bytes(f"ClientId,Tags\n{cid},café ?\n".encode("cp1252"))

    result = import_(run_cli, path, "--base", "none", "--encoding", "cp1252")

    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []
    assert sandbox.store.clients[cid]["Tags"] == ["café ☕"]


def test_a_checkpoint_killed_in_the_middle_of_a_commit_is_still_ours(tmp_path):
    """kill -9 during a commit leaves a hot journal; the identity probe still knows the file."""
    import subprocess
    import sys

    from etl.importer.checkpoint import Checkpoint

    path = tmp_path / "c.checkpoint.sqlite"
    killed_mid_commit = f"""
import os, signal
from etl.importer.checkpoint import Checkpoint
cp = Checkpoint({str(path)!r}, "identity-1")
cp.finish(2, "updated")
cp.db.execute("PRAGMA cache_size=1")        # spill pages into the file before the commit
cp.db.execute("BEGIN IMMEDIATE")
for row in range(3, 3000):
    cp.db.execute("INSERT INTO rows (row, status, error, updated_at) VALUES (?, 'x', ?, 0)", (row, "e" * 200))
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", killed_mid_commit], check=False)
    assert Path(f"{path}-journal").exists()

    with Checkpoint(path, "identity-1") as cp:         # resumes: no "is not a checkpoint"
        assert set(cp.all()) == {2}


def test_a_stripped_postal_code_zero_is_said_once_as_damage(run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    for r in rows:
        r["PostalCode"] = r["PostalCode"].lstrip("0")
    write_rows(export, header, rows)

    checked = run_cli("validate", export)
    planned = import_(run_cli, export, "--dry-run")

    assert checked.exit_code == 0 and planned.exit_code == 0, planned.output
    for output in (checked.output, planned.output):
        assert "postal_code_lost_zero" not in output
        assert "reformatted by a spreadsheet" in output
