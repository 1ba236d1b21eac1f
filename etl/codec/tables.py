"""One function per direction for files: :func:`write_table` and :func:`read_table`."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError
from .export_id import KEY, of_frame
from .files import format_of
from .model import Table
from .records import zone
from .text import check_date_format


def write_table(df: pd.DataFrame, path, *, format: str | None = None, formula_guard: bool = True,
                kinds=None, export_id: str | None = None) -> None:
    """Write a typed frame as CSV, Parquet or XLSX (atomically, mode 0600).

    ``format`` defaults to the extension's. ``formula_guard`` (CSV/XLSX) prefixes text cells
    a spreadsheet would run as formulas with one ``'`` (removed again by read_table).
    ``kinds`` overrides column kinds (e.g. ``fields.DIAGNOSIS_KINDS``). ``export_id`` is
    written inside XLSX and Parquet files (see :mod:`etl.codec.export_id`); by default the
    one a frame read by ``read_table`` carries, so a read → write round trip keeps it.
    """
    fmt = format_of(path, format)
    export_id = export_id or of_frame(df)
    if fmt == "csv":
        from .csv_io import write_csv

        write_csv(df, path, formula_guard=formula_guard, kinds=kinds)
    elif fmt == "parquet":
        from .parquet_io import write_parquet

        write_parquet(df, path, kinds=kinds, export_id=export_id)
    else:
        from .xlsx_io import write_xlsx

        write_xlsx(df, path, formula_guard=formula_guard, kinds=kinds, export_id=export_id)


def read_table(path, *, format: str | None = None, encoding: str | None = None,
               date_format: str | None = None, formula_guard: bool = True, tz: str = "UTC",
               kinds=None, sheet: str | None = None, date_order: str | None = None) -> Table:
    """Read a CSV, Parquet or XLSX table into a typed frame, collecting cell problems.

    Raises InputError (one clear message naming the file) for files that cannot be read
    as a table. ``tz`` is checked here; dates in files are already calendar dates, so it
    matters only when the frame is sent back (see ``frame_to_records``). ``sheet`` names
    the XLSX sheet to read (default: the one with a ClientId column, see ``read_xlsx``).

    ``date_order`` (``etl.codec.text.MONTH_FIRST`` / ``DAY_FIRST``) is how slash dates
    read; by default a ;-separated CSV reads them day-first, any other file month-first,
    and a file whose own dates contradict that has an unknown order (``Table.date_order``):
    a date that reads both ways is then an error.
    """
    path = Path(path)
    fmt = format_of(path, format)
    zone(tz)
    check_date_format(date_format)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if sheet is not None and fmt != "xlsx":
        raise InputError(f"{path}: --sheet {sheet} applies to XLSX workbooks only; this is a {fmt} file")
    use_lean_arrow_pool()
    table = _read(path, fmt, encoding=encoding, date_format=date_format, formula_guard=formula_guard,
                  kinds=kinds, sheet=sheet, date_order=date_order)
    if table.export_id:
        table.frame.attrs[KEY] = table.export_id
    _give_back_arrow_memory()
    return table


def use_lean_arrow_pool() -> None:
    """Allocate Arrow memory with jemalloc where this pyarrow has it (Linux and macOS wheels),
    unless ``ARROW_DEFAULT_MEMORY_POOL`` chose a pool. Arrow's default, mimalloc, keeps the
    pages of the many small buffers a read frees mixed with the live ones, and gives few
    back: a 100,000-row dry run peaked at 534 MB with it, 461 MB with jemalloc, no slower.
    Buffers made before keep their own pool; calling this again changes nothing."""
    import os

    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or "jemalloc" not in pa.supported_memory_backends():
        return
    if pa.default_memory_pool().backend_name != "jemalloc":
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def _give_back_arrow_memory() -> None:
    """Reading made and dropped many Arrow intermediates; Arrow's allocator keeps their
    pages for reuse (about 1.5x the file's text at 100,000 rows). Return them: the rest of
    the run (validation, the diff) works in other memory, and the peak is what counts."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _read(path: Path, fmt: str, *, encoding, date_format, formula_guard, kinds, sheet, date_order) -> Table:
    if fmt == "csv":
        from .csv_io import read_csv

        return read_csv(path, encoding=encoding, date_format=date_format,
                        formula_guard=formula_guard, kinds=kinds, date_order=date_order)
    if fmt == "parquet":
        from .parquet_io import read_parquet

        return read_parquet(path, date_format=date_format, kinds=kinds)
    from .xlsx_io import read_xlsx

    return read_xlsx(path, date_format=date_format, formula_guard=formula_guard, kinds=kinds, sheet=sheet)
