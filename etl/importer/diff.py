"""The three-way diff of an import: base, file, live → one RowPlan per row.

Pure: no I/O, and no input is changed (new RowEdits and RowPlans are returned).

* **base** — what the export wrote (its snapshot), or None for a file from elsewhere.
* **file** — the admin's edited copy (a typed frame from the codec).
* **live** — IntakeQ now, fetched only for the rows that need it.

It runs in two steps so that live data is fetched only where it matters:

1. :func:`find_edits` (file vs base) tells, per row, what the admin changed. Edits are
   always the file against the export it came from, never against "the export plus what
   imports wrote since": a cell that still holds the exported value is not an edit, so
   two files copied from one export never undo each other. A file re-saved by a
   spreadsheet with no edits has zero edits: values are compared normalised, and a cell
   that differs only as a spreadsheet's transformation (``2134.0`` for ``02134``, see
   :mod:`etl.codec.damage`) is damage, not an edit. Rows without edits need no live data.
2. :func:`plan_rows` (edits vs live) merges: the admin's edited fields over the live
   profile, keeping what staff changed meanwhile; the same field changed both ways is a
   conflict — unless live holds the value an import of ours wrote there (``written``),
   which is not a staff edit. A client whose merged profile equals live needs no save, a
   tag already present (or absent) needs no call — so re-importing an applied file plans
   nothing.
"""
from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import fields as F
from ..codec import damage as DMG
from ..codec import normalized, normalized_frame, to_api_value
from ..codec.text import MONTH_FIRST, comparable_of_trimmed, trimmed_text, utc_ms
from .matching import MatchIndex, created_earlier, fold, plain

BLANK_KEEP, BLANK_CLEAR = "keep", "clear"
TAGS_MERGE, TAGS_REPLACE = "merge", "replace"

# Row actions (also the results' statuses, with created/updated/failed/pending).
CREATE, UPDATE, UNCHANGED, CONFLICT, SKIPPED, FAILED = (
    "create", "update", "unchanged", "conflict", "skipped", "failed")


@dataclass(frozen=True)
class Options:
    blank: str = BLANK_KEEP
    tags: str = TAGS_MERGE
    prefer_file: bool = False
    tz: str = "UTC"
    date_order: str = MONTH_FIRST   # how the file's slash dates read (its Table.date_order)


@dataclass(frozen=True)
class Written:
    """A value an import of ours saved to one client's field (``applied.sqlite``)."""

    value: Any
    at: float          # epoch seconds


@dataclass(frozen=True)
class Ignored:
    """A read-only column whose value the file changed: shown in the plan, never sent."""

    field: str
    old: Any          # the exported value
    new: Any          # the file's value


@dataclass(frozen=True)
class Kept:
    """A cell the file still holds as exported while IntakeQ holds what an earlier import
    of ours wrote: not an edit, so the import's value stays (``--prefer file`` sets the
    exported value back)."""

    field: str
    file: Any          # = the exported value
    written: Any       # what the earlier import wrote
    at: float          # when it wrote it (epoch seconds)


@dataclass(frozen=True)
class StaffKept:
    """A cell the file holds as exported while IntakeQ holds another value that no import
    of ours wrote (a staff edit since the export): IntakeQ's value stays (the review lists it)."""

    field: str
    file: Any          # the file's cell (= the exported value, or blank with --blank keep)
    live: Any          # what IntakeQ holds, and keeps


class _NoItems(list):
    """An empty list that cannot grow: one is shared by the plans of every unchanged row
    (four new empty lists a row were 22 MB at 100,000 rows). Equal to ``[]``."""

    def _shared(self, *args, **kwargs):
        raise TypeError("a shared empty list (an unchanged row's plan): make a new list")

    append = extend = insert = remove = pop = clear = sort = reverse = _shared
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _shared


NO_ITEMS = _NoItems()
NO_VALUES = types.MappingProxyType({})   # read-only {}: shared by every row without edits


@dataclass(slots=True)   # one per file row: no per-instance dict (issue 14, memory)
class RowEdit:
    """What one file row asks for, before live data is known."""

    index: int                      # position in the file frame
    row: int                        # spreadsheet row (header = 1)
    client_id: int | None           # None: a new client (not matched yet)
    values: dict[str, Any]          # field -> the file's typed value, for fields to compare with live
    base: dict[str, Any] | None     # field -> base typed value (None: two-way, no base row)
    tags_add: frozenset = frozenset()
    tags_remove: frozenset = frozenset()
    tags_exact: frozenset | None = None   # two-way --tags replace: the client's tags become exactly these
    ignored: tuple[Ignored, ...] = ()   # read-only columns whose value differs (never sent)
    matched_by: str | None = None   # how a row without ClientId was matched
    damage: tuple[DMG.Damage, ...] = ()   # cells a spreadsheet reformatted: the exported value stays
    kept: tuple[Kept, ...] = ()     # cells an earlier import changed in IntakeQ: its value stays
    reverts: tuple[Kept, ...] = ()  # such cells to set back to the export (--prefer file)
    unedited: dict[str, tuple[Any, Any]] = field(default_factory=dict)   # column -> (file, base), raw, of
    #                   the writable cells a row with edits holds as exported: staff edits there stay (review)

    @property
    def needs_live(self) -> bool:
        return bool(self.values or self.tags_add or self.tags_remove or self.tags_exact is not None
                    or self.client_id is None or self.reverts)


