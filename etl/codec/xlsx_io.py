"""XLSX (openpyxl): text-like columns as text cells, header bold and frozen, readable widths.

Writing: numbers (ints, floats) and booleans are real cells; every other column (text,
dates, instants, tags, linked) is written as inline text cells, and its column is
formatted as Text (``@``) so a value typed in later stays text. A string is never
written as a formula, guard or not. Characters XML cannot carry (CR, control characters)
are escaped the way Excel does (``_x000D_``; a literal ``_xHHHH_`` is written
``_x005F_xHHHH_``) and unescaped on reading.

Reading: whatever Excel left in a cell (int 123, float 123.0, datetime, bool) is turned
back into text, then coerced exactly like a CSV cell. The sheet read is the one whose
header has ``ClientId`` (for a file from elsewhere, the only sheet with a header), or
``sheet=``; several candidates stop the read rather than guess. Cells whose value the
file does not hold — the hidden part of a merged range, a formula never calculated
(a file written by a script, not saved by a spreadsheet) — are "unknown", not blank: see
``Table.unknown``. The export id an export put in the workbook's custom properties is
``Table.export_id``.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import InputError
from ..state.files import atomic_path
from .export_id import set_xlsx_property, xlsx_property
from .files import check_header, write_kind
from .model import WARNING, Problem, Table
from .text import coerce_columns, format_column, guard

SHEET_TITLE = "clients"
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")
_NEEDS_ESCAPE = re.compile(r"[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")
_TEXT_KINDS = ("text", "tags", "linked", "date", "instant")


def xml_escape(text: str) -> str:
    """Excel's ST_Xstring escaping for characters an XML cell cannot hold."""
    if not _NEEDS_ESCAPE.search(text):
        return text
    return _NEEDS_ESCAPE.sub(lambda m: "_x{:04X}_".format(ord(m.group(0))), text)


def xml_unescape(text: str) -> str:
    if "_x" not in text:
        return text
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


def sheet_text(value: str, *, formula_guard: bool = True) -> str:
    """A string as a workbook cell holds it: guarded (one leading ``'`` before a formula
    trigger, as in exports) and XML-escaped."""
    return xml_escape(guard(value) if formula_guard else value)


