"""Unit tests of the import's pure diff (etl/importer/diff.py): find_edits, plan_rows, bodies.

Frames are tiny and inline, built with the codec from API-shaped profiles, so each test
shows the one behaviour it checks. The end-to-end story is in tests/test_import.py.
"""
from __future__ import annotations

import copy
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from etl.codec import clients_to_frame
from etl.importer.diff import (
    CONFLICT,
    CREATE,
    FAILED,
    UNCHANGED,
    UPDATE,
    Change,
    Conflict,
    Options,
    RowEdit,
    StaffKept,
    Written,
    days_needed,
    find_edits,
    merged_body,
    plan_rows,
)
from etl.importer.matching import digits, fold
from etl.sandbox.records import blank_profile

CUSTOM_FIELDS = [{"FieldId": "sotc", "Text": "Emergency Contact Name"},
                 {"FieldId": "ReferralSource", "Text": "Referral Source"}]


# --------------------------------------------------------------------------- helpers


def profile(client_id: int, custom: dict | None = None, **values) -> dict:
    """A full API-shaped profile (as the sandbox and IntakeQ send it)."""
    record = blank_profile(client_id, CUSTOM_FIELDS)
    record.update(FirstName="Ann", LastName="Lee", Name="Ann Lee", Email=f"c{client_id}@example.com",
                  Phone="(617) 555-0100", City="Boston", Tags=["VIP"], DateCreated=1_700_000_000_000.0)
    record.update(values)
    for entry in record["CustomFields"]:
        if custom and entry["FieldId"] in custom:
            entry["Value"] = custom[entry["FieldId"]]
    return record


def frame(*records, columns=None):
    df = clients_to_frame(list(records))
    df.index = pd.RangeIndex(2, 2 + len(df), name="row")      # the spreadsheet row, as import reads it
    return df[columns] if columns is not None else df


def edit_of(file, base, options=Options()) -> RowEdit:
    (edit,) = find_edits(file, base, options)
    return edit


def plan_of(edit: RowEdit, live: dict, options=Options(), universe=()):
    (plan,) = plan_rows([edit], {r["ClientId"]: r for r in live} if isinstance(live, list) else live,
                        options, universe=universe)
    return plan


def three_way(base_record: dict, file_record: dict, live_record: dict, columns, options=Options()):
    """find_edits (file vs base) then plan_rows (vs live) for one client."""
    edit = edit_of(frame(file_record, columns=columns), frame(base_record), options)
    return plan_of(edit, [live_record], options)


# --------------------------------------------------------------------------- find_edits


def test_a_file_equal_to_its_base_has_no_edit_on_any_row():
    base = frame(profile(1), profile(2, City="Austin"), profile(3, Tags=[]))
    edits = find_edits(base.copy(), base, Options(blank="clear", tags="replace"))
    assert [e.client_id for e in edits] == [1, 2, 3]
    assert [e.row for e in edits] == [2, 3, 4]
    for e in edits:
        assert e.values == {}
        assert not e.tags_add and not e.tags_remove and e.ignored == ()
        assert not e.needs_live


@pytest.mark.parametrize("column, base_value, file_value", [
    ("City", "Boston", "  Boston "),                     # whitespace
    ("Email", None, ""),                                  # empty cell vs missing value
    ("Email", "", None),
    ("Phone", "16175550100", "+16175550100"),             # IntakeQ drops a leading '+'
    ("MobilePhone", "1 617 555 0100", " +1 617 555 0100"),
])
def test_normalised_equal_values_are_not_an_edit(column, base_value, file_value):
    base = frame(profile(1, **{column: base_value}))
    file = frame(profile(1, **{column: file_value}), columns=["ClientId", column])
    edit = edit_of(file, base, Options(blank="clear"))
    assert edit.values == {}


def test_an_edited_writable_field_is_an_edit_with_its_base_value():
    base = frame(profile(1), profile(2))
    file = frame(profile(1), profile(2, City="Springfield"), columns=["ClientId", "City", "Email"])
    unchanged, edited = find_edits(file, base)
    assert unchanged.values == {}
    assert edited.client_id == 2
    assert edited.values == {"City": "Springfield"}
    assert edited.base == {"City": "Boston"}
    assert edited.needs_live