@dataclass(slots=True)
class Change:
    field: str
    old: Any   # live value (typed)
    new: Any   # value to send (typed)
    derived: bool = False   # not the admin's edit: Name following FirstName/LastName


@dataclass(slots=True)
class Conflict:
    field: str
    base: Any
    file: Any
    live: Any
    note: str = ""      # the plan file's note (an undo's says what its values are)


@dataclass(slots=True)   # one per file row: no per-instance dict (issue 14, memory)
class RowPlan:
    """What the import will do for one file row."""

    row: int
    client_id: int | None
    action: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    tag_adds: list[str] = field(default_factory=list)
    tag_removes: list[str] = field(default_factory=list)
    ignored: tuple[Ignored, ...] = ()
    damage: tuple[DMG.Damage, ...] = ()
    kept: tuple[Kept, ...] = ()
    staff_kept: tuple[StaffKept, ...] = ()   # cells staff changed since the export: their value stays
    body: dict | None = None        # the full profile to POST (None: no save)
    message: str = ""
    name_key: tuple[str, str] | None = None   # (first, last) of a create, to recognise it later
    name: str = ""                  # the client's name as IntakeQ holds it (a create: as the file gives it)

    @property
    def writes(self) -> int:
        return (1 if self.body is not None else 0) + len(self.tag_adds) + len(self.tag_removes)


# --------------------------------------------------------------------------- step 1


def by_spreadsheet_row(table) -> pd.Index:
    """The index of an import's file frame: each row's spreadsheet row (header = 1), as the
    codec read it (``Table.row_numbers``: blank rows skipped), carried with the row from
    here on, into the plan, results and rejects."""
    return pd.Index(table.row_numbers, name="row").astype("int64")


def compared_columns(columns: Iterable[str]) -> list[str]:
    """The file's columns an import may send: writable ones (Tags handled apart)."""
    return [c for c in columns if F.is_writable(c)]


def read_only_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if not F.is_writable(c) and c not in ("ClientId", "Tags")]


def find_edits(file: pd.DataFrame, base: pd.DataFrame | None, options: Options = Options(), *,
               written: dict[tuple[int, str], Written] | None = None,
               unknown: Iterable[tuple[int, str]] = ()) -> list[RowEdit]:
    """File vs base: one RowEdit per file row (rows without edits have empty values).

    ``file`` is indexed by spreadsheet row (:func:`by_spreadsheet_row`); ``base`` is the snapshot
    frame (ClientId column) or None. Vectorised: only rows with a differing cell are
    looked at one by one, so a 100,000-row file with a few edits is quick.

    ``written`` maps (ClientId, field) to the last value an import of ours saved there
    since the base export was taken (:func:`written_since`): the cells the file still
    holds as exported are :class:`Kept` (or, with ``prefer_file``, edits that set the
    exported value back).

    ``unknown`` lists (spreadsheet row, column) cells whose value the file does not hold
    (an XLSX merged or uncalculated cell, ``Table.unknown``): they read as empty but are
    never an edit, whatever ``--blank`` says, so they change nothing.
    """
    base_by_id = _index_by_client_id(base)
    writable = compared_columns(file.columns)
    has_tags = "Tags" in file.columns
    ids = _client_ids(file)
    rows = [int(i) for i in file.index]
    unknown_at = _unknown_by_position(unknown, rows)
    if base_by_id is None:
        return [_two_way_row(file, pos, rows[pos], ids[pos], writable, has_tags, options,
                             skip=unknown_at.get(pos, frozenset()))
                for pos in range(len(file))]

    read_only = [c for c in read_only_columns(file.columns) if c in base_by_id.columns]
    aligned = AlignedBase(base_by_id, ids)
    differs = {col: _differs(col, file[col], aligned[col], options.blank, options.date_order)
               for col in writable + read_only + (["Tags"] if has_tags else [])
               if col in aligned.columns}
    _never_edited(differs, unknown_at)
    damage = _take_out_damage(file, aligned, differs, rows, writable)
    in_base = pd.Series(ids, dtype="object").isin(base_by_id.index).to_numpy()
    touched = _any_true(differs.values(), len(file))
    extra = [c for c in writable if c not in differs]   # columns the base lacks (new custom field)
    since = _by_client(written)

    looked_at = touched | np.fromiter((cid in since for cid in ids), bool, len(ids)) if since else touched
    base_rows = FrameRows(base_by_id, (ids[pos] for pos in np.flatnonzero(looked_at & in_base)))
    base_match = None
    edits: list[RowEdit] = []
    for pos in range(len(file)):
        cid = ids[pos]
        skip = unknown_at.get(pos, frozenset())
        if cid is not None and in_base[pos]:
            earlier = since.get(cid)
            if not touched[pos] and not earlier and not (extra and any(not _blank(file[c].iat[pos]) for c in extra)):
                edits.append(RowEdit(index=pos, row=rows[pos], client_id=cid, values=NO_VALUES, base=NO_VALUES,
                                     damage=damage.get(pos, ()), unedited=NO_VALUES))
                continue
            base_row = base_rows[cid]
            changed = [c for c in writable if c in differs and differs[c][pos]]
            changed += [c for c in writable if c not in differs and not _blank(file[c].iat[pos])]
            ignored = tuple(Ignored(c, plain(base_row[c]), plain(file[c].iat[pos]))
                            for c in read_only if differs[c][pos])
            edit = _three_way_row(file, pos, rows[pos], cid, base_row, changed, has_tags and "Tags" not in skip,
                                  options, ignored=ignored, damage=damage.get(pos, ()))
            edits.append(_with_earlier_writes(edit, file, pos, base_row, earlier, options, skip))
            continue
        if cid is None:
            base_match = base_match or MatchIndex.from_frame(base_by_id)
            matched, how = base_match.find(file.iloc[pos])
            if matched is not None:
                base_row = base_rows[matched]
                known = [c for c in writable if c not in skip]
                changed, cell_damage = _changed_cells(file, pos, rows[pos], base_row, known, options)
                edits.append(_three_way_row(file, pos, rows[pos], matched, base_row, changed,
                                            has_tags and "Tags" not in skip, options,
                                            matched_by="base: " + how, damage=cell_damage))
                continue
        edits.append(_two_way_row(file, pos, rows[pos], cid, writable, has_tags, options, skip=skip))
    return _with_unedited(edits, file, base_by_id, writable, unknown_at)


