"""Cells as text: how each kind is written in CSV/XLSX, and read back (vectorised).

Writing (:func:`format_column`) turns a typed column into strings; reading
(:func:`coerce_column`) turns a column of strings, as a file or a spreadsheet left them,
into a typed column plus one :class:`Problem` per cell that cannot be read. Reading is
done with pyarrow compute kernels over whole columns, never cell by cell in Python
(except tags that contain escapes).

Cell formats
------------
* int / enum: ``123``; also read: ``123.0``, ``+123``, surrounding spaces; enum also its
  label (``SelfPay``).
* float: shortest repr (``12.5``).
* bool: ``TRUE`` / ``FALSE``; also read: true/false, t/f, yes/no, y/n, 1/0 (any case).
* date: ``yyyy-MM-dd``; also read: ``N/N/YYYY`` in the file's date order (month first as
  US Excel writes it; day first in a ;-separated file, as European Excel writes it; unknown
  when the file's own dates contradict that, and then a date that reads both ways is an
  error), ``D.M.YYYY`` (day first), ``yyyy-MM-dd 00:00:00``, or the ``date_format`` given
  (strftime codes).
* instant: ISO 8601 UTC with milliseconds, ``2025-04-12T04:38:06.643Z``; also read any
  ISO 8601 form (offsets, no fraction, space separator) and ``M/D/YYYY H:MM``.
* tags: ``a; b; c``. In a tag, ``\\`` is written ``\\\\`` and ``;`` ``\\;``; a tag's
  leading/trailing whitespace is escaped too (``\\ ``), because reading strips the
  unescaped whitespace around each tag (so ``a;b`` and ``a ; b`` read as ``[a, b]``).
  Any other backslash is literal (``C:\\temp`` is read as typed).
* any kind: a spreadsheet error value (``#N/A``, ``#REF!``, ...) is an error, never data.
* linked: ``123:Parent; 211:Spouse`` (read-only, kept as text).
* text: as is; empty cell = NA.

Formula guard: a text-like cell (text, tags, linked) that begins with ``= + - @``, tab, CR
or ``'`` is written with one extra leading ``'``; reading removes one leading ``'`` when
the next character is one of those. The round trip is exact.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import fields
from ..clock import iso_ms
from ..errors import ConfigError
from .model import ERROR, Problem

GUARD_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
TEXT_LIKE = ("text", "tags", "linked")

TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_WORDS = ("false", "f", "no", "n", "0", "0.0")

_NULL_STR = pa.scalar(None, pa.string())
_TRIGGERS_ARR = pa.array(GUARD_TRIGGERS, pa.string())


def kind_for(column: str, kinds=None) -> str:
    """The kind of a column: an explicit override (e.g. the diagnoses table), else fields.py."""
    if kinds and column in kinds:
        return kinds[column]
    return fields.kind_of(column)


# ---------------------------------------------------------------- formula guard (scalar)
def guard(text: str) -> str:
    """One leading ' for a cell a spreadsheet would run as a formula (or that starts with ')."""
    return "'" + text if text[:1] in GUARD_TRIGGERS else text


def unguard(text: str) -> str:
    """Undo :func:`guard`: drop one leading ' when a trigger character follows it."""
    if len(text) >= 2 and text[0] == "'" and text[1] in GUARD_TRIGGERS:
        return text[1:]
    return text


def _guard_array(arr: pa.Array) -> pa.Array:
    first = pc.utf8_slice_codeunits(arr, 0, 1)
    mask = pc.fill_null(pc.is_in(first, value_set=_TRIGGERS_ARR), False)
    if not pc.any(mask).as_py():
        return arr
    return pc.if_else(mask, pc.binary_join_element_wise("'", arr, ""), arr)


def _unguard_array(arr: pa.Array) -> pa.Array:
    starts = pc.fill_null(pc.starts_with(arr, "'"), False)
    if not pc.any(starts).as_py():
        return arr
    second = pc.utf8_slice_codeunits(arr, 1, 2)
    mask = pc.and_(starts, pc.fill_null(pc.is_in(second, value_set=_TRIGGERS_ARR), False))
    return pc.if_else(mask, pc.utf8_slice_codeunits(arr, 1, 1 << 30), arr)


# ---------------------------------------------------------------- tags
def _escape_tag(tag: str) -> str:
    if "\\" not in tag and ";" not in tag and tag.strip() == tag:
        return tag                      # nearly every tag: nothing to escape
    lead = len(tag) - len(tag.lstrip())
    trail_start = len(tag.rstrip())
    out = []
    for i, ch in enumerate(tag):
        if ch in "\\;" or (ch.isspace() and (i < lead or i >= trail_start)):
            out.append("\\" + ch)  # escaped edge whitespace survives the strip on reading
        else:
            out.append(ch)
    return "".join(out)


def encode_tags(tags) -> str:
    """A list of tags as one cell: ``a; b``, with ``\\`` ``;`` and edge whitespace escaped."""
    if tags is None:
        return ""
    return "; ".join(_escape_tag(str(t)) for t in tags if t is not None and str(t) != "")


_ESCAPED = "\\;"        # the characters a backslash escapes anywhere in a tag


