"""What every file format shares: format from extension, atomic 0600 writes, header checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import fields
from ..errors import InputError
from .formats import FORMATS
from .text import kind_for

_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
               ".xlsx": "xlsx", ".xlsm": "xlsx"}


def format_of(path, format: str | None = None) -> str:
    """The table format: ``format`` if given, else from the file's extension."""
    if format:
        fmt = format.lower().lstrip(".")
        if fmt not in FORMATS:
            raise InputError(f"unknown format {format!r}: use csv, parquet or xlsx")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".xls":
        raise InputError(f"{path}: old Excel .xls files are not read; save it as .xlsx "
                         "(Excel Workbook) or CSV UTF-8")
    raise InputError(f"{path}: unknown file extension {suffix or '(none)'!r}; use .csv, .parquet "
                     "or .xlsx, or pass --format csv|parquet|xlsx")


def write_kind(column: str, series: pd.Series, kinds=None) -> str:
    """The kind a column is written as: registry/override, else guessed from its dtype."""
    if (kinds and column in kinds) or column in fields.BY_NAME or fields.is_custom(column):
        return kind_for(column, kinds)
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return "instant"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_object_dtype(dtype) and len(series) and isinstance(series.iloc[0], (list, tuple)):
        return "tags"
    return "text"


def check_header(path, names: list, what: str = "column") -> list[int]:
    """Validate header names; returns the positions of columns to drop (empty header, no data).

    Raises InputError for a missing header or duplicate names.
    """
    if not names or all(n == "" for n in names):
        raise InputError(f"{path}: the first row has no column names (a header row such as "
                         "ClientId,FirstName,LastName,... is needed)")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name == "":
            continue
        if name in seen:
            raise InputError(f"{path}: {what} {name!r} appears twice (columns {seen[name] + 1} "
                             f"and {i + 1}); keep one")
        seen[name] = i
    return [i for i, n in enumerate(names) if n == ""]


def blank_rows(arrays) -> np.ndarray:
    """Mask of rows whose every cell is empty (arrow string arrays)."""
    import pyarrow.compute as pc

    if not arrays:
        return np.zeros(0, dtype=bool)
    mask = None
    for arr in arrays:
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True)
        mask = blank if mask is None else pc.and_(mask, blank)
    return mask.to_numpy(zero_copy_only=False)