def _with_unedited(edits: list[RowEdit], file, base_by_id, writable, unknown_at) -> list[RowEdit]:
    """Give each exported row that edits something (and so is planned against live) its cells
    held as exported: (file, base) by column, raw; the plan tells staff edits there
    (``_staff_kept``). One bulk look-up of the rows, not one per cell."""
    todo = [i for i, e in enumerate(edits) if e.base is not None and e.matched_by is None and e.needs_live
            and e.client_id in base_by_id.index]
    cols = [c for c in writable if c in base_by_id.columns]
    if not todo or not cols:
        return edits
    file_rows = file[cols].iloc[[edits[i].index for i in todo]].to_numpy(dtype=object)
    base_rows = base_by_id.loc[[edits[i].client_id for i in todo], cols].to_numpy(dtype=object)
    out = list(edits)
    for i, file_row, base_row in zip(todo, file_rows, base_rows):
        e = edits[i]
        left = set(e.values) | unknown_at.get(e.index, frozenset()) | {d.column for d in e.damage}
        out[i] = dataclasses.replace(e, unedited={c: (f, b) for c, f, b in zip(cols, file_row, base_row)
                                                  if c not in left})
    return out


class FrameRows:
    """Rows of a ClientId-indexed frame as dicts (column → cell), taken a chunk at a time.

    ``frame.loc[cid]`` of a wide, Arrow-backed frame builds a Series a row, cell by cell
    (about 1.4 ms at 71 columns; 2.8 s of a 100,000-row plan, issue 14). ``ids`` are the rows
    a diff will ask for, in the order it asks: one ``loc`` takes the next ``CHUNK`` of them,
    and only that chunk is held (all of a million-row plan's would be ~100 MB of dicts).
    A row asked for out of that order is taken alone.
    """

    CHUNK = 512

    def __init__(self, frame: pd.DataFrame, ids: Iterable[int] = ()):
        self.frame = frame
        self.columns = list(frame.columns)
        self._order = list(dict.fromkeys(ids))
        self._at = {cid: i for i, cid in enumerate(self._order)}
        self._rows: dict[int, dict] = {}

    def __getitem__(self, cid: int) -> dict:
        row = self._rows.get(cid)
        if row is None:
            at = self._at.get(cid)
            self._rows = self._take([cid] if at is None else self._order[at:at + self.CHUNK])
            row = self._rows[cid]
        return row

    def _take(self, ids: list[int]) -> dict[int, dict]:
        values = self.frame.loc[ids].to_numpy(dtype=object)
        return {cid: dict(zip(self.columns, row)) for cid, row in zip(ids, values)}


class AlignedBase:
    """The base's columns in the file's row order (NA where the file's row has no base
    client), taken one column at a time when asked: a reindexed copy of the whole base
    frame was one more frame in memory."""

    def __init__(self, base_by_id: pd.DataFrame, ids: list[int | None]):
        self.frame = base_by_id
        self.columns = base_by_id.columns
        self.positions = base_by_id.index.get_indexer([-1 if i is None else i for i in ids])

    def __getitem__(self, column: str) -> pd.Series:
        return pd.Series(self.frame[column].array.take(self.positions, allow_fill=True), name=column)