@pytest.mark.parametrize("column, value", [
    ("ClientNumber", "999"),
    ("CreditBalance", 12.5),
    ("DateCreated", 1_600_000_000_000.0),
])
def test_an_edited_read_only_column_is_ignored_and_never_a_value(column, value):
    base = frame(profile(1))
    file = frame(profile(1, **{column: value}), columns=["ClientId", column, "City"])
    edit = edit_of(file, base)
    assert [i.field for i in edit.ignored] == [column]
    assert edit.values == {}
    assert column not in (edit.base or {})


@pytest.mark.parametrize("blank, expect", [("keep", {}), ("clear", {"City": None})])
def test_a_blank_cell_keeps_or_clears_the_value(blank, expect):
    base = frame(profile(1, City="Boston"))
    file = frame(profile(1, City=None), columns=["ClientId", "City"])
    assert edit_of(file, base, Options(blank=blank)).values == expect


@pytest.mark.parametrize("mode, base_tags, file_tags, add, remove", [
    ("merge", ["a", "b"], ["b", "c"], {"c"}, set()),
    ("replace", ["a", "b"], ["b", "c"], {"c"}, {"a"}),
    ("merge", ["a", "b"], [], set(), set()),
    ("replace", ["a", "b"], [], set(), set()),          # empty cell under --blank keep: nothing
])
def test_tags_merge_adds_only_new_tags_and_replace_also_removes_deleted_ones(mode, base_tags, file_tags, add,
                                                                              remove):
    base = frame(profile(1, Tags=base_tags))
    file = frame(profile(1, Tags=file_tags), columns=["ClientId", "Tags"])
    edit = edit_of(file, base, Options(tags=mode))
    assert edit.tags_add == add
    assert edit.tags_remove == remove
    assert edit.values == {}


def test_an_empty_tags_cell_with_replace_and_blank_clear_removes_every_base_tag():
    base = frame(profile(1, Tags=["a", "b"]))
    file = frame(profile(1, Tags=[]), columns=["ClientId", "Tags"])
    edit = edit_of(file, base, Options(tags="replace", blank="clear"))
    assert edit.tags_remove == {"a", "b"}
    assert edit.tags_add == frozenset()


def test_rows_keep_their_spreadsheet_numbers_when_the_file_frame_is_a_subset():
    base = frame(profile(1), profile(2), profile(3))
    file = frame(profile(1), profile(2, City="X"), profile(3, City="Y"),
                 columns=["ClientId", "City"]).loc[[2, 4]]   # spreadsheet rows 2 and 4
    edits = find_edits(file, base)
    assert [(e.row, e.client_id, e.values) for e in edits] == [(2, 1, {}), (4, 3, {"City": "Y"})]


def test_a_value_in_a_column_the_base_lacks_is_an_edit():
    base = clients_to_frame([{k: v for k, v in profile(1).items() if k != "CustomFields"}])
    file = frame(profile(1, custom={"sotc": "New Contact"}), columns=["ClientId", "custom.sotc"])
    edit = edit_of(file, base)
    assert edit.values == {"custom.sotc": "New Contact"}
    assert edit.base == {"custom.sotc": None}


def test_a_row_whose_client_is_not_in_the_base_is_two_way():
    base = frame(profile(1))
    file = frame(profile(7, City="Austin", Email=None, Tags=["x"]),
                 columns=["ClientId", "FirstName", "Email", "City", "Tags"])
    edit = edit_of(file, base)
    assert edit.client_id == 7
    assert edit.base is None
    assert edit.values == {"FirstName": "Ann", "City": "Austin"}   # blank Email kept (not sent)
    assert edit.tags_add == {"x"}


def test_without_a_base_every_row_is_two_way():
    file = frame(profile(1), profile(2), columns=["ClientId", "City"])
    edits = find_edits(file, None)
    assert [(e.client_id, e.base, e.values) for e in edits] == [
        (1, None, {"City": "Boston"}), (2, None, {"City": "Boston"})]


def new_row(**values) -> dict:
    return {"ClientId": None, "FirstName": "Ann", "LastName": "Lee", "Email": None, "Phone": None,
            "City": "Austin", **values}


