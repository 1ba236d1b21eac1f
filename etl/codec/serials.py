"""Spreadsheet date serials in date-like custom fields (XLSX).

IntakeQ's custom fields are text, so a date typed into one in a spreadsheet whose column
is not Text-formatted is saved as the day's serial number (``46204`` for 2026-07-01)
and would be sent as ``46204``. A ``custom.*`` column is *date-like* when its other
non-empty cells in the file are dates, or when the export it came from holds dates
(``yyyy-MM-dd``) in it. There a number cell is read as the date its serial stands for
(a warning says so), or, when it is no whole serial of a plausible date, is an error:
never sent as a number.

Cells of rows that differ from an export are also covered by :mod:`etl.codec.damage`
(a serial equal to the exported date); this module is what makes new rows and files
without a base safe too.
"""
from __future__ import annotations

import re

import pandas as pd

from .model import ERROR, WARNING, Problem
from .text import normalized_frame

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CONVERTED = "date_number_read_as_date"
NOT_A_DATE = "date_number_not_a_date"


def resolve_date_numbers(frame: pd.DataFrame, date_numbers: dict, base: pd.DataFrame | None
                         ) -> tuple[pd.DataFrame, list[Problem]]:
    """``frame`` (indexed by spreadsheet row) with the serials of date-like columns read as
    dates, and a problem per number cell there (a warning when read, else an error)."""
    problems: list[Problem] = []
    out = frame
    for column, by_row in date_numbers.items():
        if column not in frame.columns or not _date_like(frame, column, set(by_row), base):
            continue
        for row, day in sorted(by_row.items()):
            if row not in frame.index:
                continue        # a row left out (--skip-invalid)
            if day is None:
                problems.append(Problem(row, column, None, NOT_A_DATE,
                                        "a number in a column of dates that is no spreadsheet date",
                                        "type the date as yyyy-MM-dd in a Text-formatted cell"))
                continue
            if out is frame:
                out = frame.copy()
            out.at[row, column] = day
            problems.append(Problem(row, column, None, CONVERTED,
                                    "a spreadsheet date number in a column of dates; read as the date "
                                    "it stands for (yyyy-MM-dd)",
                                    "format the column as Text so dates stay as typed", severity=WARNING))
    return out, problems


def _date_like(frame: pd.DataFrame, column: str, number_rows: set[int], base: pd.DataFrame | None) -> bool:
    others = frame.loc[[int(i) not in number_rows for i in frame.index], [column]]
    if _all_dates(others, column):
        return True
    return base is not None and column in base.columns and _all_dates(base[[column]], column)


def _all_dates(frame: pd.DataFrame, column: str) -> bool:
    """At least one non-empty cell, and every non-empty one a date (spreadsheet forms too)."""
    values = normalized_frame(frame, [column])[column].dropna()
    return len(values) > 0 and bool(values.astype(str).str.match(_ISO_DATE.pattern).all())


__all__ = ["resolve_date_numbers", "CONVERTED", "NOT_A_DATE", "ERROR"]