def _unknown_by_position(unknown, rows: list[int]) -> dict[int, frozenset]:
    """Unknown cells as file position → columns."""
    by_row: dict[int, set[str]] = {}
    for row, column in unknown:
        by_row.setdefault(int(row), set()).add(column)
    if not by_row:
        return {}
    return {pos: frozenset(by_row[row]) for pos, row in enumerate(rows) if row in by_row}


def _never_edited(differs: dict[str, np.ndarray], unknown_at: dict[int, frozenset]) -> None:
    """An unknown cell is not an edit (not even a blank one): clear it in ``differs``."""
    for pos, columns in unknown_at.items():
        for col in columns:
            if col in differs:
                differs[col][pos] = False


def _any_true(masks, n):
    masks = [np.asarray(m, dtype=bool) for m in masks]
    return np.logical_or.reduce(masks) if masks else np.zeros(n, dtype=bool)


def _take_out_damage(file, aligned, differs, rows, writable) -> dict[int, tuple[DMG.Damage, ...]]:
    """Clear, in ``differs``, every text cell that differs from its base only as a
    spreadsheet's transformation; returns the writable ones by file position.

    A read-only column's damage is cleared too (it is never sent), without a record.
    """
    found: dict[int, list[DMG.Damage]] = {}
    for col, mask in differs.items():
        if F.kind_of(col) != "text" or not mask.any():
            continue
        base_col = aligned[col]
        for pos in np.flatnonzero(mask):
            file_value, base_value = plain(file[col].iat[pos]), plain(base_col.iat[pos])
            kind = DMG.classify(base_value, file_value)
            if kind is None:
                continue
            mask[pos] = False
            if col in writable:
                found.setdefault(int(pos), []).append(DMG.Damage(rows[pos], col, file_value, base_value, kind))
    return {pos: tuple(items) for pos, items in found.items()}


def _changed_cells(file, pos, row, base_row, writable, options) -> tuple[list[str], tuple[DMG.Damage, ...]]:
    """One row compared cell by cell (a new row matched to a base client by name + contact)."""
    changed, damage = [], []
    for c in writable:
        file_value = file[c].iat[pos]
        if c not in base_row:
            if not _blank(file_value):
                changed.append(c)
            continue
        if not _cell_differs(c, file_value, base_row[c], options):
            continue
        kind = DMG.classify(plain(base_row[c]), plain(file_value)) if F.kind_of(c) == "text" else None
        if kind is None:
            changed.append(c)
        else:
            damage.append(DMG.Damage(row, c, plain(file_value), plain(base_row[c]), kind))
    return changed, tuple(damage)


def _three_way_row(file, pos, row, cid, base_row, changed, has_tags, options, *, ignored=(), damage=(),
                   matched_by=None):
    values = {c: _to_send(c, file[c].iat[pos]) for c in changed}
    base_values = {c: plain(base_row[c]) if c in base_row else None for c in changed}
    tags_add = tags_remove = frozenset()
    if has_tags:
        file_tags = _tags(file["Tags"].iat[pos])
        base_tags = _tags(base_row.get("Tags"))
        tag_damage = _tag_damage(row, file_tags, base_tags)
        file_tags = (file_tags - {d.file_value for d in tag_damage}) | {d.base_value for d in tag_damage}
        damage = tuple(damage) + tag_damage
        tags_add = frozenset(file_tags - base_tags)
        if options.tags == TAGS_REPLACE and (file_tags or options.blank == BLANK_CLEAR):
            tags_remove = frozenset(base_tags - file_tags)
    return RowEdit(index=pos, row=row, client_id=int(cid), values=values, base=base_values,
                   tags_add=tags_add, tags_remove=tags_remove, ignored=ignored, matched_by=matched_by,
                   damage=damage)


def _tag_damage(row: int, file_tags: set[str], base_tags: set[str]) -> tuple[DMG.Damage, ...]:
    """Tags that are an exported tag with '?' for characters the file's encoding lost."""
    gone = base_tags - file_tags
    out = []
    for tag in sorted(file_tags - base_tags):
        original = next((b for b in sorted(gone) if DMG.classify(b, tag) == DMG.CHARS_REPLACED), None)
        if original is not None:
            gone.discard(original)
            out.append(DMG.Damage(row, "Tags", tag, original, DMG.CHARS_REPLACED))
    return tuple(out)


def written_since(written: dict[tuple[int, str], Written], taken_at: float | None
                  ) -> dict[tuple[int, str], Written]:
    """What imports wrote after the base export was taken (all of it when that is unknown):
    what they wrote before is in the base already."""
    return {key: w for key, w in written.items() if taken_at is None or w.at > taken_at}


def _by_client(written) -> dict[int, dict[str, Written]]:
    out: dict[int, dict[str, Written]] = {}
    for (cid, col), w in (written or {}).items():
        out.setdefault(int(cid), {})[col] = w
    return out


