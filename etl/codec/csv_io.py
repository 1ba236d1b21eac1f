"""CSV: written UTF-8 with a BOM, CRLF, every cell as text; read as text, then coerced.

Reading never lets a parser guess types: pyarrow parses every column as a string
(fast, multi-threaded), then :func:`etl.codec.text.coerce_columns` types each column by
its kind. A malformed file raises one InputError naming the file and the row or line.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError
from ..state.files import atomic_path
from .files import blank_rows, check_header, write_kind
from .model import Table
from .text import (
    DAY_FIRST,
    MONTH_FIRST,
    coerce_columns,
    date_order_of_format,
    file_date_order,
    format_column,
    has_slash_dates,
    may_hold_dates,
)

_HEAD_BYTES = 1 << 16


CSV_CHUNK = 10_000     # rows formatted and written at a time


def write_csv(df: pd.DataFrame, path, *, formula_guard: bool = True, kinds=None) -> None:
    """A typed frame as the tool's CSV, ``CSV_CHUNK`` rows at a time: the whole frame as
    Python strings was most of a 100,000-client export's peak memory."""
    columns = list(df.columns)
    kinds_now = {c: write_kind(c, df[c], kinds) for c in columns}
    with atomic_path(path, parents=True) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            # The csv module, as pandas' to_csv uses it, given the cells as the strings they
            # are: no frame of them to build and convert again.
            writer = csv.writer(fh, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow([str(c) for c in columns])
            for start in range(0, len(df), CSV_CHUNK):
                part = df.iloc[start:start + CSV_CHUNK]
                cells = [format_column(part[c], kinds_now[c], formula_guard=formula_guard).tolist()
                         for c in columns]
                writer.writerows(zip(*cells))


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}: try utf-8, cp1252 or latin-1") from None


def _bad_line(path: Path, encoding: str) -> tuple[int, int]:
    """(line number, offending byte) of the first bytes invalid in ``encoding``."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                return lineno, line[exc.start] if exc.start < len(line) else 0
    return 0, 0


def _encoding_error(path: Path, encoding: str) -> InputError:
    lineno, byte = _bad_line(path, encoding)
    where = f"line {lineno}" if lineno else "the file"
    other = "cp1252" if encoding.startswith("utf") else "utf-8"
    return InputError(f"{path}: {where} is not valid {encoding} (byte 0x{byte:02x}); if the file "
                      f"was saved in another encoding, pass it with --encoding (e.g. --encoding "
                      f"{other})")


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` when ``head`` looks like UTF-16 text without a BOM
    (some exporters and "Unicode Text" saves write none), else None.

    A CSV header and its cells are mostly ASCII, which UTF-16 stores as one zero byte and
    one non-zero byte: zeros at odd offsets only is little-endian, at even ones big-endian.
    Real binary files have zeros at both.
    """
    sample = head[:8192]
    sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 4:
        return None
    pairs = len(sample) // 2
    even_zeros, odd_zeros = sample[0::2].count(0), sample[1::2].count(0)
    if odd_zeros >= pairs * 0.3 and even_zeros <= odd_zeros * 0.02:
        return "utf-16-le"
    if even_zeros >= pairs * 0.3 and odd_zeros <= even_zeros * 0.02:
        return "utf-16-be"
    return None