def _tag_tokens(cell: str):
    r"""``(char, escaped)`` pairs of a tags cell. ``\\`` and ``\;`` are escapes anywhere;
    ``\`` before whitespace is a candidate edge escape (see :func:`_edge_escapes`); any
    other backslash is literal (``C:\temp`` keeps it: people type paths and emoticons)."""
    tokens, i, n = [], 0, len(cell)
    while i < n:
        ch = cell[i]
        if ch == "\\" and i + 1 < n and (cell[i + 1] in _ESCAPED or cell[i + 1].isspace()):
            tokens.append((cell[i + 1], True))
            i += 2
        else:
            tokens.append((ch, False))
            i += 1
    return tokens


def _edge_escapes(segment) -> str:
    r"""One tag from its tokens: unescaped edge whitespace stripped, escaped edge whitespace
    kept, and an escaped whitespace inside the tag read back as the literal ``\\ `` it was."""
    start, end = 0, len(segment)
    while start < end and not segment[start][1] and segment[start][0].isspace():
        start += 1
    while end > start and not segment[end - 1][1] and segment[end - 1][0].isspace():
        end -= 1
    kept = segment[start:end]
    lead = 0
    while lead < len(kept) and kept[lead][1] and kept[lead][0].isspace():
        lead += 1
    trail = len(kept)
    while trail > lead and kept[trail - 1][1] and kept[trail - 1][0].isspace():
        trail -= 1
    out = []
    for i, (ch, escaped) in enumerate(kept):
        inner_space_escape = escaped and ch.isspace() and lead <= i < trail
        out.append("\\" + ch if inner_space_escape else ch)
    return "".join(out)


def decode_tags(cell) -> list[str]:
    r"""Read a tags cell: split on unescaped ``;``, strip unescaped whitespace, drop empties.

    Only ``\;``, ``\\`` and ``\`` + whitespace at a tag's edge are escapes
    (what :func:`encode_tags` writes); every other backslash is part of the tag.
    """
    if cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)):
        return []
    if "\\" not in cell:
        return [p for p in (part.strip() for part in cell.split(";")) if p]
    held = cell.replace("\\\\", "\0")
    if "\0" not in cell and "\1" not in cell and not _ESCAPED_SPACE.search(held):
        # Only \\ and \; escapes (what encode_tags writes for tags without edge spaces):
        # held as NUL and SOH while the cell is split and stripped, then put back.
        held = held.replace("\\;", "\1")
        return [p.replace("\0", "\\").replace("\1", ";") for p in (part.strip() for part in held.split(";")) if p]
    return _decode_tags_by_token(cell)


_ESCAPED_SPACE = re.compile(r"\\\s")     # a backslash before what str.isspace() calls whitespace


def _decode_tags_by_token(cell: str) -> list[str]:
    """:func:`decode_tags` a token at a time: any cell, escaped edge whitespace included."""
    tags: list[str] = []
    segment: list = []
    for token in _tag_tokens(cell) + [(";", False)]:
        if token == (";", False):
            tag = _edge_escapes(segment)
            if tag:
                tags.append(tag)
            segment = []
        else:
            segment.append(token)
    return tags


# ---------------------------------------------------------------- linked clients
def format_linked(links) -> str | None:
    """LinkedClients (list of {ClientNumber, RelationshipType}) as ``123:Parent; 211:Spouse``."""
    if not links:
        return None
    parts = []
    for link in links:
        if not isinstance(link, dict):
            parts.append(str(link))
            continue
        number = link.get("ClientNumber", link.get("ClientId"))
        rel = link.get("RelationshipType")
        name = fields.RELATIONSHIP_TYPES.get(rel, "" if rel is None else str(rel))
        parts.append(f"{number}:{name}")
    return "; ".join(parts)


def parse_linked(cell) -> list[dict]:
    """The inverse of :func:`format_linked` (for API-shaped records)."""
    if cell is None or cell is pd.NA or not str(cell).strip():
        return []
    by_name = {v.lower(): k for k, v in fields.RELATIONSHIP_TYPES.items()}
    out = []
    for part in str(cell).split(";"):
        part = part.strip()
        if not part:
            continue
        number, _, rel = part.partition(":")
        number = number.strip()
        rel = rel.strip()
        num = int(number) if number.lstrip("-").isdigit() else number
        if rel.lower() in by_name:
            code = by_name[rel.lower()]
        elif rel.lstrip("-").isdigit():
            code = int(rel)
        else:
            code = None
        out.append({"ClientNumber": num, "RelationshipType": code})
    return out


# ---------------------------------------------------------------- writing
def utc_ms(series: pd.Series) -> np.ndarray:
    """An instant column as naive UTC ``datetime64[ms]`` (floored, as files hold them; NaT
    stays NaT), without a Timestamp object a cell."""
    s = series if isinstance(series.dtype, pd.DatetimeTZDtype) else pd.to_datetime(series, utc=True)
    return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ms]")


