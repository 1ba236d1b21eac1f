"""The pandera schemas: every check fails on a tiny frame and reports its stable name."""
from __future__ import annotations

import pytest
from pandera.errors import SchemaErrors

from etl import fields
from etl.codec import clients_to_frame, diagnoses_to_frame
from etl.schemas.clients import CHECKS, ClientsSchema, validate_clients
from etl.schemas.diagnoses import DiagnosesSchema, validate_diagnoses


def client(**kw):
    base = {"ClientId": 1, "FirstName": "Ana", "LastName": "Lee", "Email": "ana@example.org",
            "Tags": []}
    base.update(kw)
    return base


def problems_of(*records, check=None):
    problems = validate_clients(clients_to_frame(list(records)))
    return [p for p in problems if check is None or p.check == check]


def test_api_shaped_records_validate_clean():
    records = [client(ClientId=i, Email=e, BillingType=b, Tags=["x"], DateOfBirth=1458526480368.0,
                      DateCreated=1744432686643.0, PostalCode="02134", Country="USA",
                      LinkedClients=[{"ClientNumber": 9, "RelationshipType": 1}],
                      CustomFields=[{"FieldId": "sotc", "Value": None}], Guid="g", NewField=[1])
               for i, (e, b) in enumerate([("a@b.co", 0), ('"john doe"@x.org', 1),
                                           ("first+tag@sub.example.com", 2), (None, None)], 1)]
    frame = clients_to_frame(records)
    assert validate_clients(frame) == []
    ClientsSchema.validate(frame)  # the model itself agrees


@pytest.mark.parametrize("records,check,row,column", [
    ([client(ClientId=-3)], "client_id_positive", 2, "ClientId"),
    ([client(ClientId=0)], "client_id_positive", 2, "ClientId"),
    ([client(Email="not-an-email")], "email_shape", 2, "Email"),
    ([client(Email="two@@x")], "email_shape", 2, "Email"),
    ([client(BillingType=7)], "billing_type_known", 2, "BillingType"),
    ([client(), client(FirstName="Bo")], "duplicate_client_id", 3, "ClientId"),
    ([client(ClientId=None, LastName=None)], "new_client_needs_name", 2, "LastName"),
    ([client(ClientId=None, FirstName=None)], "new_client_needs_name", 2, "FirstName"),
])
def test_each_error_check(records, check, row, column):
    found = problems_of(*records, check=check)
    assert found, check
    assert any(p.row == row and p.column == column and p.severity == "error" for p in found)
    assert check in CHECKS


def test_duplicate_names_both_rows():
    found = problems_of(client(ClientId=5), client(ClientId=6), client(ClientId=5),
                        check="duplicate_client_id")
    assert [(p.row, p.message) for p in found] == [
        (2, "the same ClientId is also on row 4"), (4, "the same ClientId is also on row 2")]


def test_date_and_tags_checks_on_foreign_frames():
    frame = clients_to_frame([client(DateOfBirth=1458526480368.0)])
    frame.loc[0, "DateOfBirth"] = "21/03/2016"
    frame.at[0, "Tags"] = "not a list"
    checks = {p.check for p in validate_clients(frame)}
    assert {"date_is_iso", "tags_are_lists"} <= checks


def test_dtype_problem():
    frame = clients_to_frame([client()])
    frame["ClientId"] = frame["ClientId"].astype(float)
    found = [p for p in validate_clients(frame) if p.check == "dtype"]
    assert found and found[0].column == "ClientId"


@pytest.mark.parametrize("records,check,row,column", [
    ([client(ClientId=None, Email=None)], "new_client_needs_contact", 2, "Email"),
    ([client(PostalCode="2134", Country="USA")], "postal_code_lost_zero", 2, "PostalCode"),
    ([client(PostalCode="2134")], "postal_code_lost_zero", 2, "PostalCode"),
    ([client(Email="Ana@Example.org"), client(ClientId=2)], "email_case_duplicate", 2, "Email"),
])
def test_each_warning_check(records, check, row, column):
    found = problems_of(*records, check=check)
    assert any(p.row == row and p.column == column for p in found)
    assert all(p.severity == "warning" for p in found)
    assert all(p.severity == "warning" for p in problems_of(*records))  # warnings only


