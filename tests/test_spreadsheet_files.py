"""Issue 9, sections 1 and 2 (XLSX and Parquet): the export id inside the file, the sheet
read, merged and uncalculated cells, date serials in custom fields, and custom fields
the account does not have.

Real CLI runs against the sandbox; the fixture files are built here with openpyxl, the
way a spreadsheet or a script changes an exported workbook.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import openpyxl
import pytest
from test_import import export_csv, import_, read_rows, saves, write_rows, writes

from etl.codec import read_table, write_table


def export_as(run_cli, out: Path, fmt: str) -> tuple[Path, str]:
    result = run_cli("export", "--out", out, "--format", fmt, "--quiet")
    assert result.exit_code == 0, result.output
    return out / f"clients.{fmt}", json.loads((out / "manifest.json").read_text())["export_id"]


def column_of(ws, name: str) -> int:
    return next(c.column for c in ws[1] if c.value == name)


def edit_xlsx(source: Path, target: Path, edit) -> Path:
    """Open the workbook with openpyxl, change it with ``edit(ws)``, save it as ``target``."""
    wb = openpyxl.load_workbook(source)
    edit(wb["clients"])
    wb.save(target)
    return target


def set_cell(column: str, row: int, value):
    def edit(ws):
        ws.cell(row=row, column=column_of(ws, column)).value = value
    return edit


def client_id_at(ws, row: int) -> int:
    return int(ws.cell(row=row, column=column_of(ws, "ClientId")).value)


# --------------------------------------------------------------------------- 1. the id inside the file


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_the_export_id_is_inside_xlsx_and_parquet_files_and_survives_a_round_trip(sandbox, run_cli, tmp_path, fmt):
    from etl.codec.export_id import read_export_id

    path, export_id = export_as(run_cli, tmp_path / "export", fmt)

    assert read_export_id(path) == export_id
    table = read_table(path)
    assert table.export_id == export_id
    write_table(table.frame, tmp_path / f"again.{fmt}")          # our own read → write
    assert read_export_id(tmp_path / f"again.{fmt}") == export_id


def test_a_workbook_moved_away_from_its_manifest_takes_the_export_named_inside_it(sandbox, run_cli, tmp_path):
    old, old_id = export_as(run_cli, tmp_path / "old", "xlsx")
    wb = openpyxl.load_workbook(old)
    staff = client_id_at(wb["clients"], 3)
    edited = client_id_at(wb["clients"], 2)
    sandbox.store.staff_edit(staff, City="Staff City")
    export_as(run_cli, tmp_path / "newer", "xlsx")               # a newer export, after the staff edit
    desktop = edit_xlsx(old, tmp_path / "desktop.xlsx", set_cell("Email", 2, "moved.book@example.org"))
    sandbox.log.clear()

    result = import_(run_cli, desktop)

    assert result.exit_code == 0, result.output
    assert f"base: export {old_id} (from the id inside the file)" in result.output
    assert "sheet: clients" in result.output
    assert len(saves(sandbox)) == 1
    assert sandbox.store.clients[edited]["Email"] == "moved.book@example.org"
    assert sandbox.store.clients[staff]["City"] == "Staff City"


def test_a_copy_kept_in_an_export_folder_trusts_its_own_id_over_a_later_manifest(sandbox, run_cli, tmp_path):
    old, old_id = export_as(run_cli, tmp_path / "exports", "parquet")
    copy = tmp_path / "exports" / "my-copy.parquet"
    shutil.copy(old, copy)
    sandbox.store.staff_edit(int(read_table(copy).frame["ClientId"].iloc[1]), City="Staff City")
    _, new_id = export_as(run_cli, tmp_path / "exports", "parquet")      # the manifest beside it moves on

    result = run_cli("validate", copy)

    assert result.exit_code == 0, result.output
    assert f"base: export {old_id} (from the id inside the file; the manifest beside it names export {new_id}" \
        in result.output


def test_a_parquet_file_whose_inside_export_snapshot_is_gone_stops_before_any_request(
        sandbox, run_cli, tmp_path, state_dir):
    path, export_id = export_as(run_cli, tmp_path / "export", "parquet")
    moved = tmp_path / "moved.parquet"
    shutil.copy(path, moved)
    for snapshot in state_dir.glob("accounts/*/snapshots/*"):
        snapshot.unlink()
    sandbox.log.clear()

    result = import_(run_cli, moved)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert (f"no snapshot of export {export_id} (named by the id inside the file) in the state dir: "
            "it is gone") in result.output
    assert "--base none" in result.output


# --------------------------------------------------------------------------- 2. which sheet


def with_sheet(source: Path, target: Path, title: str, rows: list[list]) -> Path:
    wb = openpyxl.load_workbook(source)
    ws = wb.create_sheet(title, 0)           # first, where a reader taking sheet 1 would look
    for row in rows:
        ws.append(row)
    wb.save(target)
    return target


def test_the_sheet_with_client_id_is_read_and_named(sandbox, run_cli, tmp_path):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")
    book = with_sheet(path, tmp_path / "export" / "notes.xlsx", "Notes", [["To do"], ["call back"]])

    result = run_cli("validate", book)

    assert result.exit_code == 0, result.output
    assert "sheet: clients" in result.output.splitlines()


def test_two_sheets_with_client_id_stop_and_name_them_until_sheet_says_which(sandbox, run_cli, tmp_path):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")
    book = with_sheet(path, tmp_path / "export" / "two.xlsx", "Old clients",
                      [["ClientId", "Email"], [1, "old.copy@example.org"]])
    sandbox.log.clear()

    refused = import_(run_cli, book)
    validated = run_cli("validate", book)
    chosen = import_(run_cli, book, "--sheet", "clients", "--dry-run")

    assert refused.exit_code == 1 and validated.exit_code == 1
    for result in (refused, validated):
        assert "the sheets 'Old clients', 'clients' all have a ClientId column" in result.output
        assert "--sheet NAME" in result.output
    assert sandbox.log == [] or all(e.method == "GET" for e in sandbox.log)
    assert chosen.exit_code == 0, chosen.output
    assert "sheet: clients" in chosen.output


def test_a_foreign_workbook_with_several_sheets_of_data_asks_for_the_sheet(sandbox, run_cli, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "March"
    wb.active.append(["FirstName", "LastName", "Email"])
    wb.active.append(["Ana", "Nueva", "ana.nueva@example.org"])
    april = wb.create_sheet("April")
    april.append(["FirstName", "LastName", "Email"])
    wb.create_sheet("Empty")
    book = tmp_path / "people.xlsx"
    wb.save(book)

    refused = run_cli("validate", book, "--base", "none")
    chosen = run_cli("validate", book, "--base", "none", "--sheet", "March")

    assert refused.exit_code == 1
    assert "'March', 'April' all have data" in refused.output
    assert chosen.exit_code == 0, chosen.output
    assert "sheet: March" in chosen.output


def test_sheet_is_refused_for_a_csv(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")

    result = run_cli("validate", path, "--sheet", "clients")

    assert result.exit_code == 1
    assert "--sheet clients applies to XLSX workbooks only" in result.output


# --------------------------------------------------------------------------- 3. unknown cells


def merge_and_formula(ws):
    """City of rows 2-3 merged (row 3's value is hidden), Email of row 4 a formula that was
    never calculated (openpyxl saves no value for it), Tags of row 5 merged with row 6."""
    city = column_of(ws, "City")
    ws.merge_cells(start_row=2, start_column=city, end_row=3, end_column=city)
    ws.cell(row=4, column=column_of(ws, "Email")).value = '=LOWER("X@EXAMPLE.ORG")'
    tags = column_of(ws, "Tags")
    ws.merge_cells(start_row=5, start_column=tags, end_row=6, end_column=tags)


@pytest.mark.parametrize("base", [None, "none"])
def test_merged_and_uncalculated_cells_change_nothing_even_with_blank_clear(sandbox, run_cli, tmp_path, base):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")
    wb = openpyxl.load_workbook(path)
    ws = wb["clients"]
    ids = {row: client_id_at(ws, row) for row in (3, 4, 6, 7)}
    sandbox.store.staff_edit(ids[3], City="Mergedtown")          # a value the hidden cell must not clear
    sandbox.store.staff_edit(ids[4], Email="kept.email@example.org")
    sandbox.store.staff_edit(ids[6], Tags=["kept tag"])
    before = {cid: dict(sandbox.store.clients[cid]) for cid in ids.values()}
    merge_and_formula(ws)
    ws.cell(row=7, column=column_of(ws, "City")).value = "Realedit"
    book = tmp_path / "export" / "merged.xlsx"
    wb.save(book)
    sandbox.log.clear()

    result = import_(run_cli, book, "--blank", "clear", "--tags", "replace",
                     *(["--base", base] if base else []))

    assert result.exit_code == 0, result.output
    clients = sandbox.store.clients
    assert clients[ids[3]]["City"] == "Mergedtown"
    assert clients[ids[4]]["Email"] == "kept.email@example.org"
    assert clients[ids[6]]["Tags"] == before[ids[6]]["Tags"] == ["kept tag"]
    assert clients[ids[7]]["City"] == "Realedit"
    assert "City: a merged cell: left as it is in IntakeQ [xlsx_merged_cell]: 1 row(s) (rows 3)" in result.output
    assert ("Email: a formula with no saved value: left as it is in IntakeQ [xlsx_formula_without_value]: "
            "1 row(s) (rows 4)") in result.output
    assert "Tags: a merged cell" in result.output
    assert "Mergedtown" not in result.output and "kept.email" not in result.output


def test_a_merged_client_id_cell_is_an_error_not_a_new_client(sandbox, run_cli, tmp_path):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")

    def merge_ids(ws):
        col = column_of(ws, "ClientId")
        ws.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)

    book = edit_xlsx(path, tmp_path / "export" / "ids.xlsx", merge_ids)
    sandbox.log.clear()

    result = import_(run_cli, book)

    assert result.exit_code == 1
    assert writes(sandbox) == []
    assert "row 3, column ClientId: the ClientId cell is a merged cell" in result.output


# --------------------------------------------------------------------------- 4. date serials


def new_row_book(tmp_path: Path, path: Path, visit) -> Path:
    """The export with one new client whose custom.FirstVisitDate is a number cell."""
    def add(ws):
        row = ws.max_row + 1
        for name, value in (("FirstName", "Serena"), ("LastName", "Serial"),
                            ("Email", "serena.serial@example.org"), ("custom.FirstVisitDate", visit)):
            ws.cell(row=row, column=column_of(ws, name)).value = value
    return edit_xlsx(path, tmp_path / "export" / "new.xlsx", add)


def test_a_date_serial_in_a_new_rows_date_custom_field_is_sent_as_the_date(sandbox, run_cli, tmp_path):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")
    book = new_row_book(tmp_path, path, 46204)

    result = import_(run_cli, book)

    assert result.exit_code == 0, result.output
    created = next(c for c in sandbox.store.clients.values() if c["Email"] == "serena.serial@example.org")
    visit = next(f["Value"] for f in created["CustomFields"] if f["FieldId"] == "FirstVisitDate")
    assert visit == "2026-07-01"
    assert "custom.FirstVisitDate: a spreadsheet date number in a column of dates" in result.output


def test_a_number_that_is_no_date_in_a_date_custom_field_is_an_error(sandbox, run_cli, tmp_path):
    path, _ = export_as(run_cli, tmp_path / "export", "xlsx")
    book = new_row_book(tmp_path, path, 46204.5)
    sandbox.log.clear()

    result = import_(run_cli, book)
    validated = run_cli("validate", book)

    assert result.exit_code == 1 and validated.exit_code == 1
    assert writes(sandbox) == []
    assert "custom.FirstVisitDate: a number in a column of dates that is no spreadsheet date" in result.output
    assert "date_number_not_a_date" in validated.output


# --------------------------------------------------------------------------- 5. unknown custom fields


def with_custom_column(path: Path, target: Path, name: str) -> Path:
    header, rows = read_rows(path)
    rows[0][name] = "lost value"
    return write_rows(target, header + [name], rows)


def test_a_custom_column_the_account_lacks_is_an_error_before_any_request(sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    edited = with_custom_column(path, path, "custom.Foo")
    sandbox.log.clear()

    result = import_(run_cli, edited)
    validated = run_cli("validate", edited)

    assert result.exit_code == 1
    assert sandbox.log == []
    assert "custom.Foo: the account has no custom field with this id (its fields: " in result.output
    assert "custom.FirstVisitDate (First Visit Date)" in result.output
    assert validated.exit_code == 1 and "custom_field_unknown" in validated.output


def test_without_a_base_the_live_clients_tell_the_accounts_custom_fields_before_any_write(
        sandbox, run_cli, tmp_path):
    path = export_csv(run_cli, tmp_path / "export")
    edited = with_custom_column(path, tmp_path / "elsewhere.csv", "custom.Foo")
    sandbox.log.clear()

    result = import_(run_cli, edited, "--base", "none")

    assert result.exit_code == 1
    assert writes(sandbox) == []
    assert "custom.Foo: the account has no custom field with this id" in result.output
