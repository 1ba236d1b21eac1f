"""Issue 15: migrations from another system's export — ``--map``, ``map``, and no column
ever dropped silently.

The foreign file is ``sample_data/foreign_clients.csv`` (synthetic people): headers
``First Name``, ``E-mail``, ``Mobile``, ``DOB`` (``31/12/1980``), ``Sex`` (``M``/``F``),
``Referral`` (the custom field labelled "Referral Source") and ``Internal Notes``; 20 new
clients and 5 that the sandbox's 20-client account already has (same first name + email).
"""
from __future__ import annotations

import json
import shutil
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from test_import import export_csv, import_, read_rows, write_rows, writes

from etl.codec import read_table
from etl.codec.model import Table
from etl.errors import MappingError
from etl.importer import mapping as M
from etl.importer.proposal import guess_date_format, place_header

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
FOREIGN, MAPPING = "foreign_clients.csv", "foreign_clients.map.toml"
EXISTING = {1, 3, 4, 9, 10}          # the sandbox clients the file's 5 known people are
ISSUE_COLUMNS = {"First Name": "FirstName", "Last Name": "LastName", "E-mail": "Email", "Mobile": "MobilePhone",
                 "DOB": "DateOfBirth", "Sex": "Gender", "Referral": "Referral Source"}


@pytest.fixture
def foreign(tmp_path) -> Path:
    for name in (FOREIGN, MAPPING):
        shutil.copy(SAMPLES / name, tmp_path / name)
    return tmp_path / FOREIGN


def day_of(ms) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")


def custom(record: dict, field_id: str):
    return next((cf.get("Value") for cf in record.get("CustomFields") or [] if cf.get("FieldId") == field_id), None)


# --------------------------------------------------------------------------- §1: never dropped silently


def test_a_foreign_file_without_a_mapping_is_refused_naming_its_columns_with_no_request(sandbox, run_cli, foreign):
    sandbox.log.clear()
    result = import_(run_cli, foreign)
    assert result.exit_code == 1
    assert sandbox.log == []
    assert ("8 columns are not IntakeQ fields: First Name (did you mean FirstName?), Last Name (did you mean "
            "LastName?), E-mail (did you mean Email?), Mobile, DOB, Sex, Referral, Internal Notes. Map them with "
            "--map, or leave them out with --ignore-column NAME") in result.output
    assert "Traceback" not in result.output and not (foreign.parent / "foreign_clients.checkpoint.sqlite").exists()
    checked = run_cli("validate", foreign)
    assert checked.exit_code == 1 and "8 columns are not IntakeQ fields: First Name" in checked.output


def test_the_unknown_columns_message_is_the_issues():
    found = M.unknown_columns_problem(["FirstName", "Phone Number", "DOB", "Insurance", "custom.x", "Guid"], None,
                                      fatal=True)
    assert found.is_error and found.message == (
        "3 columns are not IntakeQ fields: Phone Number (did you mean Phone?), DOB, Insurance. Map them with "
        "--map, or leave them out with --ignore-column NAME")
    assert M.unknown_columns_problem(["FirstName", "Guid", "State", "custom.x"], None, fatal=True) is None
    # A field the API returned that nobody registered yet is its export's own column.
    assert M.unknown_columns(["NewApiField", "Notes"], exported=["ClientId", "NewApiField"]) == ["Notes"]


