"""Reading another system's file through a mapping (``--map MAPPING.toml``), and the rule
that no column is ever dropped without a word.

A migration starts from another system's export: headers like ``First Name`` or ``DOB``,
dates as ``31/12/1980``, codes like ``M``/``F``. A mapping file says, in TOML::

    [columns]            # source header = IntakeQ field, custom.<FieldId>, or a custom field's label
    "DOB" = "DateOfBirth"
    [dates]              # strftime per source column (overrides --date-format for it)
    "DOB" = "%d/%m/%Y"
    [values.Gender]      # per target field: source value = IntakeQ value
    M = "Male"
    [constants]          # a value for every row
    Tags = "migrated-2026"
    [ignore]
    columns = ["Internal Notes"]

:func:`load_mapping` reads it (every problem of the file itself at once, as one
``MappingError``); :func:`read_mapped` reads a data file through it right after the codec
read it and before validation: the mapped source columns are read as text, renamed to
their IntakeQ field, their values translated and dates read with their format, then typed
as the field's kind by the codec (``etl.codec.text.coerce_column``), so everything after
(validation, base, matching, diff, plan) sees an ordinary file with IntakeQ's headers.
Every name is checked before any request: an unknown target field or custom label, a
source column the file lacks, a non-empty value no ``[values]`` table covers — all said at
once (exit 1). Empty cells stay empty.

Without ``--map`` the same reading applies the one rule that needs no mapping: a header
that is a custom field's label (as the newest export snapshot knows the account's fields)
is that field's ``custom.<FieldId>`` column.

:func:`unknown_columns_problem` is §1 of issue 15: a column that is neither an IntakeQ
field, a read-only export column, nor a custom field is never dropped silently — an error
in a file without a base or with new rows, a loud warning in a file edited from an export.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import fields as F
from ..codec.model import WARNING, Problem, Table
from ..codec.text import MONTH_FIRST, check_date_format, coerce_column, file_date_order, format_column
from ..errors import ConfigError, MappingError

SECTIONS = ("columns", "dates", "values", "constants", "ignore")
CONSTANT = "[constants]"        # the source of a constant column, as the plan names it


@dataclass(frozen=True)
class Mapping:
    """A mapping file as written (names not resolved yet: that needs the data file and the
    account's custom fields, :func:`read_mapped`)."""

    path: Path | None = None
    columns: dict = field(default_factory=dict)      # source header -> target as written
    dates: dict = field(default_factory=dict)        # source header -> strftime format
    values: dict = field(default_factory=dict)       # target as written -> {source value: IntakeQ value}
    constants: dict = field(default_factory=dict)    # target as written -> value
    ignore: tuple = ()                               # source headers left out
    digest: str = ""                                 # sha256 of the file's bytes (checkpoint identity)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "the mapping"


NO_MAPPING = Mapping()


def load_mapping(path) -> Mapping:
    """Read and check a mapping file's own shape; a ``MappingError`` lists every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MappingError(f"--map {path}: no such file") from None
    except OSError as exc:
        raise MappingError(f"--map {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MappingError(f"--map {path}: not UTF-8 text (save the mapping as UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"--map {path}: not valid TOML ({exc}); strings need quotes, e.g. "
                           "\"First Name\" = \"FirstName\"") from None
    problems: list[str] = []
    for section in doc:
        if section not in SECTIONS:
            near = difflib.get_close_matches(section, SECTIONS, n=1)
            problems.append(f"[{section}]: not a section of a mapping" + (f" (did you mean [{near[0]}]?)" if near
                            else f" (they are {', '.join(f'[{s}]' for s in SECTIONS)})"))
    columns = _table_of_strings(doc, "columns", problems)
    dates = _table_of_strings(doc, "dates", problems)
    for source, fmt in dates.items():
        try:
            check_date_format(fmt)
        except ConfigError:
            problems.append(f"[dates] {source!r} = {fmt!r}: not a strftime format with a day, a month and a "
                            "year (e.g. %d/%m/%Y)")
    values: dict[str, dict[str, str]] = {}
    raw_values = doc.get("values", {})
    if not isinstance(raw_values, dict):
        problems.append("[values]: must hold tables, one per target field ([values.Gender])")
        raw_values = {}
    for target, table in raw_values.items():
        if not isinstance(table, dict):
            problems.append(f"[values] {target!r}: must be a table ([values.{target}] with source value = "
                            "IntakeQ value lines)")
            continue
        values[target] = {str(k): v for k, v in _strings(table, f"[values.{target}]", problems).items()}
    constants = _table_of_strings(doc, "constants", problems)
    ignore = doc.get("ignore", {})
    listed = ignore.get("columns", []) if isinstance(ignore, dict) else None
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        problems.append("[ignore]: columns must be a list of header names: columns = [\"Internal Notes\"]")
        listed = []
    if isinstance(ignore, dict):
        problems += [f"[ignore] {k!r}: only columns = [...] goes here" for k in ignore if k != "columns"]
    if problems:
        raise MappingError(_problems_message(path.name, problems))
    return Mapping(path, columns, dates, values, constants, tuple(listed), hashlib.sha256(raw).hexdigest())


def _table_of_strings(doc: dict, section: str, problems: list[str]) -> dict[str, str]:
    table = doc.get(section, {})
    if not isinstance(table, dict):
        problems.append(f"[{section}]: must be a table of \"name\" = \"value\" lines")
        return {}
    return _strings(table, f"[{section}]", problems)


def _strings(table: dict, where: str, problems: list[str]) -> dict[str, str]:
    """The table's values as text (numbers and booleans too: ``1 = 2`` in [values.BillingType])."""
    out = {}
    for key, value in table.items():
        if isinstance(value, bool):
            value = "TRUE" if value else "FALSE"
        if isinstance(value, (str, int, float)):
            out[key] = str(value)
        else:
            problems.append(f"{where} {key!r}: the value must be text in quotes")
    return out


def _problems_message(name: str, problems: list[str]) -> str:
    head = f"{name}: {len(problems)} problem(s) in the mapping; nothing was sent:"
    return "\n".join([head, *(f"  - {p}" for p in problems)])


# --------------------------------------------------------------------------- names


def normalised(name: str) -> str:
    """A header as compared for matching: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).casefold())


def label_index(labels: dict | None) -> dict[str, str]:
    """Custom field label (normalised) -> its ``custom.<FieldId>`` column."""
    return {normalised(label): F.custom_column(fid) for fid, label in (labels or {}).items() if label}


def resolve_target(name: str, labels: dict | None) -> str | None:
    """The column a mapping's target names: an IntakeQ field (exact, or any case), a
    ``custom.<FieldId>`` (checked when the account's fields are known), or a custom field's
    label as the account shows it. None: nothing of that name."""
    name = str(name).strip()
    if name in F.BY_NAME:
        return name
    if F.is_custom(name):
        return name if labels is None or F.custom_field_id(name) in labels else None
    key = normalised(name)
    by_case = {normalised(n): n for n in F.KNOWN_NAMES}
    return by_case.get(key) or label_index(labels).get(key)


def suggestion(name: str, labels: dict | None = None) -> str | None:
    """A known field or custom label a header probably means (``Phone Number`` → Phone,
    ``Emial`` → Email), or None. Spelling only: synonyms are the ``map`` proposal's business."""
    key = normalised(name)
    if not key:
        return None
    names = {normalised(n): n for n in F.KNOWN_NAMES}
    names.update({normalised(label): label for label in (labels or {}).values() if label})
    if key in names:
        return names[key]
    inside = [k for k in names if len(k) >= 4 and key.startswith(k)]
    if inside:
        return names[max(inside, key=len)]
    near = difflib.get_close_matches(key, list(names), n=1, cutoff=0.8)
    return names[near[0]] if near else None


def is_known_column(column: str) -> bool:
    """An IntakeQ field, a read-only export column (registered, undocumented ones too) or a
    ``custom.<FieldId>`` column."""
    return column in F.BY_NAME or F.is_custom(column)


def unknown_columns(columns, exported=()) -> list[str]:
    """The columns that are no IntakeQ field; ``exported``: the base export's columns (an
    API field nobody registered yet is an export's own column, known and read-only)."""
    exported = set(exported)
    return [c for c in columns if not is_known_column(c) and c not in exported]


def is_mappable(target: str) -> bool:
    """A field a mapped column may fill: a writable field, Tags (sent through the tag calls)
    or a custom field. Never ClientId (IntakeQ's own id) nor a read-only column."""
    return target == "Tags" or F.is_custom(target) or F.is_writable(target)


def _read_only(target: str) -> str:
    if target == "ClientId":
        return ("ClientId is IntakeQ's own id, never another system's: map that system's id to "
                "ExternalClientId (new clients are matched by name, email and phone)")
    hint = " (did you mean StateShort?)" if target == "State" else ""
    return f"{target} is read-only in IntakeQ and never sent{hint}: map it to another field, or [ignore] it"


READ_ONLY_CHECK = "read_only_columns"


def read_only_problem(frame: pd.DataFrame) -> Problem | None:
    """One error naming the read-only columns (export columns IntakeQ never takes: State,
    DateCreated, ...) that hold a value in a new row: that value would be dropped without a
    word. ClientId and Tags are not among them."""
    if "ClientId" in frame.columns:
        new = frame[frame["ClientId"].isna()]
    else:
        new = frame
    named = []
    for column in frame.columns:
        if column in F.BY_NAME and not is_mappable(column) and column != "ClientId":
            cells = new[column]
            if bool(cells.notna().any()) and bool((cells.astype("string").str.strip() != "").fillna(False).any()):
                near = "StateShort" if column == "State" else None
                named.append(column + (f" (did you mean {near}?)" if near else ""))
    if not named:
        return None
    are = "column is" if len(named) == 1 else "columns are"
    return Problem(None, None, None, READ_ONLY_CHECK,
                   f"{len(named)} {are} read-only in IntakeQ and never sent for a new client: "
                   f"{', '.join(named)}. Map them to a writable field with --map, or leave them out "
                   "with --ignore-column NAME",
                   "a value there would be dropped without a word")


UNKNOWN_CHECK = "unknown_columns"


def unknown_columns_problem(columns, labels: dict | None, *, fatal: bool, exported=()) -> Problem | None:
    """One problem naming every column that is no IntakeQ field (None: there is none).

    ``fatal``: the file has no base export or holds new rows — nothing would tell the admin
    that the column's data never reached IntakeQ — so it is an error before any request;
    else (a helper column added to an export) a warning, one line naming them all."""
    unknown = unknown_columns(columns, exported)
    if not unknown:
        return None
    named = ", ".join(c + (f" (did you mean {s}?)" if (s := suggestion(c, labels)) else "") for c in unknown)
    are = "column is not an IntakeQ field" if len(unknown) == 1 else "columns are not IntakeQ fields"
    them = "it" if len(unknown) == 1 else "them"
    if fatal:
        return Problem(None, None, None, UNKNOWN_CHECK,
                       f"{len(unknown)} {are}: {named}. Map {them} with --map, or leave {them} out with "
                       "--ignore-column NAME",
                       "intakeq-etl map FILE proposes a mapping; see runbooks/data-migration.md")
    return Problem(None, None, None, UNKNOWN_CHECK,
                   f"{len(unknown)} {are} and never sent: {named}",
                   "rename the header to the field's name, or pass --ignore-column NAME to say it is meant",
                   severity=WARNING)


def has_new_rows(frame: pd.DataFrame) -> bool:
    """A row without ClientId (or no ClientId column at all) is a new client."""
    return "ClientId" not in frame.columns or bool(frame["ClientId"].isna().any())


# --------------------------------------------------------------------------- reading through a mapping


@dataclass
class Mapped:
    """A table read through a mapping: ``table`` has IntakeQ's headers; ``source`` is the
    table as read (the rejects file keeps its rows as they were); ``sources`` maps each
    renamed column to the source column it came from (``[constants]`` for a constant)."""

    table: Table
    source: Table
    sources: dict[str, str] = field(default_factory=dict)


def text_kinds(mapping: Mapping, ignore=()) -> dict[str, str]:
    """Read every source column the mapping uses (or leaves out) as text: its cells are
    translated and typed by the mapping, not by what its header happens to be called."""
    return {c: "text" for c in [*mapping.columns, *mapping.dates, *mapping.ignore, *ignore]}


def read_mapped(path, mapping: Mapping | None = None, *, labels: dict | None, ignore=(), date_format=None,
                **read_options) -> Mapped:
    """Read ``path`` with the codec (``read_options`` as for ``read_table``) and through
    ``mapping`` (None: no mapping, only label headers and ``ignore``)."""
    from ..codec import read_table

    mapping = mapping or NO_MAPPING
    table = read_table(path, date_format=date_format, kinds=text_kinds(mapping, ignore) or None, **read_options)
    return apply_mapping(table, mapping, labels=labels, ignore=ignore, date_format=date_format)


def apply_mapping(table: Table, mapping: Mapping, *, labels: dict | None, ignore=(),
                  date_format: str | None = None) -> Mapped:
    """The table with IntakeQ's headers (pure: reads no file, sends nothing). Raises a
    ``MappingError`` naming every problem: a target that is no field or label, a source
    column the file lacks, two columns for one field, a value no ``[values]`` table covers."""
    frame, rows = table.frame, table.row_numbers
    problems: list[str] = []
    present = list(frame.columns)
    for section, names in (("columns", mapping.columns), ("dates", mapping.dates), ("ignore", mapping.ignore)):
        for source in names:
            if source not in present:
                near = difflib.get_close_matches(source, present, n=1, cutoff=0.6)
                problems.append(f"[{section}] {source!r}: no such column in the file"
                                + (f" (did you mean {near[0]!r}?)" if near else ""))
    for source in ignore:
        if source not in present:
            problems.append(f"--ignore-column {source!r}: no such column in the file")
    left_out = set(mapping.ignore) | set(ignore)
    for source in set(mapping.columns) & left_out:
        problems.append(f"{source!r} is both mapped in [columns] and left out ([ignore] or --ignore-column)")
    for source in mapping.dates:
        if source not in mapping.columns and source in present:
            problems.append(f"[dates] {source!r}: the column is not mapped in [columns]")
    # Each kept column's target: mapped, a label header, or its own name.
    targets: dict[str, str] = {}
    for source in present:
        if source in left_out:
            continue
        if source in mapping.columns:
            wanted = mapping.columns[source]
            target = resolve_target(wanted, labels)
            if target is None:
                problems.append(f"[columns] {source!r} = {wanted!r}: {_not_a_field(wanted, labels)}")
                continue
            if not is_mappable(target):
                problems.append(f"[columns] {source!r} = {wanted!r}: {_read_only(target)}")
                continue
        else:
            target = source if is_known_column(source) else label_index(labels).get(normalised(source), source)
        targets[source] = target
    constants: dict[str, str] = {}
    for wanted, value in mapping.constants.items():
        target = resolve_target(wanted, labels)
        if target is None:
            problems.append(f"[constants] {wanted!r}: {_not_a_field(wanted, labels)}")
        elif not is_mappable(target):
            problems.append(f"[constants] {wanted!r}: {_read_only(target)}")
        else:
            constants[target] = value
    problems += _clashes(targets, constants)
    tables: dict[str, dict[str, str]] = {}
    for wanted, table_ in mapping.values.items():
        target = resolve_target(wanted, labels)
        if target is None:
            problems.append(f"[values.{wanted}]: {_not_a_field(wanted, labels)}")
        elif target not in targets.values():
            problems.append(f"[values.{wanted}]: no column of the file becomes {target}")
        else:
            tables[target] = table_
    for source in mapping.dates:
        target = targets.get(source)
        if target is not None and F.kind_of(target) != "date" and not F.is_custom(target):
            problems.append(f"[dates] {source!r}: its field {target} is not a date field")
    translated: dict[str, np.ndarray] = {}
    uncovered: list[Problem] = []
    for source, target in targets.items():
        if target in tables:
            translated[source], missing = _translate(text_cells(frame[source]), tables[target])
            written = _as_written(mapping, target, labels)
            uncovered += [Problem(int(rows[i]), f"{source} → {target}", value, "mapping_value_not_covered",
                                  f"a value that [values.{written}] does not cover",
                                  f"add it to [values.{written}] in {mapping.name}")
                          for i, value in missing]
    if uncovered:
        by_column: dict[str, list[int]] = {}
        for p in uncovered:
            by_column.setdefault(p.column, []).append(p.row)
        problems += [f"{column}: {len(found_rows)} cell(s) hold a value no [values] table covers (rows "
                     f"{', '.join(map(str, found_rows[:5]))}{', …' if len(found_rows) > 5 else ''}; "
                     "the report lists them)" for column, found_rows in by_column.items()]
    if problems:
        raise MappingError(_problems_message(mapping.name, problems), uncovered)
    if mapping is NO_MAPPING and not left_out and all(s == t for s, t in targets.items()):
        return Mapped(table, table)           # an ordinary file: read as it is

    data: dict[str, pd.Series] = {}
    cell_problems: list[Problem] = []
    sources: dict[str, str] = {}
    for source, target in targets.items():
        if source not in mapping.columns and source == target and target not in tables:
            data[target] = frame[source]
            continue
        text = translated[source] if source in translated else text_cells(frame[source])
        series, found = _typed(text, source, target, rows, mapping.dates.get(source) or date_format, table,
                               as_date=source in mapping.dates)
        data[target] = series
        cell_problems += found
        if source != target:
            sources[target] = source
    for target, value in constants.items():
        series, found = _typed(np.full(len(frame), value, dtype=object), CONSTANT, target, rows, date_format, table)
        data[target] = series
        cell_problems += found
        sources[target] = CONSTANT
    mapped = pd.DataFrame(data, index=frame.index)
    mapped.attrs.update(frame.attrs)          # the export id the file carries
    where = {target: f"{source} → {target}" for target, source in sources.items()}
    renamed = dict(zip(targets, targets.values()))
    problems_out = [dataclasses.replace(p, column=where.get(renamed.get(p.column, p.column), p.column))
                    for p in table.problems if p.column not in left_out]
    out = dataclasses.replace(
        table, frame=mapped, problems=problems_out + cell_problems,
        columns_in_file=[renamed.get(c, c) for c in table.columns_in_file if c not in left_out],
        unknown=frozenset((r, renamed.get(c, c)) for r, c in table.unknown if c not in left_out))
    if mapping is not NO_MAPPING:
        n_mapped = sum(1 for s in sources.values() if s != CONSTANT)
        out.notes = [*table.notes, f"read through {mapping.name}: {n_mapped} column(s) mapped"
                     + (f", {len(constants)} constant(s)" if constants else "")
                     + (f", {len(left_out)} left out" if left_out else "")]
    return Mapped(out, table, sources)


def _not_a_field(name: str, labels: dict | None) -> str:
    if F.is_custom(name):
        known = ", ".join(sorted(labels or {})) or "none"
        return f"the account has no custom field with this id (its fields: {known})"
    near = suggestion(name, labels)
    hint = f" (did you mean {near}?)" if near else ""
    if labels is None:
        return (f"not an IntakeQ field{hint}, and the account's custom-field labels are unknown (no export "
                "snapshot in this state dir: run an export first, or write custom.<FieldId>)")
    return f"neither an IntakeQ field nor a custom field's label{hint}"


def _clashes(targets: dict[str, str], constants: dict[str, str]) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for source, target in targets.items():
        if target in seen:
            out.append(f"{seen[target]!r} and {source!r} would both become {target}: map one of them elsewhere "
                       "or leave it out")
        seen.setdefault(target, source)
    out += [f"[constants] {target}: the file has a column for it already ({seen[target]!r})"
            for target in constants if target in seen]
    return out


def _as_written(mapping: Mapping, target: str, labels) -> str:
    return next((w for w in mapping.values if resolve_target(w, labels) == target), target)


def text_cells(series: pd.Series) -> np.ndarray:
    """A column read as text: its cells as str, None for empty (any string dtype)."""
    out = format_column(series, "text", formula_guard=False)
    out[out == ""] = None
    return out


def _translate(text: np.ndarray, table: dict[str, str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Source values → IntakeQ values (exact, else ignoring case and edge spaces); the
    positions whose non-empty value the table does not cover."""
    folded = {k.strip().casefold(): v for k, v in table.items()}
    out = text.copy()
    missing = []
    for i, value in enumerate(text):
        if value is None or not value.strip():
            out[i] = None
        elif value in table:
            out[i] = table[value]
        elif value.strip().casefold() in folded:
            out[i] = folded[value.strip().casefold()]
        else:
            missing.append((i, value))
    return out, missing


def _typed(text: np.ndarray, source: str, target: str, rows, date_format: str | None, table: Table, *,
           as_date: bool = False):
    """Text cells typed as the target's kind by the codec; problems name ``source → target``.

    A date cell is read with the source column's [dates] format (else --date-format, else
    the file's date order, made unknown by the column's own dates when they contradict it);
    a custom field given a [dates] format (``as_date``) gets the date as yyyy-MM-dd."""
    kind = F.kind_of(target)
    if kind == "text" and F.is_custom(target) and as_date:
        kind = "date"
    arr = pa.array([None if v is None or v == "" else str(v) for v in text], pa.string())
    order = table.date_order or MONTH_FIRST
    if kind == "date" and not date_format:
        order = file_date_order(order, [arr])
    series, problems = coerce_column(arr, target, kind, row_numbers=rows, formula_guard=False,
                                     date_format=date_format, date_order=order)
    if kind == "date" and F.kind_of(target) == "text":
        series = series.astype("string")
    series.index = table.frame.index
    where = f"{source} → {target}"
    return series, [dataclasses.replace(p, column=where) for p in problems]


def relabel(problems, sources: dict[str, str]) -> list[Problem]:
    """Problems found on mapped columns name the source column too (``DOB → DateOfBirth``)."""
    if not sources:
        return list(problems)
    return [dataclasses.replace(p, column=f"{sources[p.column]} → {p.column}") if p.column in sources else p
            for p in problems]


def newest_labels(stores) -> dict | None:
    """FieldId → label of the account's custom fields, from the newest export snapshot of
    ``stores`` (``SnapshotStore``s); None when no snapshot says (unknown, not "none")."""
    from ..state.snapshots import watermark_epoch

    newest = None
    for store in stores:
        for export_id, meta in store.list():      # newest first
            if isinstance(meta.get("custom_fields"), dict):
                stamp = (watermark_epoch(meta) or 0.0, export_id)
                if newest is None or stamp > newest[0]:
                    newest = (stamp, meta["custom_fields"])
                break
    if newest is None:
        return None
    return {str(k): str(v or "") for k, v in newest[1].items()}


class _AllText(dict):
    """Column kinds that read every column as text (``read_table(kinds=ALL_TEXT)``)."""

    def __contains__(self, column) -> bool:
        return True

    def __getitem__(self, column) -> str:
        return "text"

    def __bool__(self) -> bool:
        return True


ALL_TEXT = _AllText()