@pytest.mark.parametrize("values, how, edited", [
    ({"Email": "c1@example.com"}, "first name + email", {}),
    ({"FirstName": " ANN ", "Email": "C1@Example.COM"}, "first name + email",   # matched case-insensitively,
     {"FirstName": "ANN", "Email": "C1@Example.COM"}),           # the case change is an edit, sent trimmed
    ({"Phone": "617.555.0100"}, "first name + phone", {"Phone": "617.555.0100"}),   # digits only
])
def test_a_new_row_matching_a_base_client_becomes_a_three_way_edit(values, how, edited):
    base = frame(profile(1, Email="c1@example.com", Phone="(617) 555-0100", City="Boston"),
                 profile(2, FirstName="Bob", Phone="(617) 555-0199"))
    columns = ["ClientId", "FirstName", "LastName", "City"] + [c for c in ("Email", "Phone") if c in values]
    file = frame(profile(9), new_row(**values), columns=columns)
    edit = find_edits(file, base)[1]
    assert edit.client_id == 1
    assert edit.matched_by == "base: " + how
    assert edit.values == {"City": "Austin", **edited}
    assert edit.base["City"] == "Boston"


@pytest.mark.parametrize("values", [
    {"FirstName": "Bob", "Email": "c1@example.com"},        # another first name
    {"Email": "other@example.com"},                          # another email, no phone
    {"Phone": "(617) 555-0199"},                             # another phone
])
def test_a_new_row_matching_no_base_client_is_left_for_create(values):
    base = frame(profile(1, Email="c1@example.com", Phone="(617) 555-0100"))
    file = frame(new_row(**values), columns=["ClientId", "FirstName", "LastName", "Email", "Phone", "City"])
    edit = edit_of(file, base)
    assert edit.client_id is None
    assert edit.base is None
    assert edit.matched_by is None
    assert edit.needs_live


# --------------------------------------------------------------------------- plan_rows


def test_live_already_holding_the_file_values_is_unchanged_and_writes_nothing():
    base = profile(1, City="Boston", Tags=["VIP"])
    file = profile(1, City="Springfield", Tags=["VIP", "New"])
    live = profile(1, City="Springfield", Tags=["VIP", "New"])   # the file was applied already
    plan = three_way(base, file, live, ["ClientId", "City", "Tags"])
    assert plan.action == UNCHANGED
    assert plan.body is None and plan.tag_adds == [] and plan.tag_removes == []
    assert plan.writes == 0


def test_a_tag_already_absent_needs_no_removal_call():
    base = profile(1, Tags=["VIP", "Old"])
    file = profile(1, Tags=["VIP"])
    live = profile(1, Tags=["VIP"])                 # staff removed it already
    plan = three_way(base, file, live, ["ClientId", "Tags"], Options(tags="replace"))
    assert plan.action == UNCHANGED
    assert plan.writes == 0


def test_an_edit_is_merged_over_live_keeping_what_staff_changed_in_other_fields():
    base = profile(1, City="Boston", Email="old@example.com")
    file = profile(1, City="Springfield", Email="old@example.com")
    live = profile(1, City="Boston", Email="staff@example.com")
    plan = three_way(base, file, live, ["ClientId", "City", "Email"])
    assert plan.action == UPDATE
    assert plan.changes == [Change("City", "Boston", "Springfield")]
    assert plan.body["City"] == "Springfield"
    assert plan.body["Email"] == "staff@example.com"
    assert plan.staff_kept == (StaffKept("Email", "old@example.com", "staff@example.com"),)   # for the review


def test_a_value_an_import_of_ours_wrote_is_not_listed_as_a_staff_edit():
    base = profile(1, City="Boston", Email="old@example.com")
    file = profile(1, City="Springfield", Email="old@example.com")
    live = profile(1, City="Boston", Email="ours@example.com")
    written = {(1, "Email"): Written("ours@example.com", 1.0)}
    edit = edit_of(frame(file, columns=["ClientId", "City", "Email"]), frame(base))
    (plan,) = plan_rows([edit], {1: live}, written=written)
    assert plan.changes == [Change("City", "Boston", "Springfield")] and plan.staff_kept == ()


def test_the_same_field_changed_in_the_file_and_in_intakeq_is_a_conflict_with_three_values():
    base = profile(1, City="Boston", Tags=[])
    file = profile(1, City="Springfield", Tags=["New"])
    live = profile(1, City="Chicago", Tags=[])
    plan = three_way(base, file, live, ["ClientId", "City", "Tags"])
    assert plan.action == CONFLICT
    assert plan.conflicts == [Conflict("City", base="Boston", file="Springfield", live="Chicago")]
    assert plan.body is None
    assert plan.changes == [] and plan.tag_adds == [] and plan.tag_removes == []
    assert plan.writes == 0


