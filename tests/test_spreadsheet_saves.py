"""What spreadsheets really save (issue 9, section 2): error values, European `;` files with
day-first dates, scientific notation, classic Mac line ends, unclosed quotes, spaces around
an edit, and backslashes in tags.

Each file is built by applying the spreadsheet's transformation to a real export, then run
through the real CLI against the sandbox over loopback HTTP.
"""
from __future__ import annotations

import csv
from datetime import date

import pytest
from test_import import export_csv, import_, read_rows, saves, write_rows, writes

from etl.codec import date_to_ms, decode_tags, encode_tags, read_table
from etl.codec.text import DAY_FIRST, ORDER_UNKNOWN

ERROR_VALUES = ["#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!",
                "#GETTING_DATA"]


def _new(header, **values):
    return {**{k: "" for k in header}, **values}


def _dmy(iso: str) -> str:
    """A yyyy-MM-dd date as European Excel writes it (dd/mm/yyyy)."""
    y, m, d = iso.split("-")
    return f"{d}/{m}/{y}"


def european_excel_save(path, header, rows, edit=lambda r: None):
    """Excel in a European locale: ;-separated, dates (and date-looking text) as dd/mm/yyyy."""
    for r in rows:
        for column in ("DateOfBirth", "custom.FirstVisitDate"):
            if r.get(column):
                r[column] = _dmy(r[column])
        edit(r)
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, delimiter=";", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- 1. error values


@pytest.mark.parametrize("value", ERROR_VALUES)
def test_every_spreadsheet_error_value_is_an_error_in_any_column(tmp_path, value):
    path = tmp_path / "c.csv"
    path.write_text(f"ClientId,Phone,DateOfBirth,Tags,custom.sotc\n1,{value},{value},{value},{value}\n",
                    encoding="utf-8")
    table = read_table(path)
    assert sorted((p.column, p.check) for p in table.problems) == sorted(
        (c, "spreadsheet_error_value") for c in ("Phone", "DateOfBirth", "Tags", "custom.sotc"))
    assert table.frame.loc[0, "Tags"] == [] and table.frame[["Phone", "custom.sotc"]].isna().all(axis=None)