def _with_earlier_writes(edit: RowEdit, file, pos, base_row, earlier, options, skip=frozenset()) -> RowEdit:
    """The cells of a row the file holds as exported while an earlier import of ours wrote
    another value since: :class:`Kept`, or with ``prefer_file`` to set back to the export
    (only where live still holds what we wrote: see ``_plan_update``)."""
    if not earlier:
        return edit
    kept, reverts = [], []
    for col, w in earlier.items():
        if col in edit.values or col in skip or col not in compared_columns(file.columns) \
                or col not in base_row:
            continue
        file_value, base_value = _to_send(col, file[col].iat[pos]), plain(base_row[col])
        if not _same(col, file_value, base_value, options.date_order) or _same(col, w.value, base_value):
            continue
        wanted = options.prefer_file and (file_value is not None or options.blank == BLANK_CLEAR)
        (reverts if wanted else kept).append(Kept(col, file_value, w.value, w.at))
    return dataclasses.replace(edit, kept=tuple(kept), reverts=tuple(reverts))


def _two_way_row(file, pos, row, cid, writable, has_tags, options, *, skip=frozenset()):
    values = {}
    for c in writable:
        if c in skip:
            continue
        v = _to_send(c, file[c].iat[pos])
        if v is None and options.blank == BLANK_KEEP:
            continue
        values[c] = v
    tags_add, tags_exact = frozenset(), None
    if has_tags and "Tags" not in skip:
        file_tags = frozenset(_tags(file["Tags"].iat[pos]))
        if options.tags == TAGS_REPLACE and (file_tags or options.blank == BLANK_CLEAR):
            tags_exact = file_tags
        else:
            tags_add = file_tags
    return RowEdit(index=pos, row=row, client_id=cid, values=values, base=None,
                   tags_add=tags_add, tags_exact=tags_exact)


# --------------------------------------------------------------------------- step 2


def plan_rows(edits: list[RowEdit], live: dict[int, dict], options: Options = Options(),
              *, live_frame: pd.DataFrame | None = None, universe: Iterable[dict] = (),
              created_before: dict[tuple[str, str], set[int]] | None = None,
              created_here: dict[tuple[str, str], set[int]] | None = None,
              written: dict[tuple[int, str], Written] | None = None) -> list[RowPlan]:
    """Edits vs live → one RowPlan per edit (``edits`` are not modified).

    ``live`` maps ClientId → the live API profile of every client an edit names.
    ``universe`` is every live client known (full profiles), for matching new rows by
    IntakeQ's rule: first name + email, or first name + phone. ``created_before`` maps
    (first, last) names (casefolded) to clients earlier imports created: a new row with
    neither email nor phone and such a name is that client, not a second one.
    ``written`` maps (ClientId, field) to the last value an import of ours saved since
    the base export: live holding it is our change, not a staff edit (no conflict); a tag
    change an import of ours already made and live no longer shows was undone by staff
    since, and is not made again.
    """
    from ..codec import clients_to_frame

    universe = list(universe)
    live = {**{int(r["ClientId"]): r for r in universe}, **live}
    if live_frame is None:
        live_frame = clients_to_frame(list(live.values()), tz=options.tz)
    live_typed = _index_by_client_id(live_frame)
    live_rows = {} if live_typed is None else FrameRows(
        live_typed, (e.client_id for e in edits if e.client_id is not None and e.needs_live and e.client_id in live))
    matcher = MatchIndex.from_records(universe)
    plans = []
    for edit in edits:
        if edit.client_id is None and edit.needs_live:
            cid, how = matcher.find_values(edit.values)
            if cid is None:
                cid, how, clash = created_earlier(edit.values, created_before or {}, created_here or {}, live)
                if clash:
                    plans.append(RowPlan(edit.row, None, CONFLICT, message=clash))
                    continue
            if cid is not None:
                edit = dataclasses.replace(edit, client_id=cid, matched_by="IntakeQ: " + how)
        if edit.client_id is None:
            plans.append(_plan_create(edit, options))
        elif not edit.needs_live:
            plans.append(RowPlan(edit.row, edit.client_id, UNCHANGED, NO_ITEMS, NO_ITEMS, NO_ITEMS, NO_ITEMS,
                                 ignored=edit.ignored, damage=edit.damage, kept=edit.kept))
        elif edit.client_id not in live:
            plans.append(RowPlan(edit.row, edit.client_id, FAILED, ignored=edit.ignored, damage=edit.damage,
                                 message=f"ClientId {edit.client_id} was not found in IntakeQ"))
        else:
            plans.append(_plan_update(edit, live[edit.client_id], live_rows[edit.client_id], options,
                                      written or {}))
    return plans


