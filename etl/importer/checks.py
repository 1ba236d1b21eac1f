"""The checks an import makes on a file's edits before any request, shared with ``validate``.

``validate`` and ``import`` call :func:`edit_problems` on the same edits (the file
against its base), so a file that ``validate`` calls valid is never refused by an
import before the first request, and both say it in the same words:

* two rows for one client (the same ClientId, or a new row matching the client of
  another row by first name + email or phone, as IntakeQ would match it);
* two new rows that IntakeQ would merge into one client (same first name + email, or
  first name + phone);
* cells whose digits a spreadsheet's number format lost (an error), and cells a
  spreadsheet only reformatted (a warning: the exported value stays);
* a text cell in scientific notation (``4.42079E+11``) that would be sent (in a new row,
  or an edit that is not recognised damage of its exported value): an error, since no
  one types a phone, policy number or id that way: a spreadsheet saved it as a number;
* a new row whose text cell is in a spreadsheet's float form (``2134.0``): a warning,
  since there is no exported value to repair it from;
* a ``custom.<id>`` column for a field the account does not have
  (:func:`custom_field_problems`; ``import`` also checks it against live without a base).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from .. import fields as F
from ..codec import damage as DMG
from ..codec.model import ERROR, WARNING, Problem
from . import diff as D

DAMAGE_CHECKS = {
    DMG.LOST: "spreadsheet_lost_digits",
    DMG.REFORMATTED: "spreadsheet_reformatted",
    DMG.CHARS_REPLACED: "spreadsheet_encoding",
}


def edit_problems(edits: Iterable[D.RowEdit]) -> list[Problem]:
    """Every problem the edits show without the API: errors first, then warnings."""
    edits = list(edits)
    problems = [*same_client_problems(edits), *damage_problems(edits), *scientific_notation_problems(edits),
                *number_form_problems(edits)]
    return sorted(problems, key=lambda p: (p.severity != ERROR, p.row or 0))


def same_client_problems(items) -> list[Problem]:
    """Rows that resolve to one client (``items``: RowEdits, or RowPlans once live matched)."""
    items = list(items)
    # Two rows with one ClientId typed in are the schema's duplicate_client_id already.
    typed = {i.row for i in items if isinstance(i, D.RowEdit) and i.client_id is not None and not i.matched_by}
    pairs = [pair for pair in D.same_client_rows(items) if not {pair[0], pair[1]} <= typed]
    pairs += D.same_new_client_rows(items)
    return [Problem(second, "ClientId", None, "same_client_rows",
                    f"rows {first} and {second} are the same client ({what}; a row without ClientId "
                    "matches a client by first name + email or phone): keep one of them")
            for first, second, what in pairs]


def damage_problems(items) -> list[Problem]:
    """One problem per damaged cell: an error where digits were lost, else a warning."""
    out = []
    for item in items:
        for d in item.damage:
            if d.kind == DMG.LOST:
                out.append(Problem(d.row, d.column, d.file_value, DAMAGE_CHECKS[d.kind], DMG.LOST_MESSAGE,
                                   DMG.LOST_HINT))
            else:
                note = ("looks reformatted by a spreadsheet" if d.kind == DMG.REFORMATTED
                        else "has '?' in place of characters its encoding could not hold")
                out.append(Problem(d.row, d.column, d.file_value, DAMAGE_CHECKS[d.kind],
                                   f"the cell {note}; the exported value is kept, nothing is sent for it",
                                   "save as CSV UTF-8, with the column formatted as Text", severity=WARNING))
    return out


def number_form_problems(edits: Iterable[D.RowEdit]) -> list[Problem]:
    """Text cells of new rows in a spreadsheet's float form (nothing to repair them from)."""
    return [Problem(e.row, col, value, "number_form_in_new_row",
                    "a text cell in a spreadsheet's number form (like 2134.0); it would be "
                    "sent as it is", "format the column as Text and type the value again", severity=WARNING)
            for e in edits if e.client_id is None
            for col, value in e.values.items()
            if F.kind_of(col) == "text" and DMG.looks_like_number_form(value)
            and not DMG.is_scientific(value)]


SCIENTIFIC_MESSAGE = ("a text cell in scientific notation (like 4.42079E+11): a spreadsheet saved it as a "
                      "number, and it would be sent as it is")
SCIENTIFIC_HINT = "format the column as Text and type the value again, or re-export"


def scientific_notation_problems(items) -> list[Problem]:
    """Text cells in scientific notation that would be sent: an error (never written as text).

    ``items`` are RowEdits (the cells a new row or an edit gives; damage of an exported
    value is out already), or RowPlans (the changes decided against live: a file without
    a base, whose damage check needs live data).
    """
    return [Problem(row, col, value, "scientific_notation", SCIENTIFIC_MESSAGE, SCIENTIFIC_HINT)
            for row, col, value in _cells_to_send(items)
            if F.kind_of(col) == "text" and DMG.is_scientific(value)]


def _cells_to_send(items):
    """(row, column, value) of every cell the items would send, as far as known yet."""
    for item in items:
        if isinstance(item, D.RowPlan):
            yield from ((item.row, c.field, c.new) for c in item.changes if not c.derived)
        elif item.values and (item.client_id is None or item.base is not None):
            # A two-way edit of a client (no base) is decided against live: its plan says.
            yield from ((item.row, col, value) for col, value in item.values.items())


# Schema warnings that a recognised spreadsheet damage of the same cell already explains.
EXPLAINED_BY_DAMAGE = frozenset({"postal_code_lost_zero"})


def drop_explained(schema_problems: Iterable[Problem], edit_problems: Iterable[Problem]) -> list[Problem]:
    """The schema's problems less those a damage finding says better, once per cell: a
    postal code that lost its zero is also damage of its exported value, kept as exported."""
    damaged = {(p.row, p.column) for p in edit_problems if p.check in DAMAGE_CHECKS.values()}
    return [p for p in schema_problems if not (p.check in EXPLAINED_BY_DAMAGE and (p.row, p.column) in damaged)]


def errors_of(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def warning_lines(problems: Iterable[Problem], *, examples: int = 3) -> list[str]:
    """One line per check (and column): its message, a count and the first rows."""
    groups: dict[tuple[str, str | None, str], list[Problem]] = defaultdict(list)
    for p in problems:
        if p.severity != ERROR:
            groups[(p.check, p.column, p.message)].append(p)
    lines = []
    for (check, column, message), items in groups.items():
        rows = [p.row for p in items if p.row is not None]
        shown = ", ".join(str(r) for r in rows[:examples]) + (", …" if len(rows) > examples else "")
        where = f"{column}: " if column else ""
        count = f"{len(items)} row(s)" + (f" (rows {shown})" if rows else "")
        lines.append(f"{where}{message} [{check}]" + (f": {count}" if rows else ""))
    return lines


def custom_field_problems(columns, known: dict | None) -> list[Problem]:
    """A ``custom.<id>`` column for a field the account does not have: IntakeQ would take
    the save and drop the value without a word, so it is an error before any request.

    ``known`` maps FieldId → label (the base export's, or live's); None: unknown, no check.
    """
    if known is None:
        return []
    listed = ", ".join(f"custom.{fid}" + (f" ({label})" if label else "") for fid, label in sorted(known.items()))
    return [Problem(None, col, None, "custom_field_unknown",
                    f"the account has no custom field with this id (its fields: {listed or 'none'})",
                    "rename the column to one of the account's fields, or remove it")
            for col in columns if F.is_custom(col) and F.custom_field_id(col) not in known]
