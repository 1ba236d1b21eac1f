"""The codec's two result types: a problem found in one cell (or row, or file) and a read table."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:       # only in annotations: `validate --help` imports this module without pandas
    import numpy as np
    import pandas as pd

ERROR = "error"
WARNING = "warning"


@dataclass
class Problem:
    """One thing wrong with a file, located as a spreadsheet shows it.

    ``row`` is the spreadsheet row (the header is row 1, the first client row 2), None for
    a problem of the whole file or a column. ``value`` is the cell as written in the file:
    it is client data, so it goes to the report file only, never to messages or logs.
    ``check`` is a stable name (``date_parses``, ``duplicate_client_id``, ...).
    """

    row: int | None
    column: str | None
    value: str | None
    check: str
    message: str
    hint: str = ""
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


@dataclass
class Table:
    """A file read by :func:`etl.codec.read_table`.

    ``frame`` is typed (dtypes per ``fields.KIND_DTYPES``), holds only the file's columns in
    the file's order, and its index is 0..n-1 in file order. A cell that could not be
    coerced is NA in ``frame`` and has a Problem in ``problems``.

    ``row_numbers[i]`` is the spreadsheet row of ``frame`` row ``i``. It equals ``i + 2``
    unless the file had fully blank rows (which are skipped); use it, not ``i + 2``.

    XLSX only: ``sheet`` is the sheet read; ``unknown`` the cells whose value the file
    does not hold — a merged cell's hidden part, a formula never calculated — as
    (spreadsheet row, column): they read as empty but are not blank, so an import leaves
    them as they are; ``date_numbers`` the number cells of ``custom.*`` columns, by
    column and spreadsheet row, with the date each stands for as a spreadsheet date
    serial (None: not a whole serial of a plausible date), for
    :func:`etl.codec.serials.resolve_date_numbers`.

    ``export_id`` is the export id the file carries inside it (XLSX, Parquet), if any.

    ``date_order`` is how the file's slash dates were read (``etl.codec.text``:
    month-first, day-first or unknown; None = month-first); comparisons of its cells use
    the same. ``notes`` are lines to show once on the terminal (how the file was read).
    """

    frame: pd.DataFrame
    path: Path | None = None
    format: str = "csv"
    problems: list[Problem] = field(default_factory=list)
    row_numbers: np.ndarray | None = None
    columns_in_file: list[str] = field(default_factory=list)
    sheet: str | None = None
    unknown: frozenset = frozenset()
    date_numbers: dict = field(default_factory=dict)
    export_id: str | None = None
    date_order: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.row_numbers is None:
            import numpy as np

            self.row_numbers = np.arange(len(self.frame), dtype=np.int64) + 2

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def row_of(self, i: int) -> int:
        """The spreadsheet row of frame row ``i``."""
        return int(self.row_numbers[i])