def _plan_update(edit: RowEdit, live_record: dict, live_row: dict, options: Options,
                 written: dict[tuple[int, str], Written]) -> RowPlan:
    changes, conflicts, damage = [], [], list(edit.damage)
    for col, new in edit.values.items():
        if new is None and edit.matched_by:   # a new row matched to a client: blanks clear nothing
            continue
        current = plain(live_row[col]) if col in live_row else None
        if _same(col, current, new, options.date_order):
            continue
        base_value = edit.base.get(col) if edit.base is not None else None
        if base_value is None:   # no exported value (two-way, a column the base lacks): check against live
            kind = DMG.classify(current, new) if F.kind_of(col) == "text" else None
            if kind is not None:
                damage.append(DMG.Damage(edit.row, col, new, current, kind))
                continue
        if edit.base is not None:
            if _staff_changed(col, current, base_value, written.get((edit.client_id, col))) \
                    and not options.prefer_file:
                conflicts.append(Conflict(col, base_value, new, current))
                continue
        changes.append(Change(col, current, new))
    for k in edit.reverts:         # set back only what live still holds from our import
        current = plain(live_row[k.field]) if k.field in live_row else None
        if _same(k.field, current, k.written) and not _same(k.field, current, k.file):
            changes.append(Change(k.field, current, k.file))
    kept = tuple(k for k in edit.kept    # staff changed it since: no longer our value to keep
                 if k.field in live_row and _same(k.field, plain(live_row[k.field]), k.written))
    _name_follows(changes, edit, live_row)
    live_tags = _tags(live_record.get("Tags"))
    if edit.tags_exact is not None:
        wanted = set(edit.tags_exact)
        tag_damage = _tag_damage(edit.row, wanted, live_tags)     # two-way: against live
        damage += tag_damage
        wanted = (wanted - {d.file_value for d in tag_damage}) | {d.base_value for d in tag_damage}
        adds = sorted(wanted - live_tags)
        removes = sorted(live_tags - wanted)
    else:
        wanted = set(edit.tags_add)
        if edit.base is None:
            tag_damage = _tag_damage(edit.row, wanted, live_tags)
            damage += tag_damage
            wanted -= {d.file_value for d in tag_damage}
        # A tag change an import of ours made, then staff undid, is not made again.
        adds = sorted(t for t in wanted - live_tags if _our_last_tag_op(written, edit.client_id, t) != "+")
        removes = sorted(t for t in edit.tags_remove & live_tags
                         if _our_last_tag_op(written, edit.client_id, t) != "-")
    plan = RowPlan(edit.row, edit.client_id, UPDATE, changes=changes, tag_adds=adds,
                   tag_removes=removes, ignored=edit.ignored, damage=tuple(damage), kept=kept,
                   staff_kept=_staff_kept(edit, live_row, written), message=_matched_note(edit),
                   name=display_name(live_record))
    if conflicts:
        plan.action, plan.conflicts = CONFLICT, conflicts
        plan.changes, plan.tag_adds, plan.tag_removes = [], [], []
        plan.message = "the same field was changed in the file and in IntakeQ since the export"
        return plan
    if changes:
        plan.body = merged_body(live_record, changes, options.tz)
    if plan.writes == 0:
        plan.action = UNCHANGED
    return plan


def _staff_kept(edit: RowEdit, live: dict, written: dict[tuple[int, str], Written]
                ) -> tuple[StaffKept, ...]:
    """The cells of ``edit`` held as exported whose live value staff changed since the export
    (not an import of ours): the merge keeps them; the review shows them."""
    if not edit.unedited:
        return ()
    out = []
    for col, (file_value, base_value) in edit.unedited.items():
        current = live.get(col)
        if current is base_value or _plainly_equal(current, base_value):   # most cells: no normalising
            continue
        current, base_value = plain(current), plain(base_value)
        if current is None and base_value is None:
            continue
        if _staff_changed(col, current, base_value, written.get((edit.client_id, col))):
            out.append(StaffKept(col, plain(file_value), current))
    return tuple(out)


