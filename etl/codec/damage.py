"""Spreadsheet damage: a cell that differs from what was exported only as a spreadsheet
program's own transformation of it, never as an admin's edit.

A file round-tripped through pandas (``read_csv`` → ``to_csv``), Google Sheets, Numbers
or Excel with General cells comes back with ``2134.0`` for ``02134``, ``2134`` for
``02134``, ``1.23456789012E+11`` for ``123456789012``, ``5035550100`` for
``503-555-0100``, ``45123`` (a serial date) for ``2023-07-16``, ``?ukasz`` for
``Łukasz`` (a "CSV (Comma delimited)" save in Windows-1252). :func:`classify` tells,
for one text cell and the value it was exported with:

* :data:`REFORMATTED` — the same data in another form: keep the exported value, send
  nothing;
* :data:`CHARS_REPLACED` — the same text with ``?`` where the file's encoding could
  not hold a character: keep the exported value, send nothing;
* :data:`LOST` — a number form that rounds the exported digits (``1.23457E+11`` for
  ``123456789012``): the value cannot be repaired from the file, so it is an error;
* ``None`` — a real edit (or something this module does not recognise).

Pure functions over plain values; the diff calls them only for cells that differ.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

REFORMATTED = "reformatted"
CHARS_REPLACED = "chars_replaced"
LOST = "lost"

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SCIENTIFIC = re.compile(r"[eE][+-]?\d+$")
_PLAIN_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]+$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_NON_DIGITS = re.compile(r"\D+")
_EXCEL_EPOCH = date(1899, 12, 30)      # serial 1 = 1900-01-01 (with Excel's 1900 leap-year bug)
_FLOAT_DIGITS = 15                      # what a spreadsheet keeps of a number


@dataclass(frozen=True)
class Damage:
    """One damaged cell: where, what the file holds, what was exported, and how it differs."""

    row: int
    column: str
    file_value: str
    base_value: str
    kind: str          # REFORMATTED, CHARS_REPLACED or LOST


def classify(base, file) -> str | None:
    """How ``file`` differs from ``base`` if only by a spreadsheet's transformation."""
    if not isinstance(base, str) or not isinstance(file, str):
        return None
    base, file = base.strip(), file.strip()
    if not base or not file or base == file:
        return None
    if _chars_replaced(base, file):
        return CHARS_REPLACED
    if not _NUMBER.match(file):
        return None
    if _ISO_DATE.match(base):
        return _serial_date(base, file)
    exported = _exported_number(base)
    if exported is None:
        return None
    number = _decimal(file)
    if number is None:
        return None
    if number == exported:
        return REFORMATTED if _lossier(base, file) else None
    return LOST if _rounds_to(exported, file, number) else None


def looks_like_number_form(text) -> bool:
    """A text cell in a spreadsheet's number form (``2134.0``, ``1.23E+05``): in a new row
    there is no exported value to compare with, so it can only be pointed out."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    if not _NUMBER.match(text):
        return False
    return bool(_SCIENTIFIC.search(text)) or (text.endswith(".0") and text[:-2].lstrip("+-").isdigit())


def _lossier(base: str, file: str) -> bool:
    """Is the file's form what a spreadsheet makes of the exported one, not the other way
    round? (``02134`` typed over an exported ``2134.0`` is a repair, an edit.)"""
    if looks_like_number_form(base):
        return False
    return _leading_zeros(file) <= _leading_zeros(base)


def _leading_zeros(text: str) -> int:
    digits = text.lstrip("+-")
    return len(digits) - len(digits.lstrip("0"))


def is_scientific(text) -> bool:
    """A number in scientific notation (``4.42079E+11``, ``1.23E+05``): how a spreadsheet
    shows a long number in a General cell, never how anyone types text."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    return bool(_NUMBER.match(text)) and bool(_SCIENTIFIC.search(text))


def _chars_replaced(base: str, file: str) -> bool:
    """``file`` is ``base`` saved in Windows-1252: characters it cannot hold became ``?``."""
    return "?" in file and base.encode("cp1252", errors="replace").decode("cp1252") == file


def _exported_number(base: str) -> Decimal | None:
    """The number an exported cell spells, for cells a spreadsheet would take as a number:
    plain digits (``02134``, ``308529426``, ``12.50``) or a phone (``503-555-0100``)."""
    if _PLAIN_DECIMAL.match(base):
        return Decimal(base)
    if _PHONE_LIKE.match(base):
        digits = _NON_DIGITS.sub("", base)
        if len(digits) >= 7:
            return Decimal(digits)
    return None


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _rounds_to(exported: Decimal, file: str, number: Decimal) -> bool:
    """Is the file's number the exported one rounded: scientific notation with few digits
    (``1.23457E+11``), or a float that kept only ~15 significant digits?"""
    if _SCIENTIFIC.search(file):
        mantissa = _SCIENTIFIC.sub("", file).lstrip("+-").replace(".", "").lstrip("0")
        return _within_half_unit(exported, number, max(1, len(mantissa)))
    if len(str(exported.to_integral_value())) > _FLOAT_DIGITS:
        return _within_half_unit(exported, number, _FLOAT_DIGITS)
    return False


def _within_half_unit(exported: Decimal, number: Decimal, significant: int) -> bool:
    """Does ``number`` equal ``exported`` rounded to ``significant`` digits (either way of
    rounding a tie)?"""
    if number == 0:
        return False
    unit = Decimal(10) ** (number.adjusted() - significant + 1)
    return abs(exported - number) * 2 <= unit


def _serial_date(base: str, file: str) -> str | None:
    """A date exported as ``yyyy-MM-dd`` that came back as a spreadsheet's serial number."""
    found = _ISO_DATE.match(base)
    if not found or not file.isdigit() or not 1 <= int(file) <= 2_958_465:
        return None
    try:
        exported = date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return None
    return REFORMATTED if _EXCEL_EPOCH + timedelta(days=int(file)) == exported else None


def summary_lines(damage: list[Damage], *, examples: int = 1) -> list[str]:
    """One line per column and kind: the count and, with ``examples``, the first cells
    (``e.g. row 2: 02134 → 2134.0``). Values are the admin's data: examples only for a
    person at a terminal (the caller decides), never for a log; the plan file has them all.
    """
    groups: dict[tuple[str, str], list[Damage]] = {}
    for d in damage:
        groups.setdefault((d.column, d.kind), []).append(d)
    lines = []
    for (column, kind), items in groups.items():
        rows = ", ".join(f"row {d.row}: {d.base_value} → {d.file_value}" for d in items[:examples])
        first = f" (e.g. {rows})" if rows else f" (first: row {items[0].row})"
        n = len(items)
        if kind == REFORMATTED:
            lines.append(f"{column}: {n} cell(s) look reformatted by a spreadsheet{first}; kept as exported")
        elif kind == CHARS_REPLACED:
            lines.append(f"{column}: {n} cell(s) have '?' in place of characters{first}: the file was saved "
                         "in an encoding that cannot hold them; kept as exported. Save as \"CSV UTF-8\" "
                         "next time")
        else:
            lines.append(f"{column}: {n} cell(s) lost digits to a spreadsheet's number format{first}: format "
                         "the column as Text and re-save, or re-export")
    return lines


LOST_MESSAGE = ("the column was saved as a number by a spreadsheet and this cell lost digits of its "
                "exported value")
LOST_HINT = "format the column as Text and re-save, or re-export"
