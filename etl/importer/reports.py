"""The import's files for people: plan, results and rejects (CSV, owner-only, atomic).

They hold client values (the admin's own data), so they are written 0600 like exports;
nothing here is ever logged.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from ..codec import damage
from ..codec.model import Problem
from ..codec.text import guard
from ..state.files import atomic_path, make_private_dirs
from .diff import RowPlan

REPORT_COLUMNS = ["row", "column", "value", "check", "severity", "message", "hint"]
PLAN_COLUMNS = ["row", "ClientId", "action", "field", "old", "new", "base", "note"]
RESULT_COLUMNS = ["row", "ClientId", "status", "fields", "message", "run"]


@dataclass(slots=True)   # one per unchanged row too: no per-instance dict (issue 14, memory)
class RowResult:
    row: int
    client_id: int | None
    status: str      # created/updated/unchanged/skipped/conflict/failed/pending
    fields: tuple[str, ...] = ()
    message: str = ""


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    """A UTF-8 (BOM, for Excel) CSV written atomically, owner-only."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for r in rows:   # values are the admin's data: guarded as in exports
                writer.writerow(["" if v is None else guard(v) if isinstance(v, str) and v else v for v in r])
    return Path(path)


def plan_lines(plans: list[RowPlan]) -> Iterable[list[Any]]:
    """One line per field change, conflict, tag call, ignored column or kept cell; one for a bare row."""
    for p in plans:
        note = p.message
        wrote = False
        for c in p.changes:
            wrote = True
            yield [p.row, p.client_id, p.action, c.field, plan_cell(c.old), plan_cell(c.new), "", note]
        for c in p.conflicts:
            wrote = True
            yield [p.row, p.client_id, p.action, c.field, plan_cell(c.live), plan_cell(c.file), plan_cell(c.base),
                   c.note or "conflict: changed in the file and in IntakeQ (old = IntakeQ now)"]
        for t in p.tag_adds:
            wrote = True
            yield [p.row, p.client_id, p.action, "Tags", "", t, "", "add tag"]
        for t in p.tag_removes:
            wrote = True
            yield [p.row, p.client_id, p.action, "Tags", t, "", "", "remove tag"]
        for i in p.ignored:
            wrote = True
            yield [p.row, p.client_id, p.action, i.field, plan_cell(i.old), plan_cell(i.new), "",
                   "read-only column: ignored, never sent"]
        for d in p.damage:
            wrote = True
            yield [p.row, p.client_id, p.action, d.column, plan_cell(d.base_value), plan_cell(d.file_value),
                   plan_cell(d.base_value), DAMAGE_NOTES[d.kind]]
        for k in p.kept:
            wrote = True
            yield [p.row, p.client_id, p.action, k.field, plan_cell(k.written), plan_cell(k.file), plan_cell(k.file),
                   f"kept: changed by an earlier import ({_day(k.at)}); --prefer file sets it back"]
        if not wrote and p.action != "unchanged":
            yield [p.row, p.client_id, p.action, "", "", "", "", note]


DAMAGE_NOTES = {
    damage.REFORMATTED: "kept as exported: the cell looks reformatted by a spreadsheet",
    damage.CHARS_REPLACED: "kept as exported: '?' in place of characters (save as CSV UTF-8)",
    damage.LOST: "error: a spreadsheet's number format lost digits of the exported value",
}


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


SOURCE_COLUMN = "source_column"     # a mapped import's plan: the file's column each field came from
UNKNOWN_NOTE = "not an IntakeQ field: never sent"


def write_plan(path: Path, plans: list[RowPlan], *, sources: dict | None = None, unknown_columns=()) -> Path:
    """The plan file. With ``--map`` (``sources``: field -> source column) each line also
    names the source column; columns that are no IntakeQ field get one line each."""
    lines = [*plan_lines(plans), *([None, None, "ignored", c, "", "", "", UNKNOWN_NOTE] for c in unknown_columns)]
    if not sources:
        return write_csv(path, PLAN_COLUMNS, lines)
    field_at = PLAN_COLUMNS.index("field")
    return write_csv(path, [*PLAN_COLUMNS, SOURCE_COLUMN],
                     ([*line, sources.get(line[field_at], "")] for line in lines))


def write_results(path: Path, results: Iterable[RowResult], run: str | None = None, *,
                  sources: dict | None = None) -> Path:
    """One line per row; ``run``: the run id (``intakeq-etl undo`` takes the file for it); with
    ``--map``, a last column names the source column of each field."""
    rows = sorted(results, key=lambda r: r.row)
    if not sources:
        return write_csv(path, RESULT_COLUMNS, ([r.row, r.client_id, r.status, "; ".join(r.fields), r.message, run]
                                                for r in rows))
    return write_csv(path, [*RESULT_COLUMNS, "source_columns"], (
        [r.row, r.client_id, r.status, "; ".join(r.fields), r.message, run,
         "; ".join(sources.get(f, f) for f in r.fields)] for r in rows))


def run_of_results(path: Path) -> str | None:
    """The run id a results file names (its ``run`` column), or None."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for line in csv.DictReader(fh):
            if line.get("run"):
                return line["run"]
    return None


def write_results_or_elsewhere(paths, results: Iterable[RowResult], account_dir: Path,
                               say: Callable[[str], None], *, run: str | None = None,
                               sources: dict | None = None) -> Path:
    """Write the results file where ``paths.results`` says or, when that fails (a full
    disk, a read-only folder), into the account's state dir; say where.

    After writes were sent the results are the only per-row account of what happened: never
    lose them to the folder of the input. ``paths.results`` is updated to where they are.
    """
    results = list(results)
    try:
        return write_results(paths.results, results, run, sources=sources)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    elsewhere = Path(account_dir) / "results" / f"{paths.results.stem}-{stamp}.csv"
    make_private_dirs(elsewhere.parent)
    write_results(elsewhere, results, run, sources=sources)
    say(f"warning: the results file could not be written to {paths.results} ({reason}); "
        f"it was written to {elsewhere} instead")
    paths.results = elsewhere
    return elsewhere


def write_rejects(path: Path, frame: pd.DataFrame, problems_by_row: dict[int, list[str]]) -> Path:
    """``frame`` is indexed by spreadsheet row (``diff.by_spreadsheet_row``).

    The invalid rows of a --skip-invalid import, in the export's CSV format, with a
    ``row`` and ``problems`` columns first: fix the rows, delete those two columns, import
    the file again."""
    from ..codec import write_table

    rejects = frame.copy()
    rejects.insert(0, "problems", ["; ".join(problems_by_row.get(int(row), [])) for row in frame.index])
    rejects.insert(0, "row", [int(row) for row in frame.index])
    write_table(rejects.reset_index(drop=True), path, format="csv")
    return Path(path)


def plan_cell(v) -> Any:
    if v is None:
        return ""
    if isinstance(v, (list, tuple, set, frozenset)):
        return "; ".join(str(t) for t in v)
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


def write_report(problems: list[Problem], path, *, formula_guard: bool = True) -> None:
    """The validation report (validate --report, import) as CSV (UTF-8 with BOM, mode 0600).
    Values are guarded like exports."""
    with atomic_path(path, parents=True) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\r\n")
            writer.writerow(REPORT_COLUMNS)
            for p in problems:
                value = "" if p.value is None else str(p.value)
                if formula_guard and value:
                    value = guard(value)
                writer.writerow(["" if p.row is None else p.row, p.column or "", value, p.check,
                                 p.severity, p.message, p.hint])