def _plainly_equal(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def tag_op_field(tag: str, add: bool) -> str:
    """The ``written`` key of a tag call an import made: ``Tags+<tag>`` or ``Tags-<tag>``."""
    return f"Tags{'+' if add else '-'}{tag}"


def _our_last_tag_op(written, client_id, tag: str) -> str | None:
    """"+" or "-": the last call an import of ours made for this tag since the base."""
    added = written.get((client_id, tag_op_field(tag, True)))
    removed = written.get((client_id, tag_op_field(tag, False)))
    if added is None and removed is None:
        return None
    if removed is None or (added is not None and added.at >= removed.at):
        return "+"
    return "-"


def _staff_changed(col: str, current, base_value, ours: Written | None) -> bool:
    """Live differs from the base, and not because an import of ours wrote what it holds."""
    if _same(col, current, base_value):
        return False
    return ours is None or not _same(col, current, ours.value)


def _name_follows(changes: list[Change], edit: RowEdit, live_row: dict) -> None:
    """If FirstName or LastName changes and Name was not edited, Name follows them."""
    names = {c.field: c.new for c in changes}
    if "Name" in edit.values or not ({"FirstName", "LastName"} & names.keys()):
        return
    first = names.get("FirstName", plain(live_row.get("FirstName")))
    last = names.get("LastName", plain(live_row.get("LastName")))
    name = " ".join(p for p in (first, last) if p)
    current = plain(live_row.get("Name"))
    if name and not _same("Name", current, name):
        changes.append(Change("Name", current, name, derived=True))


def _plan_create(edit: RowEdit, options: Options) -> RowPlan:
    values = {c: v for c, v in edit.values.items() if v is not None}
    if "Name" not in values:
        name = " ".join(p for p in (values.get("FirstName"), values.get("LastName")) if p)
        if name:
            values["Name"] = name
    body = record_from_values(values, options.tz)
    tags = sorted(edit.tags_exact if edit.tags_exact is not None else edit.tags_add)
    return RowPlan(edit.row, None, CREATE, changes=[Change(c, None, v) for c, v in values.items()],
                   tag_adds=tags, body=body,
                   name_key=(fold(values.get("FirstName")), fold(values.get("LastName"))),
                   name=display_name(values))


def display_name(record: dict) -> str:
    """A client's name for people (the review files): ``Name``, else first and last name."""
    name = plain(record.get("Name"))
    if name:
        return str(name)
    return " ".join(str(p) for p in (plain(record.get("FirstName")), plain(record.get("LastName"))) if p)


def _matched_note(edit: RowEdit) -> str:
    return f"matched by {edit.matched_by}" if edit.matched_by else ""


def same_client_rows(items) -> list[tuple[int, int, str]]:
    """(first row, second row, what) for every two rows that resolve to one client.

    ``items`` are RowEdits or RowPlans (anything with ``row`` and ``client_id``).
    """
    seen: dict[int, int] = {}
    pairs = []
    for item in items:
        if item.client_id is None:
            continue
        if item.client_id in seen:
            pairs.append((seen[item.client_id], item.row, f"ClientId {item.client_id}"))
        else:
            seen[item.client_id] = item.row
    return pairs


def same_new_client_rows(items) -> list[tuple[int, int, str]]:
    """Two new clients IntakeQ would merge (same first name + email, or + phone): the
    second save would replace the first client's profile with its own.

    ``items`` are RowEdits (rows still without a client) or RowPlans (creates).
    """
    seen = MatchIndex()
    pairs = []
    for item in items:
        values = _new_client_values(item)
        if not values:
            continue
        found, how = seen.find_values(values)
        if found is not None:
            pairs.append((found, item.row, f"new client, same {how}"))
        else:
            seen.add(item.row, values.get("FirstName"), values.get("Email"), values.get("Phone"))
    return pairs


def _new_client_values(item) -> dict | None:
    if isinstance(item, RowPlan):
        return item.body if item.action == CREATE else None
    return item.values if item.client_id is None else None


# --------------------------------------------------------------------------- bodies


def merged_body(live_record: dict, changes: list[Change], tz: str) -> dict:
    """The live profile with the changed fields merged in: the full client, never partial."""
    body = _json_copy(live_record)
    for change in changes:
        set_api_field(body, change.field, change.new, tz)
    return body


def _json_copy(value):
    """A deep copy of parsed JSON (dicts, lists, immutable scalars): ``copy.deepcopy``'s
    memo and dispatch cost 0.5 ms a client profile."""
    if type(value) is dict:
        return {k: _json_copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_json_copy(v) for v in value]
    return value


def record_from_values(values: dict[str, Any], tz: str) -> dict:
    """The body of a create: every value the file gives, custom fields as CustomFields."""
    body: dict = {}
    for col, value in values.items():
        set_api_field(body, col, value, tz)
    return body


def set_api_field(body: dict, column: str, value: Any, tz: str) -> None:
    api_value = to_api_value(column, value, tz=tz)
    if F.is_custom(column):
        field_id = F.custom_field_id(column)
        entries = body.setdefault("CustomFields", [])
        for entry in entries:
            if str(entry.get("FieldId")) == field_id:
                entry["Value"] = api_value
                return
        entries.append({"FieldId": field_id, "Value": api_value})
    else:
        body[column] = api_value


# --------------------------------------------------------------------------- helpers


def _index_by_client_id(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    if frame.index.name == "ClientId":
        return frame
    if "ClientId" not in frame.columns:
        return None
    ids = frame["ClientId"]
    # A shallow copy given its index: the base's columns are shared, not copied (a filtered
    # copy and set_index each made one more whole frame: issue 14, memory).
    keyed = frame[ids.notna()] if ids.hasnans else frame.copy(deep=False)
    keyed.index = pd.Index(keyed["ClientId"].astype("int64"), name="ClientId")
    return keyed


def _client_ids(file: pd.DataFrame) -> list[int | None]:
    if "ClientId" not in file.columns:
        return [None] * len(file)
    ids = file["ClientId"]
    if str(ids.dtype) == "Int64":             # as read: one conversion, not one pd.isna a row
        return ids.astype(object).where(ids.notna(), None).tolist()
    return [None if pd.isna(v) else int(v) for v in ids]


def _differs(col: str, file_col: pd.Series, base_col: pd.Series, blank: str,
             date_order: str = MONTH_FIRST) -> np.ndarray:
    """Per row: does the file's cell differ from the base's (normalised; blank rules)?"""
    kind = F.kind_of(col)
    if kind in ("text", "linked"):
        return _text_differs(col, file_col, base_col, blank, date_order)
    if kind == "tags":
        return _tags_differ(col, file_col, base_col, blank)
    if kind == "instant" and isinstance(file_col.dtype, pd.DatetimeTZDtype) \
            and isinstance(base_col.dtype, pd.DatetimeTZDtype):
        return _instants_differ(file_col, base_col, blank)
    a = _normalized_values(col, file_col, date_order)
    b = _normalized_values(col, base_col, date_order)
    a_blank = np.array([v is None or v == () for v in a], dtype=bool)
    differ = ~np.asarray(a == b, dtype=bool)
    if blank == BLANK_KEEP:
        differ &= ~a_blank
    return differ


def _text_differs(col: str, file_col: pd.Series, base_col: pd.Series, blank: str, date_order: str) -> np.ndarray:
    """:func:`_differs` of a text column, in Arrow: no Python string per cell (null = empty)."""
    a = trimmed_text(file_col.reset_index(drop=True))
    b = trimmed_text(base_col.reset_index(drop=True))
    differ = _arrow_differ(a, b).to_numpy(zero_copy_only=False).copy()   # writable: later steps clear cells
    todo = np.flatnonzero(differ)
    if len(todo):        # cells equal as typed are equal normalised: normalise only the others
        at = pa.array(todo, pa.int64())
        a = comparable_of_trimmed(col, a.take(at), date_order)
        b = comparable_of_trimmed(col, b.take(at), date_order)
        still = _arrow_differ(a, b)
        if blank == BLANK_KEEP:
            still = pc.and_(still, pc.is_valid(a))
        differ[todo] = still.to_numpy(zero_copy_only=False)
    return differ


def _arrow_differ(a: pa.Array, b: pa.Array) -> pa.Array:
    """Per cell: not equal, null (empty) being equal to null only."""
    same = pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))
    return pc.invert(same)


