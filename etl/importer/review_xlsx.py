"""The review workbook (``clients.plan.xlsx``) of a :class:`~etl.importer.review.ReviewModel`.

Sheets: **Summary** (label, value); **Changes** (one row per client that changes, one
column per changed field: the new value filled green with IntakeQ's current value in a
comment, a conflict filled red with export / file / IntakeQ in the comment, a new
client's action cell blue); **Kept** (cells not sent: earlier imports, spreadsheet
damage, read-only columns); **Problems** (validation warnings, rows not found), only
when there are some. Every sheet: bold frozen header, filters on, widths set; every
value a text cell, formula-guarded as in exports (``etl.codec.xlsx_io``).
"""
from __future__ import annotations

from pathlib import Path

from ..codec.xlsx_io import sheet_text, text_cell
from ..state.files import atomic_path
from .review import CONFLICT, CREATE, TAGS, ReviewModel

CHANGE_FILL = "C6EFCE"      # green: a value to send
CONFLICT_FILL = "FFC7CE"    # red: changed in the file and in IntakeQ, not sent
CREATE_FILL = "BDD7EE"      # blue: a new client
TAGS_FILL = "FFEB9C"        # yellow: tag calls
HEADER_FILL = "D9D9D9"
COMMENT_AUTHOR = "intakeq-etl"
MAX_WIDTH = 60


def write_workbook(path: Path, model: ReviewModel) -> Path:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    _sheet(wb, "Summary", ["what", "value"], [[label, value] for label, value in model.summary], freeze="B2")
    _changes_sheet(wb, model)
    _sheet(wb, "Kept", ["row", "ClientId", "name", "field", "kept value", "file value", "why"],
           [[k.row, k.client_id, k.name, k.field, k.kept, k.file, k.why] for k in model.kept])
    if model.problems:
        _sheet(wb, "Problems", ["row", "column", "value", "check", "severity", "message"],
               [[p.row, p.column, p.value, p.check, p.severity, p.message] for p in model.problems])
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return Path(path)


def _changes_sheet(wb, model: ReviewModel) -> None:
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill

    fills = {kind: PatternFill("solid", fgColor=color) for kind, color in
             (("change", CHANGE_FILL), (CONFLICT, CONFLICT_FILL), (CREATE, CREATE_FILL), (TAGS, TAGS_FILL))}
    header = ["ClientId", "name", "action", "row", *map(model.heading, model.fields), "note"]
    ws = wb.create_sheet("Changes")
    rows = []
    for client in model.clients:
        action = text_cell(ws, sheet_text(client.action))
        if client.action in (CREATE, CONFLICT):
            action.fill = fills[client.action]
        row = [_plain(ws, client.client_id), _plain(ws, client.name), action, _plain(ws, client.row)]
        for name in model.fields:
            cell = client.cell(name)
            if cell is None:
                row.append(None)
                continue
            style = {"fill": fills[cell.kind]}
            if cell.kind != CREATE:        # a new client's cells have nothing old to tell (and comments are slow)
                style["comment"] = Comment(sheet_text(cell.comment, formula_guard=False), COMMENT_AUTHOR,
                                           width=300, height=120)
            row.append(text_cell(ws, sheet_text(cell.new), **style))
        row.append(_plain(ws, client.note))
        rows.append(row)
    _fill(ws, header, rows, freeze="C2")


def _sheet(wb, title: str, header: list[str], values: list[list], *, freeze: str = "A2") -> None:
    ws = wb.create_sheet(title)
    _fill(ws, header, [[_plain(ws, v) for v in row] for row in values], freeze=freeze)


def _fill(ws, header: list[str], rows: list[list], *, freeze: str) -> None:
    """Header (bold, grey, frozen), widths, then the rows, filters on: a write-only sheet
    takes its widths before its first row."""
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            value = getattr(cell, "value", None)
            if value is not None:
                longest = max(len(line) for line in str(value).split("\n"))
                widths[i] = max(widths[i], min(longest, MAX_WIDTH))
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = float(min(max(width + 2, 8), MAX_WIDTH))
    ws.freeze_panes = freeze
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"
    bold, grey = Font(bold=True), PatternFill("solid", fgColor=HEADER_FILL)
    ws.append([text_cell(ws, sheet_text(h), font=bold, fill=grey) for h in header])
    for row in rows:
        ws.append(row)


def _plain(ws, value):
    """A cell of its own: a number (row, ClientId) as a number, anything else as guarded text."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return text_cell(ws, sheet_text(str(value)))