def test_a_helper_column_in_an_edited_export_is_one_loud_warning_and_a_plan_line(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["Email"] = "changed@example.com"
    for r in rows:
        r["Call back?"], r["Notes"] = "yes", "left a message"
    write_rows(export, [*header, "Call back?", "Notes"], rows)
    result = import_(run_cli, export, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning: 2 columns are not IntakeQ fields and never sent: Call back?, Notes" in result.output
    _, plan = read_rows(export.parent / "clients.plan.csv")
    assert {(p["field"], p["action"]) for p in plan if p["note"] == "not an IntakeQ field: never sent"} == {
        ("Call back?", "ignored"), ("Notes", "ignored")}
    assert run_cli("validate", export).exit_code == 0
    quiet = import_(run_cli, export, "--dry-run", "--ignore-column", "Notes", "--ignore-column", "Call back?")
    assert quiet.exit_code == 0 and "not IntakeQ fields" not in quiet.output
    # With a new row the same columns are an error: nothing would say the new client lacks them.
    write_rows(export, [*header, "Call back?", "Notes"],
               [*rows, {"FirstName": "Amara", "LastName": "Okafor", "Email": "amara@example.net", "Notes": "x"}])
    sandbox.log.clear()
    refused = import_(run_cli, export, "--dry-run")
    assert refused.exit_code == 1 and sandbox.log == []
    assert "2 columns are not IntakeQ fields: Call back?, Notes. Map them with --map" in refused.output


def test_a_header_that_is_a_custom_fields_label_is_that_field(sandbox, run_cli, tmp_path):
    export_csv(run_cli, tmp_path / "export")            # the snapshot knows the labels
    path = write_rows(tmp_path / "new.csv", ["FirstName", "LastName", "Email", "Referral Source"],
                      [{"FirstName": "Amara", "LastName": "Okafor", "Email": "amara@example.net",
                        "Referral Source": "Radio"}])
    result = import_(run_cli, path)
    assert result.exit_code == 0, result.output
    created = [c for c in sandbox.store.clients.values() if c.get("Email") == "amara@example.net"]
    assert len(created) == 1 and custom(created[0], "ReferralSource") == "Radio"


# --------------------------------------------------------------------------- §2: --map


def test_a_foreign_file_imports_through_its_mapping_and_a_rerun_creates_no_duplicate(sandbox, run_cli, foreign):
    export_csv(run_cli, foreign.parent / "export")         # custom-field labels: from the snapshot
    before = {cid: dict(c) for cid, c in sandbox.store.clients.items()}
    checked = run_cli("validate", foreign, "--map", foreign.parent / MAPPING)
    assert checked.exit_code == 0, checked.output

    result = import_(run_cli, foreign, "--map", foreign.parent / MAPPING)
    assert result.exit_code == 0, result.output
    _, results = read_rows(foreign.parent / "foreign_clients.results.csv")
    statuses = [r["status"] for r in results]
    assert statuses.count("created") == 20 and len(results) == 25
    matched = {int(r["ClientId"]) for r in results if r["status"] != "created"}
    assert matched == EXISTING
    assert len(sandbox.store.clients) == len(before) + 20
    by_email = {c.get("Email"): c for c in sandbox.store.clients.values()}
    amara, bastian, chiara = (by_email[f"{n}@example.net"] for n in
                              ("amara.okafor", "bastian.lindqvist", "chiara.romano"))
    assert (amara["FirstName"], amara["LastName"], amara["MobilePhone"]) == ("Amara", "Okafor", "206-555-0110")
    assert day_of(amara["DateOfBirth"]) == "1980-12-31" and day_of(chiara["DateOfBirth"]) == "1980-04-03"
    assert (amara["Gender"], bastian["Gender"]) == ("Male", "Female")
    assert custom(amara, "ReferralSource") == "Google" and custom(bastian, "ReferralSource") == "Friend, family"
    assert "migrated-2026" in amara["Tags"] and "migrated-2026" in sandbox.store.clients[1]["Tags"]
    assert day_of(sandbox.store.clients[1]["DateOfBirth"]) == "1977-06-05"
    assert custom(sandbox.store.clients[3], "ReferralSource") == "Returning client"
    assert not any("cabinet" in str(c) for c in sandbox.store.clients.values())      # [ignore]d
    # The plan and the results name the source column beside the IntakeQ field.
    header, plan = read_rows(foreign.parent / "foreign_clients.plan.csv")
    assert header[-1] == "source_column"
    assert {"field": "DateOfBirth", "source_column": "DOB", "new": "1980-12-31"}.items() <= plan[4].items()
    assert any(p["field"] == "Tags" and p["source_column"] == "[constants]" for p in plan)
    assert "DOB" in results[0]["source_columns"]
    # ... and so do the review files' column headings
    from openpyxl import load_workbook

    changes = load_workbook(foreign.parent / "foreign_clients.plan.xlsx")["Changes"]
    headings = [c.value for c in changes[1]]
    assert "DateOfBirth \u2190 DOB" in headings and "Gender \u2190 Sex" in headings
    assert "DateOfBirth \u2190 DOB" in (foreign.parent / "foreign_clients.plan.html").read_text(encoding="utf-8")

    # A re-run after the migration (its checkpoint lost): IntakeQ's rule matches every row.
    (foreign.parent / "foreign_clients.checkpoint.sqlite").unlink()
    sandbox.log.clear()
    again = import_(run_cli, foreign, "--map", foreign.parent / MAPPING, "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout.splitlines()[-1])
    assert summary["mapping"] == str(foreign.parent / MAPPING) and "create" not in summary["plan"]
    assert writes(sandbox) == [] and len(sandbox.store.clients) == len(before) + 20


def test_every_problem_of_a_mapping_is_said_at_once_before_any_request(sandbox, run_cli, foreign):
    export_csv(run_cli, foreign.parent / "export")
    header, rows = read_rows(foreign)
    rows[3]["Sex"], rows[8]["Sex"] = "U", "x"
    write_rows(foreign, header, rows)
    bad = foreign.parent / "bad.toml"
    bad.write_text((SAMPLES / MAPPING).read_text(encoding="utf-8")
                   .replace('"Referral"   = "Referral Source"', '"Referral"   = "Referal Source"')
                   .replace('"Mobile"     = "MobilePhone"', '"Mobile"     = "MobilPhone"')
                   .replace('columns = ["Internal Notes"]', 'columns = ["Internal Notes", "Fax"]'),
                   encoding="utf-8")
    sandbox.log.clear()
    result = import_(run_cli, foreign, "--map", bad)
    assert result.exit_code == 1 and sandbox.log == []
    out = result.output
    assert "bad.toml: 4 problem(s) in the mapping; nothing was sent" in out
    assert "'Mobile' = 'MobilPhone': neither an IntakeQ field nor a custom field's label (did you mean " \
           "MobilePhone?)" in out
    assert "'Referral' = 'Referal Source': neither an IntakeQ field nor a custom field's label (did you mean " \
           "Referral Source?)" in out
    assert "[ignore] 'Fax': no such column in the file" in out
    assert "Sex → Gender: 2 cell(s) hold a value no [values] table covers (rows 5, 10" in out
    _, report = read_rows(foreign.parent / "foreign_clients.report.csv")
    assert [(r["row"], r["value"], r["check"]) for r in report] == [("5", "U", "mapping_value_not_covered"),
                                                                     ("10", "x", "mapping_value_not_covered")]
    checked = run_cli("validate", foreign, "--map", bad)
    assert checked.exit_code == 1 and "4 problem(s) in the mapping" in checked.output


def test_a_mapping_that_is_not_toml_is_one_line(run_cli, tmp_path):
    path = write_rows(tmp_path / "f.csv", ["First Name"], [{"First Name": "Amara"}])
    bad = tmp_path / "m.toml"
    bad.write_text("[columns]\nFirst Name = FirstName\n", encoding="utf-8")
    result = run_cli("validate", path, "--map", bad)
    assert result.exit_code == 1 and "not valid TOML" in result.output and "Traceback" not in result.output
    bad.write_text("[colums]\n[dates]\nx = \"%Q\"\n", encoding="utf-8")
    result = run_cli("validate", path, "--map", bad)
    assert "[colums]: not a section of a mapping (did you mean [columns]?)" in result.output
    assert "[dates] 'x' = '%Q': not a strftime format" in result.output


def test_rejects_keep_the_source_row_as_it_was(sandbox, run_cli, foreign):
    export_csv(run_cli, foreign.parent / "export")
    header, rows = read_rows(foreign)
    rows[1]["DOB"] = "31/02/1975"
    write_rows(foreign, header, rows)
    result = import_(run_cli, foreign, "--map", foreign.parent / MAPPING, "--skip-invalid", "--dry-run")
    assert result.exit_code == 0, result.output
    rheader, rejects = read_rows(foreign.parent / "foreign_clients.rejects.csv")
    assert rheader == ["row", "problems", *header]
    assert rejects[0]["row"] == "3" and rejects[0]["DOB"] == "31/02/1975" and rejects[0]["Sex"] == "F"
    assert "DOB → DateOfBirth" in rejects[0]["problems"]


def test_apply_mapping_is_pure_and_dtype_agnostic():
    frame = pd.DataFrame({"Sex": pd.array(["m", None, "F "], dtype="string"),
                          "Born": pd.Series(["1/2/1990", "", "13/12/2001"], dtype=object),
                          "Why": pd.array(["Radio", "TV", None], dtype="string")})
    table = Table(frame=frame, columns_in_file=list(frame.columns))
    mapping = M.Mapping(columns={"Sex": "Gender", "Born": "DateOfBirth", "Why": "How they heard"},
                        dates={"Born": "%d/%m/%Y"}, values={"Gender": {"M": "Male", "F": "Female"}},
                        constants={"Archived": "false"})
    mapped = M.apply_mapping(table, mapping, labels={"hq": "How they heard"})
    out = mapped.table.frame
    assert list(out.columns) == ["Gender", "DateOfBirth", "custom.hq", "Archived"]
    assert out["Gender"].tolist()[0] == "Male" and pd.isna(out["Gender"].iloc[1]) and out["Gender"].iloc[2] == "Female"
    assert out["DateOfBirth"].tolist()[0] == "1990-02-01" and out["DateOfBirth"].iloc[2] == "2001-12-13"
    assert str(out["Archived"].dtype) == "boolean" and not out["Archived"].any()
    assert mapped.sources == {"Gender": "Sex", "DateOfBirth": "Born", "custom.hq": "Why", "Archived": "[constants]"}
    assert frame["Sex"].tolist()[0] == "m"              # the source is untouched
    with pytest.raises(MappingError) as caught:
        M.apply_mapping(table, mapping, labels=None)
    assert "custom-field labels are unknown" in caught.value.message


# --------------------------------------------------------------------------- §3: map


def test_map_proposes_the_issues_mapping_for_the_foreign_file_without_a_request(sandbox, run_cli, foreign):
    export_csv(run_cli, foreign.parent / "export")
    sandbox.log.clear()
    out = foreign.parent / "proposed.toml"
    result = run_cli("map", foreign, "--out", out)
    assert result.exit_code == 0, result.output
    assert sandbox.log == []                          # the labels came from the snapshot
    text = out.read_text(encoding="utf-8")
    proposed = tomllib.loads(text)
    assert proposed["columns"] == ISSUE_COLUMNS
    assert proposed["dates"] == {"DOB": "%d/%m/%Y"}
    assert proposed["values"] == {"Gender": {"M": "Male", "F": "Female"}}
    assert proposed["ignore"] == {"columns": ["Internal Notes"]}
    assert "read as day first (03/04/2001 = 3 April 2001)" in text   # a made-up example:
    assert "03/04/1980" not in text          # no cell of the file is quoted (mappings get shared)
    assert "TODO" in next(line for line in text.splitlines() if "Internal Notes" in line)
    assert all("#" in line for line in text.splitlines() if " = " in line and not line.startswith(("#", "columns = [")))
    assert (out.stat().st_mode & 0o777) == 0o600
    again = run_cli("map", foreign, "--out", out)
    assert again.exit_code == 1 and "never overwritten" in again.output
    # The proposal, unedited, is a mapping the import takes.
    assert run_cli("validate", foreign, "--map", out).exit_code == 0


def test_map_without_a_snapshot_reads_one_page_for_the_labels(sandbox, run_cli, foreign):
    sandbox.log.clear()
    result = run_cli("map", foreign, "--out", "-")
    assert result.exit_code == 0, result.output
    assert len(sandbox.log) == 1 and sandbox.log[0].method == "GET"
    assert '"Referral"   = "Referral Source"' in result.output


def test_headers_and_dates_are_placed_with_a_reason():
    assert place_header("Zip", None)[0] == "PostalCode"
    assert place_header("Emial", None) == ("Email", "spelt like Email: check")
    assert place_header("Favourite colour", None)[0] is None
    assert guess_date_format(["03/04/1980", "05/06/1977"])[1].startswith("TODO AMBIGUOUS")
    assert guess_date_format(["12/31/1980", "03/04/1980"])[0] == "%m/%d/%Y"
    assert guess_date_format(["1980-12-31"]) == (None, "yyyy-MM-dd already")


def test_the_sample_mapping_reads_the_sample_file():
    mapping = M.load_mapping(SAMPLES / MAPPING)
    table = read_table(SAMPLES / FOREIGN, kinds=M.text_kinds(mapping))
    labels = {"ReferralSource": "Referral Source"}
    mapped = M.apply_mapping(table, mapping, labels=labels)
    assert mapped.table.errors == [] and len(mapped.table.frame) == 25
    assert "Internal Notes" not in mapped.table.frame.columns


def test_no_side_file_may_overwrite_the_mapping(sandbox, run_cli, foreign):
    mapping = foreign.parent / MAPPING
    before = mapping.read_bytes()
    sandbox.log.clear()
    result = import_(run_cli, foreign, "--map", mapping, "--plan", mapping, "--dry-run")
    assert result.exit_code == 1 and "is the mapping file itself" in result.output
    assert mapping.read_bytes() == before and sandbox.log == []


def test_a_custom_field_given_a_date_format_gets_iso_dates_and_others_stay_text():
    frame = pd.DataFrame({"Visit": pd.array(["31/05/2024", None], dtype="string"),
                          "Note": pd.array(["31/05/2024", "x"], dtype="string")})
    table = Table(frame=frame, columns_in_file=list(frame.columns))
    labels = {"FirstVisitDate": "First Visit Date", "n": "Note"}
    mapping = M.Mapping(columns={"Visit": "First Visit Date"}, dates={"Visit": "%d/%m/%Y"})
    out = M.apply_mapping(table, mapping, labels=labels, date_format="%m/%d/%Y").table.frame
    assert out["custom.FirstVisitDate"].tolist()[0] == "2024-05-31" and pd.isna(out["custom.FirstVisitDate"].iloc[1])
    assert out["custom.n"].tolist() == ["31/05/2024", "x"]           # a label header: that field, as text


def test_another_systems_id_is_never_mapped_to_clientid(sandbox, run_cli, tmp_path):
    """Review finding: `map` proposed "Client ID" = "ClientId", and the import then planned
    to overwrite IntakeQ's clients 3 and 7 with the other system's people."""
    source = tmp_path / "other.csv"
    source.write_text("Client ID,First Name,Last Name,E-mail,State\n3,Zed,Zulu,zed.zulu@example.org,CA\n",
                      encoding="utf-8")
    proposed = tmp_path / "other.map.toml"
    assert run_cli("map", source, "--out", proposed).exit_code == 0
    mapping = tomllib.loads(proposed.read_text(encoding="utf-8"))
    assert "Client ID" not in mapping["columns"] and "Client ID" in mapping["ignore"]["columns"]
    assert mapping["columns"]["State"] == "StateShort"
    bad = tmp_path / "bad.toml"
    bad.write_text('[columns]\n"Client ID" = "ClientId"\n"State" = "State"\n', encoding="utf-8")
    sandbox.log.clear()
    result = run_cli("import", source, "--map", bad, "--base", "none", "--dry-run")
    assert result.exit_code == 1
    assert "ClientId is IntakeQ's own id" in result.output and "State is read-only" in result.output
    assert sandbox.log == []


def test_a_read_only_column_holding_a_new_clients_value_is_an_error(sandbox, run_cli, tmp_path):
    source = tmp_path / "new.csv"
    source.write_text("FirstName,LastName,Email,State,DateCreated\nZed,Zulu,z@example.org,CA,2020-01-01\n",
                      encoding="utf-8")
    sandbox.log.clear()
    result = run_cli("import", source, "--dry-run")
    assert result.exit_code == 1
    assert ("2 columns are read-only in IntakeQ and never sent for a new client: State (did you mean "
            "StateShort?), DateCreated") in result.output
    assert sandbox.log == []
    assert run_cli("validate", source).exit_code == 1
    left_out = run_cli("import", source, "--dry-run", "--ignore-column", "State", "--ignore-column", "DateCreated")
    assert left_out.exit_code == 0, left_out.output
