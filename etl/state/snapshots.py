"""Per-account snapshots of what each export exported, by export id.

Every export (full or incremental) stores its typed clients frame here, with every
column even when ``--columns`` narrowed the file:

    <account_dir>/snapshots/<export_id>.parquet   the typed clients frame
    <account_dir>/snapshots/<export_id>.json      meta: watermark (ISO UTC) and
                                                  watermark_epoch, complete, timezone,
                                                  custom-field labels, base URL, rows

The import loads one as the *base* of a file that came from that export
(``SnapshotStore.load(export_id)``); an incremental export starts from the newest
complete one (``SnapshotStore.newest()``). Files are owner-only (0600, dir 0700) and
only the last few are kept (plus the newest complete one, so a run of filtered
exports never forces the next incremental run into a full one), and every snapshot younger
than ``INTAKEQ_SNAPSHOT_DAYS`` (30 by default): a file an admin edits for weeks keeps its
base while newer exports run.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd

from .. import fields
from ..config import DEFAULT_SNAPSHOT_DAYS
from ..errors import SnapshotNotFound
from .files import atomic_path, discard, ensure_private_dir, write_json_atomic

KEEP = 5
_ID_RE = re.compile(r"^[A-Za-z0-9T_.-]{1,80}$")


def _arrow_text(arrow_type):
    """pyarrow's ``types_mapper``: Parquet text columns as ``string[pyarrow]``."""
    import pyarrow as pa

    if arrow_type in (pa.string(), pa.large_string()):
        return pd.StringDtype("pyarrow")
    return None


def conform_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every column its registry dtype (a Parquet round trip or a concat can lose it).

    Tags come back from Parquet as arrays: they are made lists of str again.
    """
    frame = frame.copy()
    for column in frame.columns:
        kind = fields.kind_of(column)
        if kind == "tags":
            frame[column] = [v if type(v) is list else _as_tag_list(v) for v in frame[column]]
            continue
        dtype = fields.KIND_DTYPES[kind]
        if kind == "instant":
            series = frame[column]
            if not isinstance(series.dtype, pd.DatetimeTZDtype):
                series = pd.to_datetime(series, utc=True)
            frame[column] = series.dt.tz_convert("UTC").astype(dtype)
        elif str(frame[column].dtype) != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


def watermark_epoch(meta: dict) -> float | None:
    """The snapshot's watermark (the run's start) as epoch seconds.

    Meta stores it twice: ``watermark`` (ISO 8601 UTC, for people and the import) and
    ``watermark_epoch``; either is enough.
    """
    raw = meta.get("watermark_epoch")
    if raw is None:
        raw = meta.get("watermark")
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _as_tag_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, float) and value != value:  # NaN
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in list(value)]


def _table_to_frame(table) -> pd.DataFrame:
    """A snapshot's Arrow table as a frame: text as ``string[pyarrow]``, tags as lists
    (``to_pylist`` of the whole column, not a NumPy array a cell made into a list)."""
    tags = [name for name in table.column_names if fields.kind_of(name) == "tags"]
    lists = {name: [v if v is not None else [] for v in table.column(name).to_pylist()] for name in tags}
    frame = table.drop_columns(tags).to_pandas(types_mapper=_arrow_text)
    for name in tags:
        frame.insert(table.column_names.index(name), name, lists[name])
    return frame


class SnapshotStore:
    """Snapshots of one account: ``SnapshotStore(settings)`` or ``SnapshotStore(path=...)``."""

    def __init__(self, settings=None, *, path: Path | None = None, keep: int = KEEP,
                 keep_days: float | None = None):
        if path is None:
            if settings is None:
                raise TypeError("SnapshotStore needs settings or path")
            path = Path(settings.account_dir) / "snapshots"
        self.path = Path(path)
        self.keep = keep
        if keep_days is None:
            keep_days = getattr(settings, "snapshot_days", DEFAULT_SNAPSHOT_DAYS)
        self.keep_days = keep_days

    # -- paths -------------------------------------------------------------
    def _check_id(self, export_id: str) -> str:
        if not isinstance(export_id, str) or not _ID_RE.match(export_id):
            raise SnapshotNotFound(f"not an export id: {export_id!r}")
        return export_id

    def frame_path(self, export_id: str) -> Path:
        return self.path / f"{self._check_id(export_id)}.parquet"

    def meta_path(self, export_id: str) -> Path:
        return self.path / f"{self._check_id(export_id)}.json"

    # -- write -------------------------------------------------------------
    def save(self, export_id: str, frame: pd.DataFrame, meta: dict) -> Path:
        """Store ``frame`` and ``meta`` (the meta last: a snapshot without one is ignored)."""
        ensure_private_dir(self.path.parent)
        ensure_private_dir(self.path)
        target = self.frame_path(export_id)
        frame = frame.reset_index(drop=True)
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, engine="pyarrow", index=False)
        meta = {**meta, "export_id": export_id, "rows": int(len(frame)),
                "columns": [str(c) for c in frame.columns]}
        write_json_atomic(self.meta_path(export_id), meta)
        self.prune()
        return target

    def prune(self) -> list[str]:
        """Keep the newest ``keep`` snapshots, the newest complete one and those younger than
        ``keep_days``; remove the rest."""
        entries = self.list()
        keep_ids = {export_id for export_id, _ in entries[: self.keep]}
        young = time.time() - self.keep_days * 86400
        keep_ids |= {export_id for export_id, meta in entries if (watermark_epoch(meta) or 0.0) >= young}
        complete = [export_id for export_id, meta in entries if meta.get("complete")]
        if complete:
            keep_ids.add(complete[0])
        removed = []
        for export_id, _ in entries:
            if export_id not in keep_ids:
                discard(self.meta_path(export_id))
                discard(self.frame_path(export_id))
                removed.append(export_id)
        return removed

    # -- read --------------------------------------------------------------
    def list(self) -> list[tuple[str, dict]]:
        """Every snapshot with its meta, newest first (by watermark, then id)."""
        if not self.path.is_dir():
            return []
        out = []
        for meta_file in self.path.glob("*.json"):
            export_id = meta_file.stem
            if not _ID_RE.match(export_id) or not (self.path / f"{export_id}.parquet").exists():
                continue
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            out.append((export_id, meta))
        out.sort(key=lambda item: (watermark_epoch(item[1]) or 0.0, item[0]), reverse=True)
        return out

    def newest(self, *, complete_only: bool = True) -> tuple[str, dict] | None:
        for export_id, meta in self.list():
            if complete_only and not meta.get("complete"):
                continue
            return export_id, meta
        return None

    def exists(self, export_id: str) -> bool:
        if not isinstance(export_id, str) or not _ID_RE.match(export_id):
            return False
        return self.frame_path(export_id).exists() and self.meta_path(export_id).exists()

    def load_meta(self, export_id: str) -> dict:
        path = self.meta_path(export_id)
        if not path.exists():
            raise SnapshotNotFound(
                f"no snapshot of export {export_id} in {self.path} (snapshots are kept "
                f"{self.keep_days:g} days, and the last {self.keep})")
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, export_id: str) -> tuple[pd.DataFrame, dict]:
        """The typed frame and meta of export ``export_id``."""
        meta = self.load_meta(export_id)
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..codec.tables import use_lean_arrow_pool

        use_lean_arrow_pool()
        # Text straight into fields.TEXT_DTYPE (pandas 2 would make a Python object per cell).
        frame = conform_frame(_table_to_frame(pq.read_table(self.frame_path(export_id))))
        pa.default_memory_pool().release_unused()    # the read Table's pages (see codec.tables)
        return frame, meta
