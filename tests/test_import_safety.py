"""Import safety: the export's timezone, guarded plan files, and never a create that
IntakeQ would merge into another client or repeat.

Each test is a real CLI run against the sandbox over loopback HTTP.
"""
from __future__ import annotations

import copy
import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from test_import import export_csv, import_, read_rows, write_rows, writes


def exported(run_cli, out: Path, *args) -> tuple[Path, list[str], list[dict]]:
    """Export (with extra export options) and read the CSV back: (path, header, rows)."""
    result = run_cli("export", "--out", out, "--quiet", *args)
    assert result.exit_code == 0, result.output
    path = out / "clients.csv"
    return (path, *read_rows(path))


def new_row(header, **values) -> dict:
    return {**{k: "" for k in header}, **values}


def test_control_an_unedited_export_imports_with_zero_writes(sandbox, run_cli, tmp_path):
    """A control (not xfail): the helpers work and an unedited export imports with zero writes."""
    path, _, _ = exported(run_cli, tmp_path / "export")
    sandbox.log.clear()
    result = import_(run_cli, path)
    assert result.exit_code == 0, result.output
    assert writes(sandbox) == []


def test_an_edited_date_of_birth_goes_back_as_midnight_in_the_exports_timezone(sandbox, run_cli, tmp_path):
    """Review finding (fixed by the lead): importer ignores the export's timezone (manifest
    'timezone'): --timezone defaults to UTC, so a DOB edited in a file exported with
    --timezone America/New_York is saved as UTC midnight, which IntakeQ shows as the day
    before in New York (and with a mismatched --timezone, unedited DOBs look like staff
    edits: false conflicts)"""
    path, header, rows = exported(run_cli, tmp_path / "export", "--timezone", "America/New_York")
    row = next(r for r in rows if r["DateOfBirth"])
    cid = int(row["ClientId"])
    row["DateOfBirth"] = "1990-03-05"
    write_rows(path, header, rows)

    result = import_(run_cli, path)          # no --timezone: the export's own must be used

    assert result.exit_code == 0, result.output
    ny_midnight = int(datetime(1990, 3, 5, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
    assert sandbox.store.clients[cid]["DateOfBirth"] == ny_midnight


def test_the_plan_file_guards_formula_like_values(sandbox, run_cli, tmp_path):
    """Review finding (fixed by the lead): reports.write_plan does not apply the formula guard:
    a client-entered '=HYPERLINK(...)' (file value or live value) is written raw into
    clients.plan.csv, which the admin opens in Excel; the validation report and rejects file
    are guarded, the plan is not"""
    path, header, rows = exported(run_cli, tmp_path / "export")
    rows[0]["AdditionalInformation"] = '=HYPERLINK("http://evil.example/","click")'
    write_rows(path, header, rows)

    result = run_cli("import", path, "--dry-run")

    assert result.exit_code == 0, result.output
    with open(path.parent / "clients.plan.csv", newline="", encoding="utf-8-sig") as fh:
        cells = [c for line in csv.reader(fh) for c in line]
    assert any("HYPERLINK" in c for c in cells)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]


def test_two_new_rows_for_the_same_person_are_an_error(sandbox, run_cli, tmp_path):
    """Review finding (fixed by the lead): two new rows for the same person (same first name +
    email) are both planned as creates: the second POST is matched by IntakeQ to the client
    the first one created and replaces it with its own (partial) body; both rows report
    'created' with one ClientId. The issue asks for an error naming both rows
    (same_client_rows only looks at ClientIds)"""
    path, header, rows = exported(run_cli, tmp_path / "export")
    rows.append(new_row(header, FirstName="Twin", LastName="Row", Email="twin@example.org", City="Aville"))
    rows.append(new_row(header, FirstName="Twin", LastName="Row", Email="twin@example.org", City="Btown"))
    write_rows(path, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, path)

    assert result.exit_code == 1, result.output
    assert writes(sandbox) == []
    n = len(rows) + 1
    assert f"rows {n - 1} and {n}" in result.output


def test_a_new_row_matching_a_client_outside_a_filtered_base_never_clears_that_client(sandbox, run_cli, tmp_path):
    """Review finding (fixed by the lead): DATA LOSS: new rows are matched only against the
    base snapshot and clients created since it. With a filtered export (--search, --created-
    since...) as the base, a new row whose first name + email belong to an existing client
    outside the filter is planned as a create; IntakeQ matches the POST to that client and
    replaces its whole profile with the partial create body (DOB, gender, phones, custom
    fields wiped). Results say 'created'"""
    victim = next(c for c in sandbox.store.clients.values()
                  if c.get("Email") and c.get("DateOfBirth") and "Smith" not in (c.get("Name") or ""))
    before = copy.deepcopy(victim)
    path, header, rows = exported(run_cli, tmp_path / "export", "--search", "Smith")
    assert str(victim["ClientId"]) not in {r["ClientId"] for r in rows}
    rows.append(new_row(header, FirstName=victim["FirstName"], LastName="Newperson", Email=victim["Email"]))
    write_rows(path, header, rows)

    result = import_(run_cli, path)

    assert result.exit_code in (0, 4), result.output
    after = sandbox.store.clients[victim["ClientId"]]
    for field in ("DateOfBirth", "Gender", "Phone", "HomePhone", "CustomFields", "StripeCustomerId"):
        assert after.get(field) == before.get(field), field


def test_reimport_without_checkpoint_does_not_duplicate_a_new_client_without_contact(sandbox, run_cli, tmp_path):
    """Review finding (fixed by the lead): re-importing an applied file without its checkpoint
    creates a new row that has no email or phone a second time (a duplicate client). The
    issue: 'zero writes, with or without its old checkpoint'. The CheckpointMismatch message
    documents it, but a changed file (the usual reason for --restart) makes it easy to hit;
    e.g. match such rows by first + last name against clients created since the base, or
    refuse them"""
    path, header, rows = exported(run_cli, tmp_path / "export")
    rows.append(new_row(header, FirstName="Solo", LastName="Nocontact"))
    write_rows(path, header, rows)
    first = import_(run_cli, path)
    assert first.exit_code == 0, first.output
    rows[0]["City"] = "Elsewhere"                  # the admin edits on, the file changed
    write_rows(path, header, rows)
    sandbox.log.clear()

    again = import_(run_cli, path, "--restart")

    assert again.exit_code == 0, again.output
    solos = [c for c in sandbox.store.clients.values() if c.get("LastName") == "Nocontact"]
    assert len(solos) == 1


def test_a_tag_the_import_added_and_staff_removed_is_not_put_back_by_a_reimport(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    cid = int(rows[0]["ClientId"])
    rows[0]["Tags"] = "; ".join(filter(None, [rows[0]["Tags"], "follow-up"]))
    write_rows(path, header, rows)
    assert import_(run_cli, path).exit_code == 0
    assert "follow-up" in sandbox.store.clients[cid]["Tags"]
    sandbox.store.staff_edit(cid, Tags=[t for t in sandbox.store.clients[cid]["Tags"] if t != "follow-up"])
    sandbox.log.clear()

    again = import_(run_cli, path, "--restart")

    assert again.exit_code == 0, again.output
    assert writes(sandbox) == []
    assert "follow-up" not in sandbox.store.clients[cid]["Tags"]


def test_blank_clear_never_clears_fields_of_a_client_a_new_row_was_matched_to(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    existing = next(r for r in rows if r["Email"] and r["FirstName"] and r["City"])
    cid = int(existing["ClientId"])
    others = [r for r in rows if r is not existing]
    others.append(new_row(header, FirstName=existing["FirstName"], LastName=existing["LastName"],
                          Email=existing["Email"], Gender="Other"))
    write_rows(path, header, others)

    result = import_(run_cli, path, "--blank", "clear")

    assert result.exit_code == 0, result.output
    after = sandbox.store.clients[cid]
    assert after["Gender"] == "Other"
    assert after["City"] == existing["City"]
