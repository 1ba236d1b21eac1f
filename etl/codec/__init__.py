"""The table codec: API JSON ⇄ typed DataFrame ⇄ CSV / Parquet / XLSX, losslessly.

    records ──clients_to_frame──▶ frame ──write_table──▶ file
    records ◀──frame_to_records── frame ◀──read_table─── file   (Table: frame + problems)

* ``clients_to_frame(records, tz=)`` / ``frame_to_records(df, tz=)`` / ``to_api_value``
* ``write_table(df, path, format=, formula_guard=)`` / ``read_table(path, ...) -> Table``
* ``normalized(column, value)`` / ``normalized_frame(df, columns)``: values for
  "did this cell change?" comparisons.

Column knowledge (kinds, writable/read-only) lives in :mod:`etl.fields`; the cell format
of each kind is described in :mod:`etl.codec.text`.
"""
from .files import FORMATS, format_of
from .model import ERROR, WARNING, Problem, Table
from .records import (clients_to_frame, custom_field_labels, date_to_ms, diagnoses_to_frame,
                      frame_to_records, to_api_value)
from .tables import read_table, write_table
from .text import decode_tags, encode_tags, guard, normalized, normalized_frame, unguard

__all__ = [
    "ERROR", "FORMATS", "WARNING", "Problem", "Table", "clients_to_frame", "custom_field_labels",
    "date_to_ms", "decode_tags", "diagnoses_to_frame", "encode_tags", "format_of",
    "frame_to_records", "guard", "normalized", "normalized_frame", "read_table",
    "to_api_value", "unguard", "write_table",
]
