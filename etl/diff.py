"""The three-way diff of an import: base, file, live → one RowPlan per row. Pure: no I/O.

* **base** — what the export wrote (its snapshot), or None for a file from elsewhere.
* **file** — the admin's edited copy (a typed frame from the codec).
* **live** — IntakeQ now, fetched only for the rows that need it.

It runs in two steps so that live data is fetched only where it matters:

1. :func:`find_edits` (file vs base) tells, per row, what the admin changed. A file
   re-saved by a spreadsheet with no edits has zero edits (values are compared
   normalised). Rows without edits need no live data.
2. :func:`plan_rows` (edits vs live) merges: the admin's edited fields over the live
   profile, keeping what staff changed meanwhile; the same field changed both ways is a
   conflict. A client whose merged profile equals live needs no save, a tag already
   present (or absent) needs no call — so re-importing an applied file plans nothing.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import fields as F
from .codec import normalized, normalized_frame, to_api_value

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


@dataclass
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
    ignored: tuple[str, ...] = ()   # read-only columns whose value differs (never sent)
    matched_by: str | None = None   # how a row without ClientId was matched

    @property
    def needs_live(self) -> bool:
        return bool(self.values or self.tags_add or self.tags_remove or self.tags_exact is not None
                    or self.client_id is None)


@dataclass
class Change:
    field: str
    old: Any   # live value (typed)
    new: Any   # value to send (typed)
    derived: bool = False   # not the admin's edit: Name following FirstName/LastName


@dataclass
class Conflict:
    field: str
    base: Any
    file: Any
    live: Any


@dataclass
class RowPlan:
    """What the import will do for one file row."""

    row: int
    client_id: int | None
    action: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    tag_adds: list[str] = field(default_factory=list)
    tag_removes: list[str] = field(default_factory=list)
    ignored: tuple[str, ...] = ()
    body: dict | None = None        # the full profile to POST (None: no save)
    message: str = ""
    name_key: tuple[str, str] | None = None   # (first, last) of a create, to recognise it later
    tags_after: list[str] | None = None       # the client's tags once the tag calls are done

    @property
    def writes(self) -> int:
        return (1 if self.body is not None else 0) + len(self.tag_adds) + len(self.tag_removes)


# --------------------------------------------------------------------------- step 1


def compared_columns(columns: Iterable[str]) -> list[str]:
    """The file's columns an import may send: writable ones (Tags handled apart)."""
    return [c for c in columns if F.is_writable(c)]


def read_only_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if not F.is_writable(c) and c not in ("ClientId", "Tags")]


def find_edits(file: pd.DataFrame, base: pd.DataFrame | None, options: Options = Options()) -> list[RowEdit]:
    """File vs base: one RowEdit per file row (rows without edits have empty values).

    ``file`` keeps its index (spreadsheet row = index + 2); ``base`` is the snapshot
    frame (ClientId column) or None. Vectorised: only rows with a differing cell are
    looked at one by one, so a 100,000-row file with a few edits is quick.
    """
    base_by_id = _index_by_client_id(base)
    writable = compared_columns(file.columns)
    has_tags = "Tags" in file.columns
    ids = _client_ids(file)
    rows = [int(i) + 2 for i in file.index]
    if base_by_id is None:
        return [_two_way_row(file, pos, rows[pos], ids[pos], writable, has_tags, options)
                for pos in range(len(file))]

    read_only = [c for c in read_only_columns(file.columns) if c in base_by_id.columns]
    aligned = base_by_id.reindex([-1 if i is None else i for i in ids])
    differs = {col: _differs(col, file[col], aligned[col], options.blank)
               for col in writable + read_only + (["Tags"] if has_tags else [])
               if col in aligned.columns}
    in_base = pd.Series(ids, dtype="object").isin(base_by_id.index).to_numpy()
    touched = _any_true(differs.values(), len(file))
    extra = [c for c in writable if c not in differs]   # columns the base lacks (new custom field)

    base_match = None
    edits: list[RowEdit] = []
    for pos in range(len(file)):
        cid = ids[pos]
        if cid is not None and in_base[pos]:
            if not touched[pos] and not any(not _blank(file[c].iat[pos]) for c in extra):
                edits.append(RowEdit(index=pos, row=rows[pos], client_id=cid, values={}, base={}))
                continue
            edits.append(_three_way_row(file, pos, rows[pos], cid, base_by_id.loc[cid], writable,
                                        read_only, differs, has_tags, options, None))
            continue
        if cid is None:
            base_match = base_match or _MatchIndex.from_frame(base_by_id)
            matched, how = base_match.find(file.iloc[pos])
            if matched is not None:
                edits.append(_three_way_row(file, pos, rows[pos], matched, base_by_id.loc[matched],
                                            writable, read_only, None, has_tags, options, "base: " + how))
                continue
        edits.append(_two_way_row(file, pos, rows[pos], cid, writable, has_tags, options))
    return edits