def format_instants(series: pd.Series) -> np.ndarray:
    """datetime64 UTC → ``2025-04-12T04:38:06.643Z`` ("" for NaT)."""
    s = pd.to_datetime(series, utc=True)
    values = utc_ms(s)
    out = np.char.add(np.datetime_as_string(values, unit="ms").astype(object), "Z")
    out = out.astype(object)
    out[pd.isna(s).to_numpy()] = ""
    return out


def _float_text(v) -> str:
    f = float(v)
    return repr(f)


def format_column(series: pd.Series, kind: str, *, formula_guard: bool = True) -> np.ndarray:
    """A typed column as the strings written in a CSV (an object array, "" for NA)."""
    n = len(series)
    if kind in ("int", "enum"):
        s = pd.array(series, dtype="Int64") if series.dtype != "Int64" else series.array
        out = np.full(n, "", dtype=object)
        mask = ~pd.isna(s)
        if mask.any():
            out[mask] = np.asarray(s[mask], dtype=np.int64).astype(str)
        return out
    if kind == "float":
        s = pd.array(series, dtype="Float64") if series.dtype != "Float64" else series.array
        mask = ~pd.isna(s)
        out = np.full(n, "", dtype=object)
        out[mask] = [_float_text(v) for v in np.asarray(s[mask], dtype=float)]
        return out
    if kind == "bool":
        out = np.full(n, "", dtype=object)
        s = series.astype("boolean")
        mask = ~s.isna().to_numpy()
        vals = s.to_numpy(dtype=bool, na_value=False)
        out[mask & vals] = "TRUE"
        out[mask & ~vals] = "FALSE"
        return out
    if kind == "instant":
        return format_instants(series)
    if kind == "date":
        values = series.to_numpy(dtype=object, na_value="")
        return np.array([_date_text(v) for v in values], dtype=object) if n else values
    if kind == "tags":
        values = [encode_tags(v) if isinstance(v, (list, tuple, np.ndarray)) else
                  ("" if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else str(v))
                  for v in series.tolist()]
        arr = pa.array(values, pa.string())
    else:  # text, linked
        arr = _to_arrow_strings(series)
    if formula_guard:
        arr = _guard_array(arr)
    return arr.to_numpy(zero_copy_only=False).astype(object)


def _date_text(v) -> str:
    if v is None or v is pd.NA or v == "":
        return ""
    if isinstance(v, (datetime, pd.Timestamp)):
        return v.strftime("%Y-%m-%d") if v.year >= 1000 else f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    if isinstance(v, date):
        return f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    return str(v)


def _to_arrow_strings(series: pd.Series) -> pa.Array:
    """Any column as arrow strings with "" for NA."""
    if isinstance(series.dtype, pd.StringDtype):
        return pc.fill_null(arrow_strings(series), "")
    if series.dtype == object:
        values = series.to_numpy(dtype=object, na_value="")
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = ["" if v is None or v is pd.NA else str(v) for v in values]
            return pa.array(values, pa.string())
    values = series.astype("string").to_numpy(dtype=object, na_value="")
    return pa.array(values, pa.string())


# ---------------------------------------------------------------- reading
def _is_blank(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(arr, ""), True)


def _nonblank_bad(ok: pa.Array, blank: pa.Array) -> np.ndarray:
    """Row positions that have a value which did not parse."""
    bad = pc.and_(pc.invert(pc.fill_null(ok, False)), pc.invert(blank))
    return np.flatnonzero(bad.to_numpy(zero_copy_only=False))


def _problems(positions, raw: pa.Array, column, row_numbers, check, message, hint):
    if len(positions) == 0:
        return []
    values = raw.take(pa.array(positions, pa.int64())).to_pylist()
    return [Problem(row=int(row_numbers[i]), column=column, value=v, check=check,
                    message=message, hint=hint, severity=ERROR)
            for i, v in zip(positions, values)]


_INT_RE = r"^[+-]?\d{1,18}(\.0*)?$"
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _coerce_int(arr, trimmed, blank, column, rows, enum: bool):
    ok = pc.match_substring_regex(trimmed, _INT_RE)
    clean = pc.replace_substring_regex(trimmed, r"^\+|\.0*$", "")
    clean = pc.if_else(pc.fill_null(ok, False), clean, _NULL_STR)
    values = pc.cast(clean, pa.int64())
    if enum and column == "BillingType":
        labels = {v.lower(): k for k, v in fields.BILLING_TYPES.items()}
        lower = pc.utf8_lower(trimmed)
        is_label = pc.fill_null(pc.is_in(lower, value_set=pa.array(list(labels))), False)
        if pc.any(is_label).as_py():
            mapped = pa.array([labels.get(v) if v is not None else None
                               for v in lower.to_pylist()], pa.int64())
            values = pc.if_else(is_label, mapped, values)
            ok = pc.or_(pc.fill_null(ok, False), is_label)
    bad = _nonblank_bad(ok, blank)
    check = "enum_parses" if enum else "integer_parses"
    message = "not a whole number" if not enum else "not a code number"
    hint = ("write the code: " + ", ".join(f"{k} {v}" for k, v in fields.BILLING_TYPES.items())
            if column == "BillingType" else "write a whole number, e.g. 123")
    series = pd.Series(values.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), dtype="Int64")
    return series, _problems(bad, arr, column, rows, check, message, hint)


