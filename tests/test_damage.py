"""Spreadsheet damage (etl.codec.damage): what a spreadsheet does to a cell is not an edit."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.codec.damage import CHARS_REPLACED, LOST, REFORMATTED, classify, looks_like_number_form


@pytest.mark.parametrize("exported, file, kind", [
    ("02134", "2134.0", REFORMATTED),                     # pandas / General cells
    ("02134", "2134", REFORMATTED),                       # Excel's "open CSV, save"
    ("013250597", "13250597", REFORMATTED),
    ("308529426", "308529426.0", REFORMATTED),
    ("123456789012", "1.23456789012E+11", REFORMATTED),   # scientific notation, still exact
    ("503-555-0100", "5035550100", REFORMATTED),          # phone formatting stripped
    ("(503) 555-0100", "5035550100", REFORMATTED),
    ("2023-07-16", "45123", REFORMATTED),                 # an XLSX serial date
    ("12.50", "12.5", REFORMATTED),
    ("123456789012", "1.23457E+11", LOST),                # rounded by scientific notation
    ("442079123456", "4.42079E+11", LOST),
    ("12345678901234567", "12345678901234600", LOST),     # a float keeps ~15 digits
    ("Łukasz", "?ukasz", CHARS_REPLACED),                 # saved as Windows-1252
    ("café ☕", "café ?", CHARS_REPLACED),
    ("02134", "02135", None),                             # real edits
    ("02134", "2135", None),
    ("Boston", "Bostn", None),
    ("1234", "1.23E+05", None),
    ("2023-07-16", "45124", None),
    ("503-555-0100", "5035550101", None),
    ("Who?", "Who?", None),
    (None, "2134.0", None),
])
def test_classify(exported, file, kind):
    assert classify(exported, file) == kind


@given(st.from_regex(r"\A0{0,3}[1-9][0-9]{0,13}\Z"))
def test_every_number_form_of_digits_is_reformatted(digits):
    for form in (digits.lstrip("0"), str(float(int(digits))), f"{int(digits)}.0"):
        if form != digits:
            assert classify(digits, form) == REFORMATTED


@given(st.text(min_size=1).filter(lambda t: t.strip() and "?" not in t))
def test_text_saved_in_windows_1252_is_never_an_edit(text):
    saved = text.strip().encode("cp1252", errors="replace").decode("cp1252")
    assert classify(text, saved) == (None if saved.strip() == text.strip() else CHARS_REPLACED)


@pytest.mark.parametrize("text, expected", [("2134.0", True), ("1.23E+05", True), ("2134", False),
                                            ("1.5", False), ("Main St", False), (None, False)])
def test_looks_like_number_form(text, expected):
    assert looks_like_number_form(text) is expected


@pytest.mark.parametrize("exported, file", [("2134", "02134"), ("2134.0", "02134"), ("2134.0", "2134"),
                                            ("1.23456789012E+11", "123456789012")])
def test_a_repair_of_an_exported_number_form_is_an_edit(exported, file):
    assert classify(exported, file) is None


def test_summary_lines_show_cell_values_only_when_asked():
    from etl.codec.damage import Damage, summary_lines

    damage = [Damage(2, "PostalCode", "2134.0", "02134", REFORMATTED),
              Damage(5, "PostalCode", "7030", "07030", REFORMATTED)]
    assert summary_lines(damage, examples=1) == [
        "PostalCode: 2 cell(s) look reformatted by a spreadsheet (e.g. row 2: 02134 → 2134.0); kept as exported"]
    assert summary_lines(damage, examples=0) == [
        "PostalCode: 2 cell(s) look reformatted by a spreadsheet (first: row 2); kept as exported"]