def _any_true(masks, n):
    masks = [np.asarray(m, dtype=bool) for m in masks]
    return np.logical_or.reduce(masks) if masks else np.zeros(n, dtype=bool)


def _three_way_row(file, pos, row, cid, base_row, writable, read_only, differs, has_tags, options, matched_by):
    if differs is None:  # matched by name/email: compare this row cell by cell
        changed = [c for c in writable if c in base_row.index
                   and _cell_differs(c, file[c].iat[pos], base_row[c], options.blank)]
        changed += [c for c in writable if c not in base_row.index and not _blank(file[c].iat[pos])]
        ignored = ()
    else:
        changed = [c for c in writable if c in differs and differs[c][pos]]
        changed += [c for c in writable if c not in differs and not _blank(file[c].iat[pos])]
        ignored = tuple(c for c in read_only if c in differs and differs[c][pos])
    values = {c: _value(file[c].iat[pos]) for c in changed}
    base_values = {c: _value(base_row[c]) if c in base_row.index else None for c in changed}
    tags_add = tags_remove = frozenset()
    if has_tags:
        file_tags = _tags(file["Tags"].iat[pos])
        base_tags = _tags(base_row.get("Tags"))
        tags_add = frozenset(file_tags - base_tags)
        if options.tags == TAGS_REPLACE and (file_tags or options.blank == BLANK_CLEAR):
            tags_remove = frozenset(base_tags - file_tags)
    return RowEdit(index=pos, row=row, client_id=int(cid), values=values, base=base_values,
                   tags_add=tags_add, tags_remove=tags_remove, ignored=ignored, matched_by=matched_by)


def _two_way_row(file, pos, row, cid, writable, has_tags, options):
    values = {}
    for c in writable:
        v = _value(file[c].iat[pos])
        if v is None and options.blank == BLANK_KEEP:
            continue
        values[c] = v
    tags_add, tags_exact = frozenset(), None
    if has_tags:
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
              created_before: dict[tuple[str, str], set[int]] | None = None) -> list[RowPlan]:
    """Edits vs live → one RowPlan per edit.

    ``live`` maps ClientId → the live API profile of every client an edit names.
    ``universe`` is every live client known (full profiles), for matching new rows by
    IntakeQ's rule: first name + email, or first name + phone. ``created_before`` maps
    (first, last) names (casefolded) to clients earlier imports created: a new row with
    neither email nor phone and such a name is that client, not a second one.
    """
    from .codec import clients_to_frame

    universe = list(universe)
    live = {**{int(r["ClientId"]): r for r in universe}, **live}
    if live_frame is None:
        live_frame = clients_to_frame(list(live.values()), tz=options.tz)
    live_typed = _index_by_client_id(live_frame)
    matcher = _MatchIndex.from_records(universe)
    plans = []
    for edit in edits:
        if edit.client_id is None and edit.needs_live:
            cid, how = matcher.find_values(edit.values)
            if cid is None:
                cid, how, clash = _created_earlier(edit.values, created_before or {}, live)
                if clash:
                    plans.append(RowPlan(edit.row, None, CONFLICT, message=clash))
                    continue
            if cid is not None:
                edit.client_id, edit.matched_by = cid, "IntakeQ: " + how
        if edit.client_id is None:
            plans.append(_plan_create(edit, options))
        elif not edit.needs_live:
            plans.append(RowPlan(edit.row, edit.client_id, UNCHANGED, ignored=edit.ignored))
        elif edit.client_id not in live:
            plans.append(RowPlan(edit.row, edit.client_id, FAILED, ignored=edit.ignored,
                                 message=f"ClientId {edit.client_id} was not found in IntakeQ"))
        else:
            plans.append(_plan_update(edit, live[edit.client_id], live_typed.loc[edit.client_id], options))
    return plans