def _coerce_float(arr, trimmed, blank, column, rows):
    ok = pc.match_substring_regex(trimmed, _FLOAT_RE)
    clean = pc.if_else(pc.fill_null(ok, False), trimmed, _NULL_STR)
    values = pc.cast(clean, pa.float64())
    bad = _nonblank_bad(ok, blank)
    series = pd.Series(values.to_numpy(zero_copy_only=False), dtype="Float64")
    return series, _problems(bad, arr, column, rows, "number_parses", "not a number",
                             "write a number with a dot for decimals, e.g. 12.50")


def _coerce_bool(arr, trimmed, blank, column, rows):
    lower = pc.utf8_lower(trimmed)
    is_true = pc.fill_null(pc.is_in(lower, value_set=pa.array(TRUE_WORDS)), False)
    is_false = pc.fill_null(pc.is_in(lower, value_set=pa.array(FALSE_WORDS)), False)
    ok = pc.or_(is_true, is_false)
    bad = _nonblank_bad(ok, blank)
    t = is_true.to_numpy(zero_copy_only=False)
    f = is_false.to_numpy(zero_copy_only=False)
    out = pd.array(t, dtype="boolean")
    out[~(t | f)] = pd.NA
    return pd.Series(out), _problems(bad, arr, column, rows, "bool_parses", "not TRUE or FALSE",
                                     "write TRUE or FALSE")


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])

# The order of a slash date's day and month: a reading option, like ``date_format``.
# US Excel writes M/D/YYYY, European Excel (whose CSVs are ;-separated) D/M/YYYY; when a
# file's own dates contradict the order it was assumed to have, the order is unknown and a
# date that reads both ways (5/10/1964) is an error, never a guess.
MONTH_FIRST, DAY_FIRST, ORDER_UNKNOWN = "month-first", "day-first", "unknown"

_DATE_PATTERNS = (
    # (regex with named groups y, m, d) in order of precedence; slash dates apart (_SLASH_DATE)
    r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[ T]00:00(?::00(?:\.0+)?)?Z?)?$",
    r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})$",
)
_SLASH_DATE = r"^(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})(?: 0?0:00(?::00)?)?$"
_LOOKS_LIKE_DATE = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"


def _groups_from_regex(trimmed: pa.Array, pattern: str, names: str):
    """One int64 array (null where no match) per named group of ``pattern``."""
    st = pc.extract_regex(trimmed, pattern)
    valid = pc.is_valid(st)

    def part(name):
        text = pc.if_else(valid, pc.struct_field(st, name), _NULL_STR)
        return pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)

    return [part(name) for name in names]


def ymd_to_iso(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised: (valid mask, 'yyyy-MM-dd' strings) from year/month/day arrays (-1 = missing)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mm = np.clip(m, 0, 12)
    dim = _DAYS_IN_MONTH[mm] + ((mm == 2) & leap)
    valid = (y >= 1) & (y <= 9999) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)
    out = np.full(len(y), None, dtype=object)
    if valid.any():
        yy, mo, dd = y[valid], m[valid], d[valid]
        # days since 1970-01-01 (Howard Hinnant's days_from_civil), then numpy formats them
        yy2 = yy - (mo <= 2)
        era = np.floor_divide(yy2, 400)
        yoe = yy2 - era * 400
        doy = (153 * (mo + np.where(mo > 2, -3, 9)) + 2) // 5 + dd - 1
        doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
        days = era * 146097 + doe - 719468
        out[valid] = days.astype("datetime64[D]").astype(str).astype(object)
    return valid, out


def _slash_parts(trimmed: pa.Array):
    """(first, second, year, is_slash_date) of cells written ``N/N/YYYY`` (NaN elsewhere)."""
    first, second, year = _groups_from_regex(trimmed, _SLASH_DATE, "aby")
    hit = ~np.isnan(first.astype(float))
    return first, second, year, hit


def _reads_both_ways(first, second, hit) -> np.ndarray:
    """Slash dates that are two different valid dates read day-first and month-first."""
    with np.errstate(invalid="ignore"):
        return hit & (first <= 12) & (second <= 12) & (first != second)


def _match_dates(trimmed: pa.Array, order: str = MONTH_FIRST, patterns=_DATE_PATTERNS):
    """(y, m, d, matched, ambiguous) for cells written as a date (-1 = no match).

    ``ambiguous`` marks slash dates left unread because the order is unknown and they
    read both ways (``5/10/1964``); with a known order there are none.
    """
    n = len(trimmed)
    y, m, d = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    matched = np.zeros(n, dtype=bool)
    for pattern in patterns:
        yy, mm, dd = _groups_from_regex(trimmed, pattern, "ymd")
        hit = ~matched & ~np.isnan(yy.astype(float))
        y[hit], m[hit], d[hit] = yy[hit], mm[hit], dd[hit]
        matched |= hit
    ambiguous = np.zeros(n, dtype=bool)
    if order is None:       # --date-format replaces the slash rule
        return y, m, d, matched, ambiguous
    first, second, year, hit = _slash_parts(trimmed)
    hit &= ~matched
    if order == ORDER_UNKNOWN:
        ambiguous = _reads_both_ways(first, second, hit)
        hit &= ~ambiguous
        with np.errstate(invalid="ignore"):
            day_first = hit & (first > 12)     # the only way these read
    else:
        day_first = hit if order == DAY_FIRST else np.zeros(n, dtype=bool)
    month_first = hit & ~day_first
    y[hit] = year[hit]
    m[month_first], d[month_first] = first[month_first], second[month_first]
    m[day_first], d[day_first] = second[day_first], first[day_first]
    return y, m, d, matched | hit, ambiguous


