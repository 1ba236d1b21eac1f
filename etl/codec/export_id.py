"""The export id a file carries inside it, so that a file moved away from its manifest
(to the desktop, renamed, mailed) still names the export it came from.

* XLSX: a workbook custom document property (File ▸ Properties ▸ Custom in Excel);
* Parquet: a key of the schema metadata;
* CSV has nowhere to keep it (the import matches a CSV to its export by content).

A frame read from such a file keeps the id in ``frame.attrs[KEY]``, and
:func:`etl.codec.write_table` writes it back by default, so our own read → write round
trip keeps it.
"""
from __future__ import annotations

from pathlib import Path

KEY = "intakeq-etl.export_id"


def of_frame(frame) -> str | None:
    """The export id a frame read from a file carries (``frame.attrs``), if any."""
    value = getattr(frame, "attrs", {}).get(KEY)
    return str(value) if value else None


def read_export_id(path, format: str | None = None) -> str | None:
    """The export id inside the file at ``path``, or None (a CSV, a file from elsewhere, a
    file that cannot be read: reading it as a table then says why)."""
    from .files import format_of

    try:
        fmt = format_of(path, format)
        if fmt == "xlsx":
            return _from_xlsx(Path(path))
        if fmt == "parquet":
            return _from_parquet(Path(path))
    except Exception:   # any unreadable file: the table reader gives the clear message
        return None
    return None


def _from_xlsx(path: Path) -> str | None:
    """Read from the package's custom-properties part alone: loading the workbook would
    parse its shared strings (the whole sheet's text, in a file Excel saved)."""
    import zipfile
    from xml.etree.ElementTree import fromstring

    from openpyxl.packaging.custom import CustomPropertyList

    with zipfile.ZipFile(path) as package:
        rels = fromstring(package.read("_rels/.rels"))
        target = next((r.get("Target") for r in rels
                       if str(r.get("Type", "")).endswith("/custom-properties")), None)
        if not target:
            return None
        props = CustomPropertyList.from_tree(fromstring(package.read(target.lstrip("/"))))
    return next((str(p.value) for p in props if p.name == KEY and p.value), None)


def xlsx_property(wb) -> str | None:
    """The export id among an open workbook's custom document properties."""
    for prop in wb.custom_doc_props:
        if prop.name == KEY and prop.value:
            return str(prop.value)
    return None


def set_xlsx_property(wb, export_id: str) -> None:
    from openpyxl.packaging.custom import StringProperty

    wb.custom_doc_props.append(StringProperty(name=KEY, value=str(export_id)))


def _from_parquet(path: Path) -> str | None:
    import pyarrow.parquet as pq

    return parquet_metadata(pq.read_schema(path).metadata)


def parquet_metadata(metadata) -> str | None:
    value = (metadata or {}).get(KEY.encode())
    return value.decode("utf-8") if value else None