def _created_earlier(values: dict, created: dict, live: dict) -> tuple[int | None, str | None, str | None]:
    """A new row without email or phone, named like a client an earlier import created.

    Returns (ClientId, how, None) for exactly one such live client, (None, None, message)
    when several, else (None, None, None).
    """
    if _fold(values.get("Email")) or _digits(values.get("Phone")):
        return None, None, None
    ids = sorted(i for i in created.get((_fold(values.get("FirstName")), _fold(values.get("LastName"))), ())
                 if i in live)
    if len(ids) == 1:
        return ids[0], "an earlier import created a client with this name", None
    if len(ids) > 1:
        return None, None, (f"earlier imports created {len(ids)} clients with this name (ClientIds "
                            f"{', '.join(map(str, ids))}): put the right ClientId in the row")
    return None, None, None


def _plan_update(edit: RowEdit, live_record: dict, live_row: pd.Series, options: Options) -> RowPlan:
    changes, conflicts = [], []
    for col, new in edit.values.items():
        if new is None and edit.matched_by:   # a new row matched to a client: blanks clear nothing
            continue
        current = _value(live_row[col]) if col in live_row.index else None
        if _same(col, current, new):
            continue
        if edit.base is not None:
            base_value = edit.base.get(col)
            staff_changed = not _same(col, current, base_value)
            if staff_changed and not options.prefer_file:
                conflicts.append(Conflict(col, base_value, new, current))
                continue
        changes.append(Change(col, current, new))
    _name_follows(changes, edit, live_row)
    live_tags = _tags(live_record.get("Tags"))
    if edit.tags_exact is not None:
        adds = sorted(edit.tags_exact - live_tags)
        removes = sorted(live_tags - edit.tags_exact)
    else:
        adds = sorted(edit.tags_add - live_tags)
        removes = sorted(edit.tags_remove & live_tags)
    plan = RowPlan(edit.row, edit.client_id, UPDATE, changes=changes, tag_adds=adds,
                   tag_removes=removes, ignored=edit.ignored, message=_matched_note(edit),
                   tags_after=sorted((live_tags | set(adds)) - set(removes)) if adds or removes else None)
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


def _name_follows(changes: list[Change], edit: RowEdit, live_row: pd.Series) -> None:
    """If FirstName or LastName changes and Name was not edited, Name follows them."""
    names = {c.field: c.new for c in changes}
    if "Name" in edit.values or not ({"FirstName", "LastName"} & names.keys()):
        return
    first = names.get("FirstName", _value(live_row.get("FirstName")))
    last = names.get("LastName", _value(live_row.get("LastName")))
    name = " ".join(p for p in (first, last) if p)
    current = _value(live_row.get("Name"))
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
                   name_key=(_fold(values.get("FirstName")), _fold(values.get("LastName"))))


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


def same_new_client_rows(plans) -> list[tuple[int, int, str]]:
    """Two creates IntakeQ would merge (same first name + email, or + phone): the second
    save would replace the first client's profile with its own."""
    seen = _MatchIndex()
    pairs = []
    for plan in plans:
        if getattr(plan, "action", None) != CREATE or not plan.body:
            continue
        body = plan.body
        found, how = seen.find_values(body)
        if found is not None:
            pairs.append((found, plan.row, f"new client, same {how}"))
        else:
            seen.add(plan.row, body.get("FirstName"), body.get("Email"), body.get("Phone"))
    return pairs


# --------------------------------------------------------------------------- bodies


def merged_body(live_record: dict, changes: list[Change], tz: str) -> dict:
    """The live profile with the changed fields merged in: the full client, never partial."""
    body = copy.deepcopy(live_record)
    for change in changes:
        set_api_field(body, change.field, change.new, tz)
    return body


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


# --------------------------------------------------------------------------- matching