def test_no_postal_warning_outside_the_us():
    assert problems_of(client(PostalCode="1010", Country="Austria"), check="postal_code_lost_zero") == []


def test_same_email_same_case_is_not_a_warning():
    assert problems_of(client(), client(ClientId=2), check="email_case_duplicate") == []


@pytest.mark.parametrize("column,suggestion", [("Emial", "Email"), ("firstname", "FirstName"),
                                               ("LastNmae", "LastName"), ("custom_sotc", "custom.<FieldId>")])
def test_probable_typo_column(column, suggestion):
    frame = clients_to_frame([client(**{column: "x"})])
    found = [p for p in validate_clients(frame) if p.check == "probable_typo_column"]
    assert len(found) == 1 and found[0].column == column and suggestion in found[0].message
    assert found[0].severity == "warning"


def test_unrelated_unknown_column_is_fine():
    assert validate_clients(clients_to_frame([client(TotallyNewApiField="x")])) == []


def test_row_numbers_are_passed_through():
    problems = validate_clients(clients_to_frame([client(ClientId=-1)]), row_numbers=[7])
    assert problems[0].row == 7


def test_messages_hold_no_client_data():
    found = problems_of(client(Email="secret-ana@"), client(ClientId=None, Email="SECRET@x.org"))
    for p in found:
        assert "secret" not in p.message.lower() and "ana" not in p.message.lower()


def test_schema_model_raises_with_check_names():
    frame = clients_to_frame([client(ClientId=-1), client(ClientId=None, LastName=None)])
    with pytest.raises(SchemaErrors) as info:
        ClientsSchema.validate(frame, lazy=True)
    checks = set(info.value.failure_cases["check"])
    assert {"client_id_positive", "new_client_needs_name"} <= checks


def test_schema_columns_come_from_the_registry():
    schema = ClientsSchema.to_schema()
    assert set(fields.KNOWN_NAMES) <= set(schema.columns)
    assert "custom\\..+" in schema.columns


def test_diagnoses_schema():
    frame = diagnoses_to_frame([{"ClientId": 3, "Code": "F10", "Description": "x",
                                 "Date": "2021-12-08T23:00:00Z", "EndDate": None, "NoteId": "n"}])
    DiagnosesSchema.validate(frame)
    assert validate_diagnoses(frame) == []
    frame.loc[0, "ClientId"] = -1
    assert [p.check for p in validate_diagnoses(frame)] == ["client_id_positive"]


def test_unreadable_client_id_is_not_reported_as_a_new_client(tmp_path):
    """A ClientId cell Excel turned into #VALUE! is one error, not also 'a new client needs names'."""
    from etl.codec import read_table
    from etl.schemas.clients import validate_table

    path = tmp_path / "c.csv"
    path.write_text("ClientId,FirstName,LastName\n#VALUE!,Ana,\n,Bo,\n", encoding="utf-8")
    problems = validate_table(read_table(path))
    assert [(p.row, p.check) for p in problems if p.row == 2] == [(2, "spreadsheet_error_value")]
    assert (3, "new_client_needs_name") in [(p.row, p.check) for p in problems]


def test_the_schema_version_is_defined_once_and_reading_manifests_needs_no_pandera():
    import subprocess
    import sys

    from etl.export.manifest import schema_version
    from etl.schemas.clients import SCHEMA_VERSION

    assert schema_version() == SCHEMA_VERSION == "1"
    loaded = subprocess.run([sys.executable, "-c", "import sys, etl.export.manifest; print('pandera' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"