def text_cell(ws, value: str, **style):
    """A write-only text cell (Text format) holding ``value`` as it is: never a formula,
    even when it starts with ``=`` (the setter is bypassed). ``style``: ``fill``, ``font``,
    ``comment``, ... set on the cell."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws)
    cell._value = value  # bypass the setter: a string is never a formula here
    cell.data_type = "s"
    cell.number_format = "@"
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _width(header: str, values) -> float:
    longest = max([len(header)] + [len(v) for v in values[:500] if isinstance(v, str)])
    return float(min(max(longest + 2, 8), 60))


def write_xlsx(df: pd.DataFrame, path, *, formula_guard: bool = True, kinds=None,
               sheet_title: str = SHEET_TITLE, export_id: str | None = None) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    if export_id:
        set_xlsx_property(wb, export_id)
    ws = wb.create_sheet(sheet_title)
    ws.freeze_panes = "A2"
    columns: list[list] = []
    text_cols: list[bool] = []
    for i, name in enumerate(df.columns):
        kind = write_kind(name, df[name], kinds)
        series = df[name]
        if kind in _TEXT_KINDS:
            values = format_column(series, kind, formula_guard=formula_guard).tolist()
            values = [xml_escape(v) if v else None for v in values]
            text_cols.append(True)
        elif kind in ("int", "enum"):
            values = [None if v is pd.NA else int(v) for v in pd.array(series, dtype="Int64").tolist()]
            text_cols.append(False)
        elif kind == "float":
            values = [None if v is pd.NA else float(v) for v in pd.array(series, dtype="Float64").tolist()]
            text_cols.append(False)
        else:  # bool
            values = [None if v is pd.NA else bool(v) for v in pd.array(series, dtype="boolean").tolist()]
            text_cols.append(False)
        columns.append(values)
        letter = get_column_letter(i + 1)
        dim = ws.column_dimensions[letter]
        dim.width = _width(str(name), [v for v in values if isinstance(v, str)] or [str(v) for v in values[:50]])
        if text_cols[-1]:
            dim.number_format = "@"
    bold = Font(bold=True)
    header = []
    for name in df.columns:
        cell = WriteOnlyCell(ws, value=xml_escape(str(name)))
        cell.data_type = "s"
        cell.font = bold
        header.append(cell)
    ws.append(header)

    risky = [j for j, is_text in enumerate(text_cols) if is_text]
    for r in range(len(df)):
        row = [col[r] for col in columns]
        for j in risky:
            v = row[j]
            if v is not None and v[:1] == "=":
                row[j] = text_cell(ws, v)
        ws.append(row)
    with atomic_path(path, parents=True) as tmp:
        wb.save(tmp)


def _cell_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return xml_unescape(v)
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e16:
            return str(int(v))
        return repr(v)
    if isinstance(v, datetime):
        if v.time() == time(0):
            return v.strftime("%Y-%m-%d") if v.year >= 1000 else v.date().isoformat()
        return v.isoformat()
    if isinstance(v, (date, time)):
        return v.isoformat()
    return str(v)


MERGED = "a merged cell: left as it is in IntakeQ"
NO_SAVED_VALUE = "a formula with no saved value: left as it is in IntakeQ"
_UNKNOWN_CHECKS = {MERGED: "xlsx_merged_cell", NO_SAVED_VALUE: "xlsx_formula_without_value"}


def read_xlsx(path, *, date_format=None, formula_guard: bool = True, kinds=None,
              sheet: str | None = None) -> Table:
    from openpyxl import load_workbook

    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    fh = open(path, "rb")  # a file object: openpyxl then ignores the extension (--format xlsx)
    try:
        wb = load_workbook(fh, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, InvalidFileException, KeyError, ...
        fh.close()
        raise InputError(f"{path}: not a readable XLSX workbook ({type(exc).__name__}); "
                         "is it really an .xlsx file? Save it from the spreadsheet as "
                         "Excel Workbook (.xlsx) or CSV UTF-8") from None
    try:
        ws = choose_sheet(path, wb, sheet)
        sheet_cells = _read_sheet(path, ws, epoch=wb.epoch)
        marked = _unknown_cells(wb, ws)
        export_id = xlsx_property(wb)
    finally:
        wb.close()
        fh.close()
    names, cells, row_numbers, date_numbers = sheet_cells
    drop = check_header(path, names)
    for j in drop:
        if any(t.strip() for t in cells[j]):
            raise InputError(f"{path}: column {j + 1} has values but no header name")
    unknown, unknown_problems = _unknown_in_table(marked, names, set(row_numbers))
    keep = [j for j in range(len(names)) if j not in drop]
    names = [names[j] for j in keep]
    arrays = [pa.array(cells[j], pa.string()) for j in keep]
    rows_np = np.array(row_numbers, dtype=np.int64)
    frame, problems = coerce_columns(names, arrays, row_numbers=rows_np, kinds=kinds,
                                     formula_guard=formula_guard, date_format=date_format)
    return Table(frame=frame, path=path, format="xlsx", problems=problems + unknown_problems,
                 row_numbers=rows_np, columns_in_file=names, sheet=ws.title, unknown=unknown,
                 date_numbers=date_numbers, export_id=export_id)


def choose_sheet(path, wb, wanted: str | None):
    """The sheet to read: ``wanted``, else the one whose header has ClientId, else (a file
    from elsewhere) the only one with a header. Several candidates: an error naming them,
    since reading the wrong one would write the wrong data."""
    sheets = wb.worksheets
    if not sheets:
        raise InputError(f"{path}: the workbook has no sheets")
    titles = ", ".join(repr(ws.title) for ws in sheets)
    if wanted is not None:
        found = [ws for ws in sheets if ws.title == wanted]
        if not found:
            raise InputError(f"{path}: no sheet named {wanted!r} (its sheets: {titles})")
        return found[0]
    headers = {ws.title: _header_names(ws) for ws in sheets}
    with_id = [ws for ws in sheets if "ClientId" in headers[ws.title]]
    candidates = with_id or [ws for ws in sheets if any(headers[ws.title])]
    if len(candidates) > 1:
        what = "have a ClientId column" if with_id else "have data (and none a ClientId column)"
        raise InputError(f"{path}: the sheets {', '.join(repr(ws.title) for ws in candidates)} all {what}; "
                         "nothing was read: pass --sheet NAME to say which one to read")
    return candidates[0] if candidates else sheets[0]


def _header_names(ws) -> list[str]:
    for row in ws.iter_rows(min_row=1, max_row=1, values_only=True):
        return [_cell_text(v).strip() for v in row]
    return []


def _read_sheet(path, ws, *, epoch):
    """The sheet's header names, its cells as text by column, the spreadsheet row of each
    kept row (blank rows are skipped) and the number cells of custom.* columns."""
    rows = ws.iter_rows(values_only=True)
    header_row = next(rows, None)
    if header_row is None or all(v is None or str(v).strip() == "" for v in header_row):
        raise InputError(f"{path}: the sheet {ws.title!r} has no header row (the first row "
                         "must hold the column names)")
    names = [_cell_text(v).strip() for v in header_row]
    while names and names[-1] == "":
        names.pop()
    ncols = len(names)
    custom = [j for j, name in enumerate(names) if name.startswith("custom.")]
    date_numbers: dict[str, dict[int, str | None]] = {}
    cells: list[list[str]] = [[] for _ in range(ncols)]
    row_numbers = []
    for number, row in enumerate(rows, start=2):
        texts = [_cell_text(v) for v in row]
        if len(texts) > ncols:
            extra = [j for j in range(ncols, len(texts)) if texts[j].strip()]
            if extra:
                raise InputError(f"{path}: row {number} has a value in column {extra[0] + 1}, "
                                 "which has no header name")
            texts = texts[:ncols]
        if not any(t.strip() for t in texts):
            continue  # a blank row
        texts += [""] * (ncols - len(texts))
        for j in range(ncols):
            cells[j].append(texts[j])
        for j in custom:
            if j < len(row) and _is_number(row[j]):
                date_numbers.setdefault(names[j], {})[number] = serial_date(row[j], epoch)
        row_numbers.append(number)
    return names, cells, row_numbers, date_numbers


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def serial_date(value, epoch) -> str | None:
    """The yyyy-MM-dd a spreadsheet date serial stands for (the workbook's 1900 or 1904
    epoch); None when it is not a whole number of a plausible date (1900-2199)."""
    from openpyxl.utils.datetime import from_excel

    if not float(value).is_integer() or value < 1:
        return None
    try:
        day = from_excel(value, epoch)
    except (OverflowError, ValueError):
        return None
    return day.strftime("%Y-%m-%d") if 1900 <= day.year <= 2199 else None


# Cells that read as empty without being empty: the sheet's XML tells them apart, and
# openpyxl's read-only mode does not expose it, so the XML is scanned (quickly ruled
# out for files without formulas or merges: every export of ours).
_MARKERS = re.compile(rb"<(?:\w+:)?(?:f|mergeCell)[\s>/]")


def _unknown_cells(wb, ws) -> list[tuple[int, int, str]]:
    """(row, column number, why) of every cell whose value the sheet does not hold."""
    part = getattr(ws, "_worksheet_path", None)
    archive = getattr(wb, "_archive", None)
    if part is None or archive is None:
        return []
    with archive.open(part) as src:
        if not _has_markers(src):
            return []
    with archive.open(part) as src:
        return _scan_sheet_xml(src)


def _has_markers(src, chunk: int = 1 << 20) -> bool:
    tail = b""
    for block in iter(lambda: src.read(chunk), b""):
        if _MARKERS.search(tail + block):
            return True
        tail = block[-32:]
    return False


def _scan_sheet_xml(src) -> list[tuple[int, int, str]]:
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils.cell import coordinate_to_tuple, range_boundaries

    found: list[tuple[int, int, str]] = []
    for _, element in iterparse(src, events=("end",)):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "c":
            if _formula_without_value(element) and element.get("r"):
                found.append((*coordinate_to_tuple(element.get("r")), NO_SAVED_VALUE))
            element.clear()
        elif tag == "row":
            element.clear()
        elif tag == "mergeCell" and element.get("ref"):
            min_col, min_row, max_col, max_row = range_boundaries(element.get("ref"))
            found += [(r, c, MERGED) for r in range(min_row, max_row + 1)
                      for c in range(min_col, max_col + 1) if (r, c) != (min_row, min_col)]
    return found


def _formula_without_value(cell) -> bool:
    """A formula cell with no saved result: no ``<v>``, or an empty one that is not a text
    result (a script like openpyxl writes ``<v/>``; Excel saves an empty text result as
    ``t="str"`` with an empty ``<v>``)."""
    children = {child.tag.rsplit("}", 1)[-1]: child for child in cell}
    if "f" not in children:
        return False
    value = children.get("v")
    return value is None or (not (value.text or "") and cell.get("t") != "str")


def _unknown_in_table(marked, names, rows_read) -> tuple[frozenset, list[Problem]]:
    """The unknown cells of rows and named columns read, and one warning each (an error
    in ClientId: the row's client is unknown, it must not become a new client)."""
    unknown, problems = set(), []
    for row, col, why in sorted(marked):
        if row not in rows_read or col > len(names) or not names[col - 1]:
            continue
        name = names[col - 1]
        unknown.add((row, name))
        if name == "ClientId":
            problems.append(Problem(row, name, None, _UNKNOWN_CHECKS[why],
                                    f"the ClientId cell is {why.split(':')[0]}: the row's client is unknown",
                                    "unmerge the cells and type the ClientId, or save the file in a "
                                    "spreadsheet so formulas get their values"))
        else:
            problems.append(Problem(row, name, None, _UNKNOWN_CHECKS[why], why,
                                    "unmerge the cells and type the value, or save the file in a "
                                    "spreadsheet so formulas get their values", severity=WARNING))
    return frozenset(unknown), problems