def _sniff(path: Path, encoding: str | None) -> tuple[str, str, str]:
    """Check the start of the file; returns (codec name, decoded head, delimiter)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head.strip(b" \t\r\n") or head.strip(b" \t\r\n") == codecs.BOM_UTF8:
        raise InputError(f"{path}: the file is empty (no header row)")
    if encoding is None:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        else:
            encoding = _utf16_without_bom(head) or "utf-8"
    name = _codec_name(encoding)
    if head.startswith(b"PK\x03\x04"):
        raise InputError(f"{path}: this is a zip file (an .xlsx workbook?), not CSV; give it "
                         "the .xlsx extension or pass --format xlsx")
    if head.startswith(b"PAR1"):
        raise InputError(f"{path}: this is a Parquet file, not CSV; give it the .parquet "
                         "extension or pass --format parquet")
    if b"\x00" in head and not name.startswith(("utf-16", "utf-32")):
        raise InputError(f"{path}: this is a binary file, not CSV text (if it is a spreadsheet, "
                         "save it as CSV UTF-8 or .xlsx; if it is UTF-16 text, pass --encoding "
                         "utf-16-le or --encoding utf-16-be)")
    decoder = codecs.getincrementaldecoder(name)()
    try:
        text = decoder.decode(head, final=len(head) < _HEAD_BYTES)
    except UnicodeDecodeError:
        raise _encoding_error(path, name) from None
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InputError(f"{path}: the file is empty (no header row)")
    first_line = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]    # classic Mac files end lines with CR
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    if counts[delimiter] == 0:
        delimiter = ","
    return name, text, delimiter


def read_csv(path, *, encoding: str | None = None, date_format: str | None = None,
             formula_guard: bool = True, kinds=None, date_order: str | None = None) -> Table:
    """``date_order``: how slash dates read; default from the delimiter (:func:`assumed_date_order`)."""
    path = Path(path)
    name, head, delimiter = _sniff(path, encoding)
    # newline="": lines end at CR, LF or CRLF, as pyarrow reads them
    header = next(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), [])
    header = [h.strip().lstrip("\ufeff").strip() for h in header]
    ncols = len(header)
    invalid: list = []

    def on_invalid(row):
        invalid.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    def parse(threads: bool) -> pa.Table:
        arrow_encoding = "utf8" if name == "utf-8" else name
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, autogenerate_column_names=True,
                                           encoding=arrow_encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                             ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(ncols)},
                strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=True),
        )

    try:
        table = parse(True)
    except UnicodeDecodeError:
        raise _encoding_error(path, name) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
            raise _encoding_error(path, name) from None
        raise InputError(f"{path}: not a readable CSV file ({_safe_reason(exc)})") from None
    if invalid:
        if invalid[0][0] is None:  # multi-threaded parsing does not number rows
            invalid.clear()
            parse(False)
        raise _unclosed_quote_error(path, name, delimiter, ragged=True) or _ragged_error(path, invalid, ncols)
    if _last_row_has_line_break(table) or _has_swallowed_rows(table, delimiter, ncols):
        error = _unclosed_quote_error(path, name, delimiter)
        if error is not None:
            raise error
    if table.num_columns != ncols:
        raise InputError(f"{path}: the header could not be read (found {table.num_columns} "
                         f"columns, the first line has {ncols})")
    arrays = [table.column(i).combine_chunks() for i in range(ncols)]
    del table                       # the parsed chunks: the combined arrays are what is read on
    names = [arr[0].as_py().strip().lstrip("\ufeff").strip() if len(arr) else "" for arr in arrays]
    arrays = [arr.slice(1) for arr in arrays]
    drop = check_header(path, names)
    for i in drop:
        if not blank_rows([arrays[i]]).all():
            raise InputError(f"{path}: column {i + 1} has values but no header name")
    keep = [i for i in range(ncols) if i not in drop]
    names = [names[i] for i in keep]
    arrays = [arrays[i] for i in keep]
    n = len(arrays[0]) if arrays else 0
    row_numbers = np.arange(n, dtype=np.int64) + 2
    blank = blank_rows(arrays)
    if blank.any():
        keep_rows = pa.array(np.flatnonzero(~blank))
        arrays = [arr.take(keep_rows) for arr in arrays]
        row_numbers = row_numbers[~blank]
    date_columns = [a for n, a in zip(names, arrays) if may_hold_dates(n, kinds)]
    order = (date_order_of_format(date_format) if date_format
             else file_date_order(date_order or assumed_date_order(delimiter), date_columns))
    notes = []
    if order == DAY_FIRST and not date_format and not date_order and has_slash_dates(date_columns):
        notes.append(DAY_FIRST_NOTE)
    del date_columns                # coerce_columns frees each raw column as it types it
    frame, problems = coerce_columns(names, arrays, row_numbers=row_numbers, kinds=kinds,
                                     formula_guard=formula_guard, date_format=date_format,
                                     date_order=order)
    return Table(frame=frame, path=path, format="csv", problems=problems,
                 row_numbers=row_numbers, columns_in_file=names, date_order=order, notes=notes)


DAY_FIRST_NOTE = ("dates like 5/10/1964 read day-first (D/M/YYYY): the file is ;-separated, as European "
                  "Excel saves it; pass --date-format to say otherwise")


def assumed_date_order(delimiter: str) -> str:
    """European Excel saves CSV with ; (its list separator, since , is the decimal mark)
    and dates day-first; US Excel with , and month-first."""
    return DAY_FIRST if delimiter == ";" else MONTH_FIRST


def _last_row_has_line_break(table: pa.Table) -> bool:
    """A quote that is never closed swallows every line after it into the last row's cell."""
    if table.num_rows < 2:
        return False
    last = [table.column(i)[table.num_rows - 1].as_py() or "" for i in range(table.num_columns)]
    return any("\n" in cell or "\r" in cell for cell in last)


