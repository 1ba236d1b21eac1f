"""XLSX (openpyxl): text-like columns as text cells, header bold and frozen, readable widths.

Writing: numbers (ints, floats) and booleans are real cells; every other column (text,
dates, instants, tags, linked) is written as inline text cells, and its column is
formatted as Text (``@``) so a value typed in later stays text. A string is never
written as a formula, guard or not. Characters XML cannot carry (CR, control characters)
are escaped the way Excel does (``_x000D_``; a literal ``_xHHHH_`` is written
``_x005F_xHHHH_``) and unescaped on reading.

Reading: whatever Excel left in a cell (int 123, float 123.0, datetime, bool) is turned
back into text, then coerced exactly like a CSV cell.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import InputError
from ..files import atomic_path
from .files import check_header, write_kind
from .model import Table
from .text import coerce_columns, format_column

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


def _width(header: str, values) -> float:
    longest = max([len(header)] + [len(v) for v in values[:500] if isinstance(v, str)])
    return float(min(max(longest + 2, 8), 60))


def write_xlsx(df: pd.DataFrame, path, *, formula_guard: bool = True, kinds=None,
               sheet_title: str = SHEET_TITLE) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
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

    def text_cell(value):
        cell = WriteOnlyCell(ws)
        cell._value = value  # bypass the setter: a string is never a formula here
        cell.data_type = "s"
        cell.number_format = "@"
        return cell

    risky = [j for j, is_text in enumerate(text_cols) if is_text]
    for r in range(len(df)):
        row = [col[r] for col in columns]
        for j in risky:
            v = row[j]
            if v is not None and v[:1] == "=":
                row[j] = text_cell(v)
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


def read_xlsx(path, *, date_format=None, formula_guard: bool = True, kinds=None) -> Table:
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
        if not wb.worksheets:
            raise InputError(f"{path}: the workbook has no sheets")
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header_row = None
        for header_row in rows:
            break
        if header_row is None or all(v is None or str(v).strip() == "" for v in header_row):
            raise InputError(f"{path}: the sheet {ws.title!r} has no header row (the first row "
                             "must hold the column names)")
        names = [_cell_text(v).strip() for v in header_row]
        while names and names[-1] == "":
            names.pop()
        ncols = len(names)
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
            row_numbers.append(number)
    finally:
        wb.close()
        fh.close()
    drop = check_header(path, names)
    for j in drop:
        if any(t.strip() for t in cells[j]):
            raise InputError(f"{path}: column {j + 1} has values but no header name")
    keep = [j for j in range(ncols) if j not in drop]
    names = [names[j] for j in keep]
    arrays = [pa.array(cells[j], pa.string()) for j in keep]
    rows_np = np.array(row_numbers, dtype=np.int64)
    frame, problems = coerce_columns(names, arrays, row_numbers=rows_np, kinds=kinds,
                                     formula_guard=formula_guard, date_format=date_format)
    return Table(frame=frame, path=path, format="xlsx", problems=problems,
                 row_numbers=rows_np, columns_in_file=names)