def test_the_same_field_changed_to_the_same_value_both_ways_is_no_conflict_and_no_write():
    plan = three_way(profile(1, City="Boston"), profile(1, City="Austin"), profile(1, City=" Austin"),
                     ["ClientId", "City"])
    assert plan.action == UNCHANGED
    assert plan.conflicts == [] and plan.writes == 0


def test_prefer_file_turns_a_conflict_into_a_change():
    base = profile(1, City="Boston")
    file = profile(1, City="Springfield")
    live = profile(1, City="Chicago")
    plan = three_way(base, file, live, ["ClientId", "City"], Options(prefer_file=True))
    assert plan.action == UPDATE
    assert plan.changes == [Change("City", "Chicago", "Springfield")]
    assert plan.body["City"] == "Springfield"


@pytest.mark.parametrize("file_values, expect_name", [
    ({"LastName": "Young"}, "Ann Young"),
    ({"FirstName": "Anna"}, "Anna Lee"),
    ({"LastName": "Young", "Name": "Dr. A. Young"}, "Dr. A. Young"),   # Name edited: kept as edited
])
def test_name_follows_first_and_last_name_unless_name_was_edited(file_values, expect_name):
    base = profile(1)
    file = profile(1, **file_values)
    plan = three_way(base, file, profile(1), ["ClientId", "Name", "FirstName", "LastName"])
    assert plan.action == UPDATE
    assert plan.body["Name"] == expect_name
    assert {c.field for c in plan.changes} == set(file_values) | {"Name"}


def test_a_new_row_matching_a_live_client_by_intakeq_rule_becomes_an_update():
    file = frame(new_row(Email="ann@example.org"), columns=["ClientId", "FirstName", "LastName", "Email", "City"])
    (edit,) = find_edits(file, frame(profile(1)))
    live = profile(42, Email="ann@example.org", City="Boston")
    plan = plan_of(edit, [live], universe=[live])
    assert plan.client_id == 42
    assert plan.action == UPDATE
    assert plan.changes == [Change("City", "Boston", "Austin")]
    assert "IntakeQ: first name + email" in plan.message


def test_a_create_body_has_the_names_and_custom_fields():
    record = new_row(LastName="Young", **{"custom.sotc": "Bob Young"}, Tags=["New"])
    file = clients_to_frame([record])[["ClientId", "FirstName", "LastName", "City", "Tags", "custom.sotc"]]
    (edit,) = find_edits(file, frame(profile(1)))
    plan = plan_of(edit, {})
    assert plan.action == CREATE
    assert plan.client_id is None
    assert plan.body == {"FirstName": "Ann", "LastName": "Young", "City": "Austin", "Name": "Ann Young",
                         "CustomFields": [{"FieldId": "sotc", "Value": "Bob Young"}]}
    assert plan.tag_adds == ["New"]
    assert plan.name_key == ("ann", "young")


def test_a_client_missing_from_live_is_failed():
    base = frame(profile(1))
    edit = edit_of(frame(profile(1, City="Austin"), columns=["ClientId", "City"]), base)
    plan = plan_of(edit, {})
    assert plan.action == FAILED
    assert plan.body is None and plan.writes == 0
    assert "ClientId 1 was not found" in plan.message


def test_rows_without_edits_are_unchanged_and_need_no_live_data():
    base = frame(profile(1), profile(2))
    edits = find_edits(base.copy(), base)
    plans = plan_rows(edits, {})
    assert [(p.row, p.client_id, p.action, p.writes) for p in plans] == [(2, 1, UNCHANGED, 0), (3, 2, UNCHANGED, 0)]


# --------------------------------------------------------------------------- bodies