def file_date_order(order: str | None, columns) -> str:
    """The order a file's slash dates are read in: ``order`` (default month-first), unless
    the file's own date cells (``columns``: arrow string arrays) hold dates that read only
    the other way (``22/08/2026`` in a month-first file): then the order is unknown."""
    order = order or MONTH_FIRST
    if order == ORDER_UNKNOWN:
        return order
    for arr in columns:
        first, second, _, hit = _slash_parts(pc.utf8_trim_whitespace(arr))
        with np.errstate(invalid="ignore"):
            other_way_only = hit & ((first > 12) if order == MONTH_FIRST else (second > 12))
        if other_way_only.any():
            return ORDER_UNKNOWN
    return order


def date_order_of_format(date_format: str) -> str:
    """The order a --date-format gives slash dates (and date-looking custom fields)."""
    day, month = date_format.find("%d"), date_format.find("%m")
    return DAY_FIRST if 0 <= day < month or (day >= 0 and month < 0) else MONTH_FIRST


def has_slash_dates(columns) -> bool:
    """Do any of ``columns`` (arrow string arrays) hold a slash date (``5/10/1964``)?"""
    return any(_slash_parts(pc.utf8_trim_whitespace(arr))[3].any() for arr in columns)


def may_hold_dates(column: str, kinds=None) -> bool:
    """Date columns, and custom fields (text to IntakeQ, but often dates a spreadsheet rewrote)."""
    return kind_for(column, kinds) == "date" or fields.is_custom(column)


def check_date_format(date_format: str | None) -> None:
    """A ConfigError for a --date-format that cannot read a day, a month and a year."""
    if not date_format:
        return
    sample = datetime(1990, 3, 25)
    try:
        parsed = pd.to_datetime(pd.Series([sample.strftime(date_format)]), format=date_format,
                                errors="coerce").iloc[0]
    except (ValueError, TypeError):
        parsed = pd.NaT
    if pd.isna(parsed) or parsed.date() != sample.date():
        raise ConfigError(f"--date-format {date_format!r} does not read dates: use strftime codes "
                          "with a day, a month and a year, e.g. %d/%m/%Y")


AMBIGUOUS_MESSAGE = "a date that reads two ways (day/month or month/day), in a file whose date order is not known"
AMBIGUOUS_HINT = ("pass --date-format %d/%m/%Y (day first) or %m/%d/%Y (month first), or write the date "
                  "as yyyy-MM-dd")


def _ambiguous_problems(positions, raw, column, rows):
    return _problems(positions, raw, column, rows, "date_ambiguous", AMBIGUOUS_MESSAGE, AMBIGUOUS_HINT)


def _coerce_date(arr, trimmed, blank, column, rows, date_format, date_order):
    y, m, d, matched, ambiguous = _match_dates(trimmed, None if date_format else date_order,
                                               _DATE_PATTERNS[:1] if date_format else _DATE_PATTERNS)
    blank_np = blank.to_numpy(zero_copy_only=False)
    if date_format:
        rest = np.flatnonzero(~matched & ~blank_np)
        if len(rest):
            texts = pd.Series(trimmed.take(pa.array(rest)).to_pylist(), dtype=object)
            parsed = pd.to_datetime(texts, format=date_format, errors="coerce")
            ok = parsed.notna().to_numpy()
            idx = rest[ok]
            y[idx] = parsed.dt.year.to_numpy()[ok]
            m[idx] = parsed.dt.month.to_numpy()[ok]
            d[idx] = parsed.dt.day.to_numpy()[ok]
    valid, out = ymd_to_iso(y, m, d)
    bad = np.flatnonzero(~valid & ~blank_np & ~ambiguous)
    order_words = {MONTH_FIRST: "M/D/YYYY", DAY_FIRST: "D/M/YYYY"}.get(date_order, "N/N/YYYY")
    hint = ("write the date as yyyy-MM-dd, e.g. 1990-03-05"
            + (f" (or in the --date-format {date_format})" if date_format else
               f" ({order_words} and D.M.YYYY are also read)"))
    series = pd.Series(pd.array(out, dtype=fields.TEXT_DTYPE))
    return series, (_problems(bad, arr, column, rows, "date_parses", "not a date", hint)
                    + _ambiguous_problems(np.flatnonzero(ambiguous), arr, column, rows))


def _ambiguous_custom_dates(arr, column, rows, date_order) -> list[Problem]:
    """A custom field's date-looking cell that reads both ways in a file of unknown order:
    it cannot be compared with its exported date, so it is an error like a date column's."""
    if date_order != ORDER_UNKNOWN or not fields.is_custom(column):
        return []
    trimmed = pc.utf8_trim_whitespace(arr)
    first, second, _, hit = _slash_parts(trimmed)
    return _ambiguous_problems(np.flatnonzero(_reads_both_ways(first, second, hit)), arr, column, rows)


