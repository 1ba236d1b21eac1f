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
from __future__ import annotations

# Loaded on first use (as in ``etl``): ``etl.codec.formats`` stays cheap for the CLI's --help.
_LAZY = {
    "FORMATS": "formats", "format_of": "files",
    "ERROR": "model", "WARNING": "model", "Problem": "model", "Table": "model",
    "clients_to_frame": "records", "custom_field_labels": "records", "date_to_ms": "records",
    "diagnoses_to_frame": "records", "frame_to_records": "records", "to_api_value": "records",
    "read_table": "tables", "write_table": "tables",
    "decode_tags": "text", "encode_tags": "text", "guard": "text", "normalized": "text",
    "normalized_frame": "text", "unguard": "text",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