def test_merged_body_is_the_full_live_profile_with_only_the_changed_fields_replaced():
    live = profile(1, custom={"sotc": "Old Contact", "ReferralSource": "Google"}, DateOfBirth=0.0)
    before = copy.deepcopy(live)
    changes = [Change("City", "Boston", "Austin"), Change("custom.sotc", "Old Contact", "New Contact"),
               Change("DateOfBirth", "1970-01-01", "1990-05-17")]
    body = merged_body(live, changes, "America/New_York")
    expected = copy.deepcopy(before)
    expected["City"] = "Austin"
    expected["CustomFields"][0]["Value"] = "New Contact"
    expected["DateOfBirth"] = int(datetime(1990, 5, 17, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
    assert body == expected
    assert body["DateOfBirth"] == 642_916_800_000          # 1990-05-17T04:00Z: midnight EDT
    assert body["CustomFields"][1] == {"FieldId": "ReferralSource", "Text": "Referral Source", "Value": "Google"}
    assert live == before                                    # the live record is not modified


def test_an_update_body_sends_no_read_only_value_from_the_file():
    base = profile(1)
    file = profile(1, City="Austin", ClientNumber="999")
    live = profile(1)
    plan = three_way(base, file, live, ["ClientId", "City", "ClientNumber"])
    assert [i.field for i in plan.ignored] == ["ClientNumber"]
    assert plan.body["ClientNumber"] == live["ClientNumber"]
    assert plan.body["City"] == "Austin"


# --------------------------------------------------------------------------- days_needed


@pytest.mark.parametrize("writes, remaining, per_day, days", [
    (0, None, 0, 0),
    (0, 0, 100, 0),
    (5, None, 0, 1),          # no daily limit
    (10, 10, 100, 1),         # fits in what is left today
    (11, 10, 100, 2),
    (110, 10, 100, 2),
    (111, 10, 100, 3),
    (5, 0, 100, 2),           # nothing left today: tomorrow
])
def test_days_needed(writes, remaining, per_day, days):
    assert days_needed(writes, remaining, per_day) == days


@pytest.mark.parametrize("value, folded", [
    (None, ""), (float("nan"), ""), (pd.NA, ""), ("   ", ""), ("  Ann ", "ann"), ("STRASSE", "strasse")])
def test_names_and_emails_fold_one_way_with_missing_values_as_empty(value, folded):
    assert fold(value) == folded


def test_phones_compare_by_their_digits_with_missing_values_as_empty():
    assert digits("(555) 010-2000") == "5550102000"
    assert digits(float("nan")) == digits(None) == ""


def test_instant_columns_compare_to_the_millisecond_as_numbers():
    """A read-only instant in the file (LastUpdateDate) differs from the base only when its
    millisecond does: what the file can hold; both empty is no difference."""
    from etl.importer.diff import _differs

    file = pd.Series(pd.to_datetime(["2025-01-01T00:00:00.1239Z", None, "2025-01-02T00:00:00.000Z", None], utc=True))
    base = pd.Series(pd.to_datetime(["2025-01-01T00:00:00.123Z", None, "2025-01-02T00:00:01.000Z",
                                     "2025-01-03T00:00:00.000Z"], utc=True))
    assert _differs("LastUpdateDate", file, base, "clear").tolist() == [False, False, True, True]
    assert _differs("LastUpdateDate", file, base, "keep").tolist() == [False, False, True, False]


def test_tags_compare_as_sets_of_tags_whatever_their_order():
    from etl.importer.diff import _differs

    file = pd.Series([["VIP", "New"], [], ["a"], [], None], dtype=object)
    base = pd.Series([["New", " VIP"], [], ["b"], ["x"], []], dtype=object)
    assert _differs("Tags", file, base, "clear").tolist() == [False, False, True, True, False]
    assert _differs("Tags", file, base, "keep").tolist() == [False, False, True, False, False]


def test_frame_rows_match_loc_and_hold_one_chunk():
    """FrameRows gives each row as .loc would (cell for cell), taking the next chunk of the
    announced order in one look-up and holding only that chunk; other rows are taken alone."""
    from etl.importer.diff import FrameRows

    base = frame(*[profile(i, City=f"C{i}") for i in range(1, 8)]).set_index("ClientId", drop=False)
    rows = FrameRows(base, [2, 3, 5, 7])
    rows.CHUNK = 2
    from etl.importer.matching import plain

    as_loc = {c: plain(v) for c, v in base.loc[2].items()}
    assert {c: plain(v) for c, v in rows[2].items()} == as_loc and set(rows._rows) == {2, 3}
    assert rows[3]["City"] == "C3" and set(rows._rows) == {2, 3}
    assert rows[5]["City"] == "C5" and set(rows._rows) == {5, 7}
    assert rows[4]["City"] == "C4" and set(rows._rows) == {4}       # not announced: alone