def parse_instants(values: pd.Series) -> pd.Series:
    """Strings → datetime64[ns, UTC] (NaT where unreadable)."""
    out = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    retry = out.isna() & values.notna()
    if retry.any():
        out[retry] = pd.to_datetime(values[retry], format="mixed", utc=True, errors="coerce")
    return out


def _coerce_instant(arr, trimmed, blank, column, rows):
    values = pd.Series(pc.if_else(blank, _NULL_STR, trimmed).to_numpy(zero_copy_only=False), dtype=object)
    out = parse_instants(values)
    ok = pa.array(out.notna().to_numpy())
    bad = _nonblank_bad(ok, blank)
    return out.astype("datetime64[ns, UTC]"), _problems(
        bad, arr, column, rows, "instant_parses", "not a date and time",
        "write it as ISO 8601 UTC, e.g. 2025-04-12T04:38:06.643Z")


# Cells :func:`decode_tags` reads one by one: escapes, and the separators (U+001C-U+001F)
# that Python's strip() takes for whitespace and Arrow's trim does not.
_TAGS_BY_HAND = r"[\\\x1c-\x1f]"


def _coerce_tags(arr):
    """A tags column → a Series of lists, as :func:`decode_tags` reads each cell; the cells
    without an escape are split and trimmed in Arrow (a Python call a cell was 1.5 s at
    100,000 rows)."""
    n = len(arr)
    if n == 0:
        return pd.Series([], dtype=object)
    by_hand = pc.fill_null(pc.match_substring_regex(arr, _TAGS_BY_HAND), False)
    parts = pc.split_pattern(pc.if_else(by_hand, _NULL_STR, arr), ";")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents[keep], minlength=n), out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep))).to_pylist()
    for i in np.flatnonzero(by_hand.to_numpy(zero_copy_only=False)):
        lists[i] = decode_tags(arr[int(i)].as_py())
    return pd.Series(object_array(lists), dtype=object)


def string_series(arr: pa.Array) -> pd.Series:
    """Arrow strings → pandas ``string[pyarrow]`` (``fields.TEXT_DTYPE``), "" as NA."""
    arr = pc.if_else(_is_blank(arr), _NULL_STR, arr)
    return pd.Series(pd.StringDtype("pyarrow").__from_arrow__(arr))


# Excel's, LibreOffice's and Google Sheets' error values: what a cell shows when its formula
# failed. Saved to CSV they are plain text, and were sent as data (a Phone of #N/A).
_SPREADSHEET_ERRORS = (r"^(?:#N/A|#REF!|#VALUE!|#DIV/0!|#NAME\?|#NUM!|#NULL!|#SPILL!|#CALC!|"
                       r"#GETTING_DATA|#FIELD!|#BLOCKED!|#CONNECT!|#BUSY!|#UNKNOWN!|#EXTERNAL!|"
                       r"#ERROR!|Err:\d{3})$")


def is_spreadsheet_error(text) -> bool:
    return isinstance(text, str) and re.match(_SPREADSHEET_ERRORS, text.strip()) is not None


def _take_out_spreadsheet_errors(arr: pa.Array, column, rows) -> tuple[pa.Array, list[Problem]]:
    """Spreadsheet error values become empty cells plus one error each: never data."""
    if not pc.any(pc.or_(pc.match_substring(arr, "#"), pc.match_substring(arr, "Err:"))).as_py():
        return arr, []                      # every error value holds one of these: no regex needed
    found = pc.fill_null(pc.match_substring_regex(pc.utf8_trim_whitespace(arr), _SPREADSHEET_ERRORS), False)
    if not pc.any(found).as_py():
        return arr, []
    problems = _problems(np.flatnonzero(found.to_numpy(zero_copy_only=False)), arr, column, rows,
                         "spreadsheet_error_value", "a spreadsheet error value, not data",
                         "fix the formula that shows it, or type the value in place of the error")
    return pc.if_else(found, _NULL_STR, arr), problems


