"""Validate a file without any API call: the library entry point of ``intakeq-etl validate``.

:func:`validate_file` reads a clients (or diagnoses) file, checks it against the schema
and, given the export it came from, makes the checks an import makes before its first
request (``etl.importer.checks``), so a file called valid here is not refused by import.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .codec import Problem


def _looks_like_diagnoses(columns) -> bool:
    cols = set(columns)
    return {"Code", "NoteId"} <= cols and not ({"FirstName", "LastName", "Email"} & cols)


def validate_file(path, *, format=None, encoding=None, date_format=None, tz="UTC",
                  formula_guard=True, base=None, sheet=None, mapping=None, ignore_columns=(), labels=None):
    """Read and validate a file; returns (Table, problems, table name). Library entry point.

    ``mapping`` (an ``etl.importer.mapping.Mapping``), ``ignore_columns`` and ``labels`` (the
    account's custom fields, FieldId → label, None when unknown) read a clients file as
    ``import --map`` does; a column that is no IntakeQ field is an error when the file has no
    base or holds new rows, else a warning (as in ``import``).

    ``base`` is the export the file came from: an :class:`etl.importer.base.Base`, or a function
    that finds it from the file as read (``find_base_frame``), or None. With it, the file's
    edits get the checks an import makes before its first request (:mod:`etl.importer.checks`),
    and a ``custom.*`` column for a field the account lacks is an error, as in
    ``import``: a file called valid here is not refused by ``import``.
    """
    from . import fields
    from .importer import mapping as M

    mapped = M.read_mapped(path, mapping, labels=labels, ignore=ignore_columns, format=format, encoding=encoding,
                           date_format=date_format, formula_guard=formula_guard, tz=tz, sheet=sheet)
    table = mapped.table
    if mapping is None and _looks_like_diagnoses(table.frame.columns):
        from etl.schemas.diagnoses import validate_diagnoses

        from .codec import read_table

        table = read_table(path, format=format, encoding=encoding, date_format=date_format,
                           formula_guard=formula_guard, tz=tz, kinds=fields.DIAGNOSIS_KINDS, sheet=sheet)
        problems = list(table.problems) + validate_diagnoses(table.frame,
                                                             row_numbers=table.row_numbers)
        return table, problems, "diagnoses"
    from etl.schemas.clients import validate_table

    from .importer import checks

    schema = M.relabel([p for p in validate_table(table) if p.check != "probable_typo_column"], mapped.sources)
    unknown, edit_problems = _edit_problems(table, base, labels)
    return table, unknown + checks.drop_explained(schema, edit_problems) + edit_problems, "clients"


def _edit_problems(table, base, labels) -> tuple[list[Problem], list[Problem]]:
    """(the unknown-columns problem, if any; the checks import makes on the edits)."""
    from .codec.serials import resolve_date_numbers
    from .importer import checks
    from .importer import diff as D
    from .importer import mapping as M

    frame = table.frame.set_axis(D.by_spreadsheet_row(table))     # as import reads it
    if callable(base):
        base = base(frame)
    base_frame = base.frame if base is not None else None
    found = M.unknown_columns_problem(frame.columns, base.custom_fields if base is not None else labels,
                                      fatal=base_frame is None or M.has_new_rows(frame),
                                      exported=base_frame.columns if base_frame is not None else ())
    unknown = [found] if found is not None else []
    read_only = M.read_only_problem(frame)
    if read_only is not None:
        unknown.append(read_only)
    options = D.Options(date_order=table.date_order or D.MONTH_FIRST)   # as import compares them
    custom = checks.custom_field_problems(table.frame.columns, base.custom_fields if base is not None else None)
    frame, date_problems = resolve_date_numbers(frame, table.date_numbers, base_frame)
    return unknown, custom + date_problems + checks.edit_problems(
        D.find_edits(frame, base_frame, options, unknown=table.unknown))


def account_labels(state_dir: Path) -> dict | None:
    """The account's custom fields (FieldId → label) as the state dir's newest export
    snapshot knows them; None when there is none (no key needed: local files only)."""
    from .importer.mapping import newest_labels
    from .state.snapshots import SnapshotStore

    return newest_labels(SnapshotStore(path=p) for p in sorted((state_dir / "accounts").glob("*/snapshots")))


def find_base_frame(file: Path, base: str | None, state_dir: Path, frame: pd.DataFrame, *, format=None):
    """The base of FILE as import finds it (:func:`etl.importer.base.find_base`: --base, the id
    inside the file, the manifest beside it, else by content), in the account of the state
    dir that holds its export (validate needs no API key). A stale or missing base is the
    same error as for import."""
    from .codec.export_id import read_export_id
    from .importer.base import find_base, is_no_base, named_export
    from .state.snapshots import SnapshotStore

    inside = None if base else read_export_id(file, format)
    stores = [SnapshotStore(path=p) for p in sorted((state_dir / "accounts").glob("*/snapshots"))]
    export_id = None if is_no_base(base) else named_export(file, base, inside=inside)[0]
    holding = [s for s in stores if export_id is None or s.exists(export_id)]
    store = (holding or stores or [SnapshotStore(path=state_dir / "accounts" / "none" / "snapshots")])[0]
    return find_base(file, base, store, frame, inside=inside)