class _MatchIndex:
    """IntakeQ's create-or-match rule: first name + email, or first name + phone."""

    def __init__(self):
        self.by_email: dict[tuple[str, str], int] = {}
        self.by_phone: dict[tuple[str, str], int] = {}

    def add(self, cid, first, email, phone) -> None:
        first = _fold(first)
        if not first or cid is None:
            return
        if _fold(email):
            self.by_email.setdefault((first, _fold(email)), int(cid))
        if _digits(phone):
            self.by_phone.setdefault((first, _digits(phone)), int(cid))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | None) -> "_MatchIndex":
        index = cls()
        if frame is None or "FirstName" not in frame.columns:
            return index
        emails = frame["Email"] if "Email" in frame.columns else pd.Series(None, index=frame.index)
        phones = frame["Phone"] if "Phone" in frame.columns else pd.Series(None, index=frame.index)
        for cid, first, email, phone in zip(frame.index, frame["FirstName"], emails, phones):
            index.add(cid, _value(first), _value(email), _value(phone))
        return index

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "_MatchIndex":
        index = cls()
        for r in records:
            index.add(r.get("ClientId"), r.get("FirstName"), r.get("Email"), r.get("Phone"))
        return index

    def find_values(self, values: dict) -> tuple[int | None, str | None]:
        first = _fold(values.get("FirstName"))
        if not first:
            return None, None
        email = _fold(values.get("Email"))
        if email and (first, email) in self.by_email:
            return self.by_email[(first, email)], "first name + email"
        phone = _digits(values.get("Phone"))
        if phone and (first, phone) in self.by_phone:
            return self.by_phone[(first, phone)], "first name + phone"
        return None, None

    def find(self, row: pd.Series) -> tuple[int | None, str | None]:
        return self.find_values({k: _value(row.get(k)) for k in ("FirstName", "Email", "Phone")})


# --------------------------------------------------------------------------- helpers


def _index_by_client_id(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    if frame.index.name == "ClientId":
        return frame
    if "ClientId" not in frame.columns:
        return None
    keyed = frame[frame["ClientId"].notna()]
    return keyed.set_index(keyed["ClientId"].astype("int64"), drop=False).rename_axis("ClientId")


def _client_ids(file: pd.DataFrame) -> list[int | None]:
    if "ClientId" not in file.columns:
        return [None] * len(file)
    return [None if pd.isna(v) else int(v) for v in file["ClientId"]]


def _differs(col: str, file_col: pd.Series, base_col: pd.Series, blank: str) -> np.ndarray:
    """Per row: does the file's cell differ from the base's (normalised; blank rules)?"""
    a = _normalized_values(col, file_col)
    b = _normalized_values(col, base_col)
    a_blank = np.array([v is None or v == () for v in a], dtype=bool)
    differ = ~np.asarray(a == b, dtype=bool)
    if blank == BLANK_KEEP:
        differ &= ~a_blank
    return differ


def _normalized_values(col: str, series: pd.Series) -> np.ndarray:
    frame = pd.DataFrame({col: series.reset_index(drop=True)})
    return normalized_frame(frame, [col])[col].to_numpy(dtype=object)


def _cell_differs(col, file_value, base_value, blank) -> bool:
    if _blank(file_value):
        return blank == BLANK_CLEAR and not _blank(base_value)
    return not _same(col, file_value, base_value)


def _same(col: str, a, b) -> bool:
    return normalized(col, a) == normalized(col, b)


def _value(v):
    """A typed cell as a plain Python value; NA/NaN/"" → None."""
    if v is None:
        return None
    if isinstance(v, (list, tuple, set, frozenset)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    if isinstance(v, str) and v.strip() == "":
        return None
    if hasattr(v, "item") and not isinstance(v, pd.Timestamp):
        return v.item()
    return v


def _blank(v) -> bool:
    return _value(v) is None


def _tags(v) -> set[str]:
    if v is None or (not isinstance(v, (list, tuple, set, frozenset)) and _blank(v)):
        return set()
    if isinstance(v, str):
        return {v}
    return {str(t) for t in v}


def _fold(v) -> str:
    v = _value(v)
    return str(v).strip().casefold() if v is not None else ""


_NON_DIGITS = re.compile(r"\D+")


def _digits(v) -> str:
    v = _value(v)
    return _NON_DIGITS.sub("", str(v)) if v is not None else ""


def days_needed(writes: int, remaining_today: int | None, per_day: int) -> int:
    """How many days (today counting as one) a number of writes needs under the budget."""
    if per_day <= 0 or remaining_today is None or writes <= remaining_today:
        return 1 if writes else 0
    return 1 + math.ceil((writes - remaining_today) / per_day)