def coerce_column(arr: pa.Array, column: str, kind: str, *, row_numbers, formula_guard=True,
                  date_format=None, guarded=True, date_order=MONTH_FIRST) -> tuple[pd.Series, list[Problem]]:
    """A column of cells as text (arrow strings, null = empty) → typed Series and problems.

    ``guarded`` says whether the file format carries the formula guard (CSV/XLSX yes,
    Parquet no). ``date_order`` is how slash dates read (:func:`file_date_order`).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.type != pa.string():
        arr = pc.cast(arr, pa.string())
    arr, errors = _take_out_spreadsheet_errors(arr, column, row_numbers)
    series, problems = _coerce_by_kind(arr, column, kind, row_numbers, formula_guard and guarded,
                                       date_format, date_order)
    return series, errors + problems


def _coerce_by_kind(arr, column, kind, rows, unguard, date_format, date_order):
    if kind in TEXT_LIKE:
        if unguard:
            arr = _unguard_array(arr)
        if kind == "tags":
            return _coerce_tags(arr), []
        return string_series(arr), _ambiguous_custom_dates(arr, column, rows, date_order)
    trimmed = pc.utf8_trim_whitespace(arr)
    blank = _is_blank(trimmed)
    if kind in ("int", "enum"):
        return _coerce_int(arr, trimmed, blank, column, rows, enum=kind == "enum")
    if kind == "float":
        return _coerce_float(arr, trimmed, blank, column, rows)
    if kind == "bool":
        return _coerce_bool(arr, trimmed, blank, column, rows)
    if kind == "date":
        return _coerce_date(arr, trimmed, blank, column, rows, date_format, date_order)
    if kind == "instant":
        return _coerce_instant(arr, trimmed, blank, column, rows)
    raise ValueError(f"unknown kind {kind!r}")


def coerce_columns(names, arrays, *, row_numbers, kinds=None, formula_guard=True,
                   date_format=None, guarded=True, date_order=None) -> tuple[pd.DataFrame, list[Problem]]:
    """Coerce every column of a text table; returns the typed frame and all cell problems.

    ``date_order`` is the order slash dates are assumed to have (default month-first);
    the file's own dates may make it unknown (:func:`file_date_order`). A list of
    ``arrays`` is emptied (None) as its columns are typed, so each column's raw text is
    freed as soon as it is read (a reader holds the file's text and its typed frame, not
    both whole).
    """
    if date_format:
        date_order = date_order_of_format(date_format)
    else:
        date_order = file_date_order(date_order, [a for n, a in zip(names, arrays) if may_hold_dates(n, kinds)])
    data, problems = {}, []
    for i, name in enumerate(names):
        arr = arrays[i]
        if isinstance(arrays, list):
            arrays[i] = None        # the caller's raw text of this column is freed once it is typed
        series, probs = coerce_column(arr, name, kind_for(name, kinds), row_numbers=row_numbers,
                                      formula_guard=formula_guard, date_format=date_format,
                                      guarded=guarded, date_order=date_order)
        del arr
        data[name] = series.reset_index(drop=True)
        problems.extend(probs)
    n = len(row_numbers)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n)) if data else pd.DataFrame(index=pd.RangeIndex(n))
    return frame, problems


# ---------------------------------------------------------------- comparison values
def object_array(values: list) -> np.ndarray:
    """A 1-d object array holding ``values`` as they are (tuples and lists stay cells)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _is_na(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.generic) and pd.isna(value):
        return True
    return False


def _instant_text(ts: pd.Timestamp) -> str:
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    return iso_ms(ts)


def _comparable_text(column: str, arr: pa.Array, date_order: str = MONTH_FIRST) -> pa.Array:
    """Trimmed text cells as compared for "did it change?" (vectorised).

    * line breaks: CRLF and CR as LF (a spreadsheet re-save turns a cell's CRLF into LF,
      a classic Mac save into CR);
    * phones as IntakeQ stores them (a leading '+' dropped, ``fields.server_phone``);
    * custom fields: a whole-cell date in a spreadsheet's form (``7/1/2026``,
      ``01.07.2026``, ``2026-07-01 00:00:00``) as ``yyyy-MM-dd``: custom fields are
      text to IntakeQ, but a spreadsheet turns an untouched ``2026-07-01`` into a date
      and writes it back its own way. Slash dates read in ``date_order`` (the file's,
      :func:`file_date_order`); one that reads both ways in a file of unknown order stays
      text (reading reported it).
    """
    if pc.any(pc.fill_null(pc.match_substring(arr, "\r"), False)).as_py():
        arr = pc.replace_substring(pc.replace_substring(arr, "\r\n", "\n"), "\r", "\n")
    if fields.field_for(column).phone:
        arr = pc.replace_substring_regex(arr, r"^\+", "")
    if fields.is_custom(column) and len(arr):
        looks = pc.fill_null(pc.match_substring_regex(arr, _LOOKS_LIKE_DATE), False)
        if pc.any(looks).as_py():
            y, m, d, _, _ = _match_dates(arr, date_order)
            valid, iso = ymd_to_iso(y, m, d)
            arr = pc.if_else(pa.array(valid), pa.array(iso, pa.string()), arr)
    return arr


def _comparable_cell(column: str, text: str, date_order: str) -> str:
    """:func:`_comparable_text` of one trimmed cell; in Python but for a custom field that
    looks like a date (an Arrow call a cell cost 0.1 ms, and a plan makes thousands)."""
    if fields.is_custom(column) and re.match(_LOOKS_LIKE_DATE, text):
        return _comparable_text(column, pa.array([text], pa.string()), date_order)[0].as_py()
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if fields.field_for(column).phone and text.startswith("+"):
        text = text[1:]
    return text