def _tags_differ(col: str, file_col: pd.Series, base_col: pd.Series, blank: str) -> np.ndarray:
    """:func:`_differs` of a tags column: equal lists are the same cell as they are; only the
    others are normalised (a sorted tuple of distinct tags a cell, twice, for every row was
    most of this column's cost)."""
    differ = np.zeros(len(file_col), dtype=bool)
    for pos, (a, b) in enumerate(zip(file_col.tolist(), base_col.tolist())):
        if type(a) is list and type(b) is list and a == b:
            continue
        a, b = normalized(col, a), normalized(col, b)
        differ[pos] = a != b and not (blank == BLANK_KEEP and (a is None or a == ()))
    return differ


def _instants_differ(file_col: pd.Series, base_col: pd.Series, blank: str) -> np.ndarray:
    """:func:`_differs` of two typed instant columns, to the millisecond (what a file holds),
    as integers: no text a cell."""
    a, b = _epoch_ms(file_col), _epoch_ms(base_col)
    a_blank = np.isnan(a)
    differ = ~((a == b) | (a_blank & np.isnan(b)))
    if blank == BLANK_KEEP:
        differ &= ~a_blank
    return differ


def _epoch_ms(series: pd.Series) -> np.ndarray:
    """Whole milliseconds since the epoch, floored like ``clock.iso_ms``; NaN for NaT."""
    out = utc_ms(series).astype("int64").astype("float64")
    out[pd.isna(series).to_numpy()] = np.nan
    return out


def _normalized_values(col: str, series: pd.Series, date_order: str = MONTH_FIRST) -> np.ndarray:
    frame = pd.DataFrame({col: series.reset_index(drop=True)})
    return normalized_frame(frame, [col], date_order=date_order)[col].to_numpy(dtype=object)


def _cell_differs(col, file_value, base_value, options: Options) -> bool:
    if _blank(file_value):
        return options.blank == BLANK_CLEAR and not _blank(base_value)
    return not _same(col, file_value, base_value, options.date_order)


def _same(col: str, a, b, date_order: str = MONTH_FIRST) -> bool:
    """Equal once normalised; ``date_order`` says how slash dates in a file's cell read."""
    return normalized(col, a, date_order=date_order) == normalized(col, b, date_order=date_order)


def _to_send(col: str, v):
    """A file's cell as it would be sent: a text cell without the spaces around it (a
    typist's or a spreadsheet's, never data: every comparison ignores them too)."""
    v = plain(v)
    if isinstance(v, str) and F.kind_of(col) == "text":
        return v.strip() or None
    return v


def _blank(v) -> bool:
    return plain(v) is None


def _tags(v) -> set[str]:
    if v is None or (not isinstance(v, (list, tuple, set, frozenset)) and _blank(v)):
        return set()
    if isinstance(v, str):
        return {v}
    return {str(t) for t in v}


def days_needed(writes: int, remaining_today: int | None, per_day: int) -> int:
    """How many days (today counting as one) a number of writes needs under the budget."""
    if per_day <= 0 or remaining_today is None or writes <= remaining_today:
        return 1 if writes else 0
    return 1 + math.ceil((writes - remaining_today) / per_day)