def test_an_error_value_is_never_written_validate_and_import_both_refuse_it(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["Phone"] = "#N/A"                       # a VLOOKUP that found nothing
    rows[3]["custom.sotc"] = "#REF!"
    write_rows(export, header, rows)
    sandbox.log.clear()

    checked = run_cli("validate", export)
    imported = import_(run_cli, export)

    assert checked.exit_code == 1 and imported.exit_code == 1
    assert sandbox.log == []
    assert "row 2, Phone: a spreadsheet error value, not data [spreadsheet_error_value] (fix the formula" \
        in checked.output
    assert "row 2, column Phone: a spreadsheet error value, not data" in imported.output

    skipped = import_(run_cli, export, "--skip-invalid")

    assert skipped.exit_code == 0, skipped.output
    assert writes(sandbox) == []


# --------------------------------------------------------------------------- 2. ;-separated files


@pytest.fixture
def dated_export(sandbox, run_cli, tmp_path):
    """An export where client 1 was born 1964-05-10 and client 2 first came 2026-08-22."""
    first, second = sorted(sandbox.store.clients)[:2]
    sandbox.store.staff_edit(first, DateOfBirth=date_to_ms(date(1964, 5, 10), "UTC"))
    sandbox.store.staff_edit(second, **{"custom.FirstVisitDate": "2026-08-22"})
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    assert "1964-05-10" in [r["DateOfBirth"] for r in rows]
    return export, header, rows


def test_a_european_excel_save_reads_dates_day_first_and_says_so(sandbox, run_cli, dated_export):
    export, header, rows = dated_export
    european_excel_save(export, header, rows)
    assert "10/05/1964" in export.read_text(encoding="utf-8-sig")
    sandbox.log.clear()

    checked = run_cli("validate", export)
    result = import_(run_cli, export)

    note = ("note: dates like 5/10/1964 read day-first (D/M/YYYY): the file is ;-separated, as European "
            "Excel saves it; pass --date-format to say otherwise")
    assert checked.exit_code == 0, checked.output
    assert result.exit_code == 0, result.output
    assert checked.output.count(note) == 1 and result.output.count(note) == 1
    assert writes(sandbox) == []            # not 1964-10-05, and 22/08/2026 is the exported date


def test_skip_invalid_on_a_european_save_never_swaps_a_date(sandbox, run_cli, dated_export):
    export, header, rows = dated_export
    born = next(r for r in rows if r["DateOfBirth"] == "1964-05-10")
    edited, invalid = rows[5], rows[6]

    def edit(r):
        if r is edited:
            r["City"] = "Lyon"
        if r is invalid:
            r["Email"] = "not-an-email"
    european_excel_save(export, header, rows, edit)
    sandbox.log.clear()

    result = import_(run_cli, export, "--skip-invalid")

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 1
    assert sandbox.store.clients[int(edited["ClientId"])]["City"] == "Lyon"
    record = sandbox.store.clients[int(born["ClientId"])]
    assert record["DateOfBirth"] == date_to_ms(date(1964, 5, 10), "UTC")


def test_date_format_overrides_the_day_first_reading_of_a_semicolon_file(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ClientId;DateOfBirth\n1;5/10/1964\n", encoding="utf-8")
    assert read_table(path).frame.loc[0, "DateOfBirth"] == "1964-10-05"
    assert read_table(path).date_order == DAY_FIRST
    assert read_table(path, date_format="%m/%d/%Y").frame.loc[0, "DateOfBirth"] == "1964-05-10"


def test_a_date_that_reads_both_ways_in_a_file_of_unknown_order_is_an_error(sandbox, run_cli, dated_export):
    export, header, rows = dated_export
    born = rows.index(next(r for r in rows if r["DateOfBirth"] == "1964-05-10"))
    visit = rows.index(next(r for r in rows if r["custom.FirstVisitDate"] == "2026-08-22"))
    rows[born]["DateOfBirth"] = "10/05/1964"              # UK Excel: ,-separated and day-first
    rows[visit]["custom.FirstVisitDate"] = "22/08/2026"   # reads day-first only: the order is not US
    rows[visit + 1]["custom.FirstVisitDate"] = "03/04/2026"
    write_rows(export, header, rows)
    assert read_table(export).date_order == ORDER_UNKNOWN
    sandbox.log.clear()

    checked = run_cli("validate", export, "--report", export.parent / "problems.csv")
    imported = import_(run_cli, export)

    assert checked.exit_code == 1 and imported.exit_code == 1
    assert sandbox.log == []
    reported = {(int(p["row"]), p["column"]) for p in read_rows(export.parent / "problems.csv")[1]
                if p["check"] == "date_ambiguous"}
    assert reported == {(born + 2, "DateOfBirth"), (visit + 3, "custom.FirstVisitDate")}
    assert "a date that reads two ways (day/month or month/day)" in checked.output
    assert "--date-format %d/%m/%Y" in checked.output
    assert f"row {born + 2}, column DateOfBirth: a date that reads two ways" in imported.output

    fixed = import_(run_cli, export, "--date-format", "%d/%m/%Y")

    assert fixed.exit_code == 0, fixed.output
    assert writes(sandbox) != [] and len(saves(sandbox)) == 1     # 03/04/2026: a real edit
    assert sandbox.store.clients[int(rows[born]["ClientId"])]["DateOfBirth"] == date_to_ms(date(1964, 5, 10), "UTC")


def test_a_us_file_keeps_reading_slash_dates_month_first(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ClientId,DateOfBirth,custom.FirstVisitDate\n1,5/10/1964,7/1/2026\n2,3/25/1990,\n",
                    encoding="utf-8")
    table = read_table(path)
    assert table.problems == [] and table.notes == []
    assert table.frame["DateOfBirth"].tolist() == ["1964-05-10", "1990-03-25"]


# --------------------------------------------------------------------------- 3. scientific notation


def test_scientific_notation_that_would_be_sent_is_an_error_in_validate_and_import(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["Phone"] = "4.42079E+11"           # not the exported phone in another form: an edit
    new = _new(header, FirstName="Sci", LastName="Note", Email="sci@example.org",
               PrimaryInsurancePolicyNumber="1.23E+05", PostalCode="2134.0")
    write_rows(export, header, rows + [new])
    sandbox.log.clear()

    checked = run_cli("validate", export)
    imported = import_(run_cli, export)

    message = ("a text cell in scientific notation (like 4.42079E+11): a spreadsheet saved it as a number, "
               "and it would be sent as it is")
    assert checked.exit_code == 1 and imported.exit_code == 1
    assert sandbox.log == []
    assert f"row 2, Phone: {message} [scientific_notation]" in checked.output
    assert f"row 2, column Phone: {message} (and 1 more" in imported.output
    assert "number_form_in_new_row" in checked.output                # 2134.0 in a new row: still a warning


def test_scientific_notation_without_a_base_is_checked_against_live(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[2]["City"] = "1.5E+03"
    write_rows(export, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, export, "--base", "none")

    assert result.exit_code == 1
    assert writes(sandbox) == []
    assert "row 4, column City: a text cell in scientific notation" in result.output


# --------------------------------------------------------------------------- 4. line ends and quotes


def test_classic_mac_line_ends_read_as_rows(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[1]["City"] = "Cupertino"
    write_rows(export, header, rows)
    export.write_bytes(export.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    assert b"\n" not in export.read_bytes()
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert len(saves(sandbox)) == 1
    assert sandbox.store.clients[int(rows[1]["ClientId"])]["City"] == "Cupertino"


@pytest.mark.parametrize("column", ["FirstName", "custom.sotc"])    # a middle cell, and the last one
def test_an_unclosed_quote_is_an_error_naming_its_line(sandbox, run_cli, tmp_path, column):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[4][column] = "QUOTE_HERE"
    write_rows(export, header, rows)
    text = export.read_text(encoding="utf-8-sig").replace("QUOTE_HERE", '"Ann')   # the closing " never typed
    export.write_text(text, encoding="utf-8-sig")
    line = text[:text.index('"Ann')].count("\n") + 1
    sandbox.log.clear()

    checked = run_cli("validate", export)
    imported = import_(run_cli, export)

    expected = f"line {line}: a quoted cell starts in the row on this line and its quote is never closed"
    assert checked.exit_code == 1 and expected in checked.output
    assert imported.exit_code == 1 and expected in imported.output
    assert sandbox.log == []


# --------------------------------------------------------------------------- 5. spaces around an edit


def test_an_edited_cell_is_sent_without_the_spaces_around_it(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["City"] = "  Springfield  "
    new = _new(header, FirstName=" Tess ", LastName="Trim ", Email="tess@example.org")
    write_rows(export, header, rows + [new])
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert sandbox.store.clients[int(rows[0]["ClientId"])]["City"] == "Springfield"
    created = next(c for c in sandbox.store.clients.values() if c.get("Email") == "tess@example.org")
    assert (created["FirstName"], created["LastName"], created["Name"]) == ("Tess", "Trim", "Tess Trim")


# --------------------------------------------------------------------------- 6. backslashes in tags


@pytest.mark.parametrize("cell, tags", [
    ("C:\\temp", ["C:\\temp"]),                       # \t is no escape: the backslash stays
    ("C:\\temp\\new; x", ["C:\\temp\\new", "x"]),
    ("a\\;b; c\\\\d", ["a;b", "c\\d"]),               # the documented escapes
    ("\\ edge\\ ; in\\ side", [" edge ", "in\\ side"]),
    ("trailing\\", ["trailing\\"]),                   # a lone backslash at the end is literal too
    (":-\\", [":-\\"]),
])
def test_only_documented_backslashes_are_escapes_in_tags(cell, tags):
    assert decode_tags(cell) == tags
    assert decode_tags(encode_tags(tags)) == tags


def test_a_tag_with_a_backslash_is_created_as_typed(sandbox, run_cli, tmp_path):
    export = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(export)
    rows[0]["Tags"] = "C:\\temp"
    write_rows(export, header, rows)
    sandbox.log.clear()

    result = import_(run_cli, export)

    assert result.exit_code == 0, result.output
    assert "C:\\temp" in sandbox.store.clients[int(rows[0]["ClientId"])]["Tags"]