def normalized(column: str, value, *, kinds=None, date_format=None, date_order=MONTH_FIRST):
    """The value used to decide "did this cell change?".

    Accepts a typed value (from a frame) or raw cell text. Surrounding whitespace is
    stripped, empty becomes None, line breaks as LF, phones are compared as IntakeQ
    stores them (``fields.server_phone``), a custom field holding a spreadsheet-style
    date (``7/1/2026``) as ``yyyy-MM-dd``, tags as a sorted tuple of distinct tags, numbers, bools
    and dates in canonical form (int, float, bool, 'yyyy-MM-dd'), instants as ISO text.
    Text that cannot be read as its kind is returned stripped (so it differs from any
    valid value). ``date_order`` is the file's order of slash dates (``7/1/2026``).
    """
    kind = kind_for(column, kinds)
    if kind == "tags":
        if isinstance(value, (list, tuple, np.ndarray)):
            return _tags_key(value)
        return tuple(sorted({t for t in ([] if _is_na(value) else decode_tags(str(value))) if t}))
    if _is_na(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if kind in ("text", "linked"):
            return _comparable_cell(column, text, date_order)
        series, probs = coerce_column(pa.array([text]), column, kind, row_numbers=[0],
                                      formula_guard=False, date_format=date_format,
                                      date_order=date_order)
        if probs:
            return text
        typed = series.iloc[0]
        if isinstance(typed, str):  # dates stay 'yyyy-MM-dd' text once coerced
            return typed.strip() or None
        return normalized(column, typed, kinds=kinds)
    if kind in ("int", "enum"):
        f = float(value)
        return int(f) if f.is_integer() else f
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    if kind == "date":
        return _date_text(value) or None
    if kind == "instant":
        return _instant_text(pd.Timestamp(value))
    if kind in ("text", "linked"):
        return normalized(column, str(value), kinds=kinds, date_order=date_order)
    return value


def arrow_strings(series: pd.Series) -> pa.Array:
    """A column as one Arrow ``string`` array: a string column's own Arrow data when it is
    Arrow-backed (no Python string is made), NA as null; any other column through its
    text, NA as ""."""
    if not isinstance(series.dtype, pd.StringDtype):
        return _to_arrow_strings(series)
    arr = pa.array(series.array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.string() else pc.cast(arr, pa.string())


def comparable_text(column: str, series: pd.Series, date_order: str = MONTH_FIRST) -> pa.Array:
    """A text or linked column as :func:`normalized` compares it, as Arrow (null = empty):
    trimmed, then :func:`_comparable_text`. The diff compares these arrays whole."""
    return comparable_of_trimmed(column, trimmed_text(series), date_order)


def trimmed_text(series: pd.Series) -> pa.Array:
    """A column's cells as Arrow text, trimmed, empty as null: equal here is equal once
    normalised (:func:`comparable_of_trimmed`), so a diff normalises only the rest."""
    arr = pc.utf8_trim_whitespace(arrow_strings(series))
    return pc.if_else(_is_blank(arr), _NULL_STR, arr)


def comparable_of_trimmed(column: str, arr: pa.Array, date_order: str = MONTH_FIRST) -> pa.Array:
    """:func:`comparable_text` of cells already through :func:`trimmed_text`."""
    arr = _comparable_text(column, arr, date_order)
    return pc.if_else(_is_blank(arr), _NULL_STR, arr)


def _tags_key(tags) -> tuple:
    """:func:`normalized` of a tags cell held as a list: its distinct stripped tags, sorted."""
    return tuple(sorted({str(t).strip() for t in tags} - {""}))


def normalized_frame(df: pd.DataFrame, columns=None, *, kinds=None, date_order=MONTH_FIRST) -> pd.DataFrame:
    """:func:`normalized` for whole typed columns at once (object columns; None = empty)."""
    columns = list(df.columns if columns is None else columns)
    out = {}
    for column in columns:
        s = df[column]
        kind = kind_for(column, kinds)
        if kind in ("text", "linked"):
            out[column] = comparable_text(column, s, date_order).to_numpy(zero_copy_only=False).astype(object)
        elif kind == "tags":
            out[column] = object_array([_tags_key(v) if isinstance(v, list) else normalized(column, v)
                                        for v in s.tolist()])
        elif kind in ("int", "enum") and str(s.dtype) == "Int64":
            out[column] = s.to_numpy(dtype=object, na_value=None)
        elif kind == "bool" and str(s.dtype) == "boolean":
            out[column] = s.to_numpy(dtype=object, na_value=None)
        elif kind == "float" and str(s.dtype) == "Float64":
            out[column] = s.to_numpy(dtype=object, na_value=None)
        elif kind == "instant" and isinstance(s.dtype, pd.DatetimeTZDtype):
            text = format_instants(s)
            text[text == ""] = None
            out[column] = text
        elif kind == "date" and isinstance(s.dtype, pd.StringDtype):
            arr = pc.utf8_trim_whitespace(pa.array(s.to_numpy(dtype=object, na_value=None), pa.string()))
            arr = pc.if_else(_is_blank(arr), _NULL_STR, arr)
            out[column] = arr.to_numpy(zero_copy_only=False).astype(object)
        else:
            out[column] = object_array([normalized(column, v, kinds=kinds, date_order=date_order)
                                        for v in s.tolist()])
    # dtype=object: pandas 3 would infer its str dtype, which turns None into NaN
    return pd.DataFrame(out, index=df.index, columns=columns, dtype=object)
