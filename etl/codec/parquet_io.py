"""Parquet (pyarrow) with real types: int64, bool, float64, date32, timestamp[ms, UTC],
list<string> tags, string text. No formula guard (Parquet is not opened by spreadsheets).

Reading accepts columns typed as written here, and also text columns (a Parquet file
written by another tool), which go through the same coercion as CSV cells.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputError
from ..state.files import atomic_path
from .export_id import KEY, parquet_metadata
from .files import check_header, write_kind
from .model import Problem, Table
from .records import ms_to_instants
from .text import arrow_strings, coerce_column, kind_for, object_array, string_series, utc_ms

ARROW_TYPES = {
    "int": pa.int64(),
    "enum": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "linked": pa.string(),
    "date": pa.date32(),
    "instant": pa.timestamp("ms", tz="UTC"),
    "tags": pa.list_(pa.string()),
}


def _arrow_column(series: pd.Series, kind: str) -> pa.Array:
    if kind in ("int", "enum"):
        return pa.array(pd.array(series, dtype="Int64"), pa.int64())
    if kind == "float":
        return pa.array(pd.array(series, dtype="Float64"), pa.float64())
    if kind == "bool":
        return pa.array(pd.array(series, dtype="boolean"), pa.bool_())
    if kind == "date":
        text = pa.array(series.astype("string").to_numpy(dtype=object, na_value=None), pa.string())
        days = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        return pc.cast(pc.cast(days, pa.timestamp("s")), pa.date32())
    if kind == "instant":
        s = pd.to_datetime(series, utc=True)
        return pa.array(utc_ms(s), pa.timestamp("ms"), mask=s.isna().to_numpy()).cast(ARROW_TYPES["instant"])
    if kind == "tags":
        values = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in series.tolist()]
        return pa.array(values, pa.list_(pa.string()))
    if isinstance(series.dtype, pd.StringDtype):
        return arrow_strings(series)        # the column's own Arrow data, no Python strings
    values = series.astype("string").to_numpy(dtype=object, na_value=None)
    return pa.array(values, pa.string())


def write_parquet(df: pd.DataFrame, path, *, kinds=None, export_id: str | None = None) -> None:
    """``export_id`` goes into the schema metadata: the file names its export without a manifest."""
    arrays, names = [], []
    for column in df.columns:
        arrays.append(_arrow_column(df[column], write_kind(column, df[column], kinds)))
        names.append(str(column))
    table = pa.Table.from_arrays(arrays, names=names) if names else pa.table({})
    if export_id:
        metadata = {**(table.schema.metadata or {}), KEY.encode(): str(export_id).encode("utf-8")}
        table = table.replace_schema_metadata(metadata)
    with atomic_path(path, parents=True) as tmp:
        pq.write_table(table, tmp)


def _typed(arr: pa.Array, column: str, kind: str, rows, date_format):
    """One Parquet column → (typed Series, problems)."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if kind == "tags":
            return coerce_column(pc.cast(arr, pa.string()), column, kind, row_numbers=rows,
                                 formula_guard=False, guarded=False)
        if kind in ("text", "linked"):
            return string_series(pc.cast(arr, pa.string())), []
        return coerce_column(pc.cast(arr, pa.string()), column, kind, row_numbers=rows,
                             formula_guard=False, date_format=date_format, guarded=False)
    if kind == "tags" and (pa.types.is_list(t) or pa.types.is_large_list(t)):
        values = [[str(x) for x in v if x is not None] if v is not None else [] for v in arr.to_pylist()]
        return pd.Series(object_array(values), dtype=object), []
    if kind == "date" and (pa.types.is_date(t) or pa.types.is_timestamp(t)):
        text = pc.strftime(pc.cast(arr, pa.timestamp("s")), format="%Y-%m-%d")
        return string_series(text), []
    if kind == "instant" and pa.types.is_timestamp(t):
        if t.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        ms = pc.cast(pc.cast(arr, pa.timestamp("ms", tz="UTC")), pa.int64())
        values = ms.to_numpy(zero_copy_only=False).astype(float)
        values[pc.is_null(ms).to_numpy(zero_copy_only=False)] = np.nan
        return ms_to_instants(values), []
    if kind in ("int", "enum", "float", "bool") and (pa.types.is_integer(t) or pa.types.is_floating(t)
                                                      or pa.types.is_boolean(t)):
        if kind == "bool" and pa.types.is_boolean(t):
            return pd.Series(pd.array(arr.to_pandas(), dtype="boolean")), []
        if kind == "float":
            return pd.Series(pd.array(arr.to_pandas(), dtype="Float64")), []
        if kind in ("int", "enum") and pa.types.is_integer(t):
            return pd.Series(pd.array(arr.to_pandas(), dtype="Int64")), []
    # Anything else: read it as its text, then coerce like a CSV cell.
    text = pc.cast(arr, pa.string()) if not pa.types.is_nested(t) else \
        pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())
    return coerce_column(text, column, kind, row_numbers=rows, formula_guard=False,
                         date_format=date_format, guarded=False)


def read_parquet(path, *, date_format=None, kinds=None) -> Table:
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}); was it "
                         "saved as CSV or XLSX? Pass --format") from None
    names = [n.strip() for n in table.column_names]
    if not names:
        raise InputError(f"{path}: the Parquet file has no columns")
    check_header(path, names)
    rows = np.arange(table.num_rows, dtype=np.int64) + 2
    data, problems = {}, []
    for i, name in enumerate(names):
        arr = table.column(i)
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        series, probs = _typed(arr, name, kind_for(name, kinds), rows, date_format)
        data[name] = series.reset_index(drop=True)
        problems.extend(probs)
    frame = pd.DataFrame(data, index=pd.RangeIndex(table.num_rows), columns=names)
    return Table(frame=frame, path=path, format="parquet", problems=problems,
                 row_numbers=rows, columns_in_file=names, export_id=parquet_metadata(table.schema.metadata))


__all__ = ["write_parquet", "read_parquet", "ARROW_TYPES", "Problem"]