def _has_swallowed_rows(table: pa.Table, delimiter: str, ncols: int) -> bool:
    """A cell holding line breaks and a row's worth of delimiters: a stray quote that
    paired with a later one read the lines between into one cell."""
    for column in table.columns:
        rows_worth = pc.greater_equal(pc.count_substring(column, delimiter), max(ncols - 1, 1))
        if not pc.any(rows_worth).as_py():       # nearly always: no regex over the column
            continue
        breaks = pc.or_(pc.match_substring(column, "\n"), pc.match_substring(column, "\r"))
        if pc.any(pc.and_(breaks, rows_worth)).as_py():
            return True
    return False


def _unclosed_quote_error(path: Path, encoding: str, delimiter: str, *, ragged: bool = False
                          ) -> InputError | None:
    """An InputError naming the line of a quote that is never closed, or None."""
    line = _unclosed_quote_line(path, encoding, delimiter, ragged=ragged)
    if line is None:
        return None
    return InputError(f"{path}: line {line}: a quoted cell starts in the row on this line and its quote "
                      "is never closed, so every line after it would be read into that one cell; close "
                      "or remove the quote and save again")


def _unclosed_quote_line(path: Path, encoding: str, delimiter: str, *, ragged: bool) -> int | None:
    """The line where the row holding a stray quote starts, or None when every quote pairs.

    Python's strict csv reader stops at the end of the data inside a quote that is never
    closed, or, when the stray quote paired with a later one, at the text after that one
    (a row that spans lines, unlike a cell with a real line break). In a file whose rows
    are ragged already (``ragged``), a stray quote closed on its own line explains it too.
    """
    start = 1
    with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="",
              errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as exc:
            at_end = "unexpected end of data" in str(exc)
            return start if at_end or ragged or reader.line_num > start else None
    return None


def _safe_reason(exc: Exception) -> str:
    """An arrow error without the row text it may quote (client data)."""
    text = str(exc).split(":", 1)[0]
    return text[:120]


def _ragged_error(path: Path, invalid: list, ncols: int) -> InputError:
    number, expected, actual, _ = invalid[0]
    where = f"row {number}" if number else "a row"
    more = f" (and {len(invalid) - 1} other rows)" if len(invalid) > 1 else ""
    return InputError(f"{path}: {where} has {actual} cells but the header has {expected}{more}; "
                      "a stray delimiter, a missing quote or an unquoted line break? "
                      "Re-save the file from the spreadsheet as CSV")
