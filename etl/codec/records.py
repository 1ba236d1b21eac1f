"""API profile JSON ⇄ typed DataFrame.

``clients_to_frame`` gives one row per client, columns in ``fields.order_columns`` order
with dtypes per ``fields.KIND_DTYPES``; ``CustomFields`` become ``custom.<FieldId>``
columns; fields nobody registered are kept as read-only text (non-scalar values as JSON).
``frame_to_records`` and ``to_api_value`` go back to the values the API sends and accepts.

Dates (kind ``date``) are calendar dates in the practice's timezone ``tz``: the API's
milliseconds are converted to that zone and the date kept; an edited date goes back as
midnight of that date in ``tz``. Instants are kept exactly (UTC, millisecond precision).
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from functools import lru_cache
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import fields
from ..errors import ConfigError
from .text import format_linked, kind_for, object_array, parse_instants, parse_linked, string_series

_MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


@lru_cache(maxsize=64)
def zone(tz: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; a ConfigError names a bad one."""
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"unknown timezone {tz!r}: use an IANA name such as "
                          "America/New_York or Europe/Paris") from None


def _na(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


# ---------------------------------------------------------------- API → frame
def _api_text(v):
    if _na(v):
        return None
    if isinstance(v, str):
        return v if v != "" else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def _api_int(v):
    if _na(v) or v == "":
        return None
    if isinstance(v, bool):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def _api_float(v):
    if _na(v) or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _api_bool(v):
    if _na(v):
        return None
    if isinstance(v, str):
        low = v.strip().lower()
        return True if low in ("true", "1", "yes") else False if low in ("false", "0", "no") else None
    return bool(v)


def _ms_array(raw: list) -> np.ndarray:
    """API date values → float ms (NaN where missing/unreadable)."""
    out = np.full(len(raw), np.nan)
    for i, v in enumerate(raw):
        if _na(v) or v == "" or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[i] = float(v)
        elif isinstance(v, str):
            try:
                out[i] = float(v)
            except ValueError:
                ts = parse_instants(pd.Series([v], dtype=object)).iloc[0]
                if not pd.isna(ts):
                    out[i] = ts.value / 1e6
    out[(out < _MIN_MS) | (out > _MAX_MS)] = np.nan
    return out


def ms_to_dates(ms: np.ndarray, tz: str = "UTC") -> np.ndarray:
    """Unix ms → 'yyyy-MM-dd' in ``tz`` (object array, None for NaN)."""
    out = np.full(len(ms), None, dtype=object)
    ok = ~np.isnan(ms)
    if not ok.any():
        return out
    stamps = np.round(ms[ok]).astype(np.int64).astype("datetime64[ms]")
    local = pd.Series(stamps).dt.tz_localize("UTC")
    if (tz or "UTC") != "UTC":
        local = local.dt.tz_convert(zone(tz))
    naive = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    out[ok] = naive.astype(str).astype(object)
    return out


def ms_to_instants(ms: np.ndarray) -> pd.Series:
    """Unix ms → datetime64[ns, UTC] (NaT where missing or outside the ns range)."""
    ok = ~np.isnan(ms) & (ms > -9.2e15) & (ms < 9.2e15)
    ns = np.full(len(ms), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    ns[ok] = np.round(ms[ok]).astype(np.int64) * 1_000_000
    return pd.Series(pd.to_datetime(ns.view("datetime64[ns]"), utc=True))


def _column_from_api(column: str, raw: list, kind: str, tz: str) -> pd.Series:
    if kind in ("int", "enum"):
        return pd.Series(pd.array([_api_int(v) for v in raw], dtype="Int64"))
    if kind == "float":
        return pd.Series(pd.array([_api_float(v) for v in raw], dtype="Float64"))
    if kind == "bool":
        return pd.Series(pd.array([_api_bool(v) for v in raw], dtype="boolean"))
    if kind == "date":
        return pd.Series(pd.array(ms_to_dates(_ms_array(raw), tz), dtype=fields.TEXT_DTYPE))
    if kind == "instant":
        return ms_to_instants(_ms_array(raw))
    if kind == "tags":
        return pd.Series(object_array([_api_tags(v) for v in raw]), dtype=object)
    if kind == "linked":
        return pd.Series(pd.array([format_linked(v) if isinstance(v, list) else _api_text(v)
                                   for v in raw], dtype=fields.TEXT_DTYPE))
    return _text_column(raw)


def _text_column(raw: list) -> pd.Series:
    """A text column in one ``pa.array`` when every value is a string or None (the usual
    case); a column holding numbers, bools or objects goes cell by cell (:func:`_api_text`)."""
    try:
        arr = pa.array(raw, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.Series(pd.array([_api_text(v) for v in raw], dtype=fields.TEXT_DTYPE))
    return string_series(arr)


def _api_tags(v) -> list[str]:
    if _na(v):
        return []
    if isinstance(v, str):
        return [v] if v else []
    return [str(t) for t in v if not _na(t) and str(t) != ""]


def _is_mapping(value) -> bool:
    """``isinstance(value, Mapping)``, the parsed-JSON dict first: an ABC check costs ~2 µs,
    and an export makes it for every custom field of every client, twice."""
    return type(value) is dict or isinstance(value, Mapping)


def _custom_values(record: Mapping) -> dict:
    """A record's custom fields as ``custom.<FieldId>`` → Value."""
    out = {}
    for cf in record.get("CustomFields") or []:
        if _is_mapping(cf) and cf.get("FieldId") is not None:
            out[fields.custom_column(cf["FieldId"])] = cf.get("Value")
    return out


def _columns_seen(records: list, customs: list[dict]) -> dict[str, None]:
    """Every column of the records in order of first appearance (custom fields where a
    record has CustomFields). Records of one shape are looked at once: an account's
    profiles nearly all have the same keys."""
    seen: dict[str, None] = {}
    shapes = set()
    for record, custom in zip(records, customs):
        shape = (tuple(record), tuple(custom))
        if shape in shapes:
            continue
        shapes.add(shape)
        for key in record:
            if key == "CustomFields":
                seen.update(dict.fromkeys(custom))
            else:
                seen[key] = None
    return seen


def _records_to_frame(records: Iterable[Mapping], tz: str, kinds=None, order=None) -> pd.DataFrame:
    zone(tz)  # fail early on a bad name
    records = list(records)
    customs = [_custom_values(r) for r in records]   # the records are read in place, not copied flat
    seen = _columns_seen(records, customs)
    columns = order(seen) if order else list(seen)
    data = {}
    for column in columns:
        if column.startswith(fields.CUSTOM_PREFIX):     # from CustomFields, or a flat record's key
            raw = [custom[column] if column in custom else r.get(column) for r, custom in zip(records, customs)]
        else:
            raw = [r.get(column) for r in records]
        data[column] = _column_from_api(column, raw, kind_for(column, kinds), tz)
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(records)), columns=columns)
    return frame


def clients_to_frame(records: Iterable[Mapping], *, tz: str = "UTC") -> pd.DataFrame:
    """API profile records → typed clients frame (one row each, in the given order)."""
    return _records_to_frame(records, tz, order=fields.order_columns)


def custom_field_labels(records: Iterable[Mapping]) -> dict[str, str]:
    """FieldId → label (``Text``) of every custom field seen in the records."""
    labels: dict[str, str] = {}
    for record in records:
        for cf in record.get("CustomFields") or []:
            if _is_mapping(cf) and cf.get("FieldId") is not None:
                fid = str(cf["FieldId"])
                if cf.get("Text") and fid not in labels:
                    labels[fid] = cf["Text"]
                labels.setdefault(fid, "")
    return labels


def diagnoses_to_frame(diagnoses) -> pd.DataFrame:
    """Diagnoses → typed frame with ``fields.DIAGNOSIS_COLUMNS`` first.

    Accepts records that carry ``ClientId`` or a mapping ``{client_id: [diagnosis, ...]}``.
    Date and EndDate (ISO text from the API) become UTC instants.
    """
    if isinstance(diagnoses, Mapping):
        records = [{"ClientId": cid, **d} for cid, items in diagnoses.items() for d in (items or [])]
    else:
        records = list(diagnoses)

    def order(columns):
        cols = list(columns)
        first = [c for c in fields.DIAGNOSIS_COLUMNS]
        return first + sorted(c for c in cols if c not in fields.DIAGNOSIS_COLUMNS)

    return _records_to_frame(records, "UTC", kinds=fields.DIAGNOSIS_KINDS, order=order)


# ---------------------------------------------------------------- frame → API
def date_to_ms(value, tz: str = "UTC") -> int | None:
    """'yyyy-MM-dd' (or a date) → Unix ms of that date's midnight in ``tz``."""
    if _na(value) or value == "":
        return None
    if hasattr(value, "year") and hasattr(value, "month"):
        y, m, d = value.year, value.month, value.day
    else:
        text = str(value).strip()[:10]
        y, m, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    return _midnight_ms(y, m, d, tz or "UTC")


@lru_cache(maxsize=100_000)
def _midnight_ms(y: int, m: int, d: int, tz: str) -> int:
    moment = datetime(y, m, d, tzinfo=zone(tz))
    return int(round(moment.timestamp() * 1000))


def instant_to_ms(value) -> int | None:
    if _na(value):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def to_api_value(column: str, value, *, tz: str = "UTC", kinds=None):
    """One typed cell → the JSON value the API sends/accepts for that field."""
    kind = kind_for(column, kinds)
    if kind == "tags":
        if _na(value) if not isinstance(value, (list, tuple, np.ndarray)) else False:
            return []
        return [str(t) for t in value]
    if kind == "linked":
        return parse_linked(value)
    if _na(value):
        return None
    if kind in ("int", "enum"):
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    if kind == "date":
        return date_to_ms(value, tz)
    if kind == "instant":
        return instant_to_ms(value)
    text = str(value)
    return text if text != "" else None


def _column_to_api(column: str, series: pd.Series, tz: str) -> list:
    kind = kind_for(column)
    if kind in ("int", "enum", "float", "bool") and str(series.dtype) in ("Int64", "Float64", "boolean"):
        values = series.astype(object).tolist()
        return [None if v is pd.NA else v for v in values]
    if kind == "instant" and isinstance(series.dtype, pd.DatetimeTZDtype):
        ns = series.to_numpy(dtype="datetime64[ns]").view(np.int64)
        na = series.isna().to_numpy()
        return [None if bad else int(v // 1_000_000) for v, bad in zip(ns.tolist(), na.tolist())]
    if kind in ("text",) and isinstance(series.dtype, pd.StringDtype):
        return [None if v is pd.NA else v for v in series.tolist()]
    return [to_api_value(column, v, tz=tz) for v in series.tolist()]


def frame_to_records(df: pd.DataFrame, *, tz: str = "UTC", labels: Mapping[str, str] | None = None
                     ) -> list[dict]:
    """Typed frame → API-shaped dicts (custom.* columns gathered into ``CustomFields``).

    ``labels`` (FieldId → label, as from :func:`custom_field_labels`) adds each custom
    field's ``Text``.
    """
    zone(tz)
    plain = [c for c in df.columns if not fields.is_custom(c)]
    custom = [c for c in df.columns if fields.is_custom(c)]
    columns = {c: _column_to_api(c, df[c], tz) for c in df.columns}
    records = []
    for i in range(len(df)):
        record = {c: columns[c][i] for c in plain}
        if custom:
            cfs = []
            for c in custom:
                fid = fields.custom_field_id(c)
                entry = {"FieldId": fid}
                if labels is not None and fid in labels:
                    entry["Text"] = labels[fid]
                entry["Value"] = columns[c][i]
                cfs.append(entry)
            record["CustomFields"] = cfs
        records.append(record)
    return records
