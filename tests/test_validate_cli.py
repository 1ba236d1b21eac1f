"""`intakeq-etl validate`: no API call, a summary, a report, exit 0/1, never a traceback."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.codec import clients_to_frame, write_table


@pytest.fixture
def run(tmp_path):
    def invoke(*args):
        env = {"INTAKEQ_ETL_STATE_DIR": str(tmp_path / "state"), "INTAKEQ_API_KEY": "",
               "INTAKEQ_BASE_URL": "http://127.0.0.1:9/api/v1/"}  # nothing listens: no API call
        return CliRunner().invoke(cli, ["validate", *map(str, args)], env=env)

    return invoke


def records():
    return [{"ClientId": i, "FirstName": f"First{i}", "LastName": "Secretname", "Tags": ["a;b"],
             "Email": f"person{i}@example.org", "DateOfBirth": 1458526480368.0, "BillingType": 1}
            for i in range(1, 6)]


@pytest.mark.parametrize("ext", ["csv", "parquet", "xlsx"])
def test_valid_file(run, tmp_path, ext):
    path = tmp_path / f"clients.{ext}"
    write_table(clients_to_frame(records()), path)
    result = run(path, "--report", tmp_path / "report.csv")
    assert result.exit_code == 0, result.output
    assert "5 clients rows" in result.output and "valid" in result.output
    with open(tmp_path / "report.csv", encoding="utf-8-sig") as fh:
        assert list(csv.reader(fh)) == [["row", "column", "value", "check", "severity", "message", "hint"]]


def test_invalid_file_exit_1_and_report(run, tmp_path):
    path = tmp_path / "clients.csv"
    write_table(clients_to_frame(records()), path)
    raw = path.read_bytes().replace(b"\r\n2,", b"\r\n1,").replace(b"2016-03-21", b"31/31/2016", 1)
    raw += b",=Mallory,,,,,\r\n"  # a new client: no ClientId, no LastName
    path.write_bytes(raw)
    report = tmp_path / "out" / "report.csv"
    result = run(path, "--report", report)
    assert result.exit_code == 1, result.output
    assert "INVALID" in result.output
    for check in ("duplicate_client_id", "date_parses", "new_client_needs_name"):
        assert check in result.output
    assert "Secretname" not in result.output and "Mallory" not in result.output  # no client data
    assert (report.stat().st_mode & 0o777) == 0o600
    with open(report, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    found = {(r["row"], r["column"], r["check"], r["severity"]) for r in rows}
    assert ("2", "ClientId", "duplicate_client_id", "error") in found
    assert ("3", "ClientId", "duplicate_client_id", "error") in found
    assert ("2", "DateOfBirth", "date_parses", "error") in found
    assert ("7", "LastName", "new_client_needs_name", "error") in found
    assert ("7", "Email", "new_client_needs_contact", "warning") in found
    date_row = next(r for r in rows if r["check"] == "date_parses")
    assert date_row["value"] == "31/31/2016" and date_row["hint"]
    assert "error: clients.csv is not valid" in result.output


def test_warnings_only_exit_0(run, tmp_path):
    path = tmp_path / "clients.csv"
    frame = clients_to_frame(records())
    frame.loc[2, "ClientId"] = pd.NA           # a new client without email or phone
    frame.loc[2, "Email"] = pd.NA
    write_table(frame, path)
    result = run(path)
    assert result.exit_code == 0, result.output
    assert "new_client_needs_contact" in result.output and "warning" in result.output


def test_misspelt_column_without_base_is_an_error(run, tmp_path):
    """Issue 15: a column that is no IntakeQ field, in a file with no base, is never dropped
    silently (it used to be a probable_typo_column warning, and exit 0)."""
    path = tmp_path / "clients.csv"
    write_table(clients_to_frame(records()).rename(columns={"Email": "Emial"}), path)
    result = run(path)
    assert result.exit_code == 1, result.output
    assert "1 column is not an IntakeQ field: Emial (did you mean Email?)" in result.output
    assert "[unknown_columns]" in result.output and "probable_typo_column" not in result.output
    assert run(path, "--ignore-column", "Emial").exit_code == 0


def test_format_option_overrides_extension(run, tmp_path):
    path = tmp_path / "clients.data"
    write_table(clients_to_frame(records()), path, format="xlsx")
    assert run(path).exit_code == 1
    result = run(path, "--format", "xlsx")
    assert result.exit_code == 0, result.output


def test_encoding_and_date_format_options(run, tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes("ClientId,FirstName,LastName,DateOfBirth\r\n1,Zoé,Lee,21/03/2016\r\n".encode("cp1252"))
    bad = run(path)
    assert bad.exit_code == 1 and "--encoding" in bad.output
    good = run(path, "--encoding", "cp1252", "--date-format", "%d/%m/%Y")
    assert good.exit_code == 0, good.output


def test_no_formula_guard_option(run, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ClientId,FirstName,LastName\r\n1,'=x,Lee\r\n", encoding="utf-8")
    assert run(path, "--no-formula-guard").exit_code == 0


def test_diagnoses_file(run, tmp_path):
    from etl import fields
    from etl.codec import diagnoses_to_frame

    path = tmp_path / "diagnoses.csv"
    write_table(diagnoses_to_frame([{"ClientId": 1, "Code": "F10", "Date": "2021-12-08T23:00:00Z",
                                     "NoteId": "n"}]), path, kinds=fields.DIAGNOSIS_KINDS)
    result = run(path)
    assert result.exit_code == 0, result.output
    assert "diagnoses rows" in result.output


@pytest.mark.parametrize("name,content,message", [
    ("empty.csv", b"", "empty"),
    ("binary.csv", bytes(range(256)) * 4, "binary"),
    ("ragged.csv", b"ClientId,FirstName\n1,a\n2,b,c\n", "row 3 has 3 cells"),
    ("clients.txt.gz", b"\x1f\x8b", "unknown file extension"),
    ("sheet.xlsx", None, "no header row"),
    ("broken.xlsx", b"PK\x03\x04garbage", "not a readable XLSX"),
    ("broken.parquet", b"PAR1garbage", "not a readable Parquet"),
    ("latin1.csv", "ClientId,FirstName\n1,Zoé\n".encode("latin-1"), "line 2 is not valid utf-8"),
    ("missing.csv", "absent", "no such file"),
])
def test_malformed_files_one_message(run, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        from openpyxl import Workbook

        Workbook().save(path)
    elif content != "absent":
        path.write_bytes(content)
    result = run(path)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and message in lines[0] and name in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "state" / "logs").exists()  # not a crash


def test_help_mentions_options(run):
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--report", "--format", "--encoding", "--date-format", "--timezone",
                   "--no-formula-guard"):
        assert option in result.output


def test_bad_date_format_is_one_line_not_a_crash(run, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ClientId,FirstName,LastName,DateOfBirth\n1,Ana,Lee,05/03/1990\n", encoding="utf-8")
    result = run(path, "--date-format", "%Q")
    assert result.exit_code == 1
    assert "--date-format" in result.output and "Traceback" not in result.output
    assert "bug" not in result.output and not (tmp_path / "state" / "logs").exists()


def json_line(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_json_prints_one_summary_line_and_moves_the_summary_to_stderr(run, tmp_path):
    path = tmp_path / "clients.csv"
    write_table(clients_to_frame(records()), path)

    result = run(path, "--json", "--report", tmp_path / "report.csv")

    assert result.exit_code == 0, result.output
    summary = json_line(result)
    assert summary == {"file": str(path), "table": "clients", "rows": 5, "columns": summary["columns"],
                       "format": "csv", "valid": True, "errors": 0, "warnings": 0,
                       "errors_by_check": {}, "warnings_by_check": {}, "requests": 0,
                       "files": [str(tmp_path / "report.csv")], "exit_status": 0, "error": None}
    assert "5 clients rows" in result.stderr


def test_json_prints_its_line_on_exit_1(run, tmp_path):
    path = tmp_path / "clients.csv"
    write_table(clients_to_frame(records()), path)
    path.write_bytes(path.read_bytes().replace(b"\r\n2,", b"\r\n1,"))   # two rows for ClientId 1

    result = run(path, "--json")

    assert result.exit_code == 1, result.output
    summary = json_line(result)
    assert summary["valid"] is False and summary["exit_status"] == 1
    assert summary["errors_by_check"] == {"duplicate_client_id": 2}
    assert "is not valid" in summary["error"] and summary["files"] == []


def test_json_prints_its_line_when_the_file_cannot_be_read(run, tmp_path):
    result = run(tmp_path / "missing.csv", "--json")

    assert result.exit_code == 1, result.output
    summary = json_line(result)
    assert summary["rows"] is None and summary["valid"] is False and summary["error"]
