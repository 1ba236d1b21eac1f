"""Pages of API records → one typed clients frame, a chunk at a time (bounded memory)."""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from .. import fields
from ..state.snapshots import conform_frame

FRAME_CHUNK = 5_000  # records converted to a frame at a time (bounds peak memory)


class FrameBuilder:
    """Turns pages of API records into one typed frame, a chunk at a time."""

    def __init__(self, tz: str):
        self.tz = tz
        self.parts: list[pd.DataFrame] = []
        self.buffer: list[dict] = []
        self.labels: dict[str, str] = {}
        self.count = 0

    def add(self, records: Iterable[dict]) -> None:
        for record in records:
            self.buffer.append(record)
            self.count += 1
            if len(self.buffer) >= FRAME_CHUNK:     # a stream of records is never held whole
                self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        from ..codec import clients_to_frame, custom_field_labels

        self.labels.update(custom_field_labels(self.buffer))
        self.parts.append(clients_to_frame(self.buffer, tz=self.tz))
        self.buffer = []

    def frame(self) -> pd.DataFrame:
        self._flush()
        frame = combine_frames(self.parts)
        if not len(frame.columns):
            frame = empty_clients_frame()
        return frame


def empty_clients_frame() -> pd.DataFrame:
    """No clients: every registered column, typed (an empty account still has a header)."""
    return pd.DataFrame({f.name: pd.Series(dtype=f.dtype) for f in fields.FIELDS})


def combine_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate typed frames (columns in registry order, registry dtypes), sorted by ClientId."""
    parts = [p for p in parts if len(p.columns)]
    if not parts:
        return pd.DataFrame()
    columns = fields.order_columns([c for p in parts for c in p.columns])
    nonempty = [p for p in parts if len(p)]
    if not nonempty:
        frame = parts[0].iloc[0:0]
        for column in columns:
            if column not in frame.columns:
                frame[column] = pd.Series(dtype=fields.KIND_DTYPES[fields.kind_of(column)])
        return conform_frame(frame[columns]).reset_index(drop=True)
    if len(nonempty) == 1:
        frame = nonempty[0]
    else:
        frame = pd.concat(nonempty, ignore_index=True, sort=False)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series([pd.NA] * len(frame), dtype="object", index=frame.index)
    frame = conform_frame(frame[columns])
    return sort_by_client_id(frame)


def sort_by_client_id(frame: pd.DataFrame) -> pd.DataFrame:
    if "ClientId" not in frame.columns or frame.empty:
        return frame.reset_index(drop=True)
    return frame.sort_values("ClientId", kind="stable", na_position="last").reset_index(drop=True)


def deleted_frame(records: list[dict], clients: pd.DataFrame, tz: str) -> pd.DataFrame:
    """The deleted clients, typed like ``clients`` (its empty header when there are none)."""
    builder = FrameBuilder(tz)
    builder.add(records)
    frame = builder.frame()
    if frame.empty and not len(frame.columns):
        frame = clients.iloc[0:0].copy()
    return sort_by_client_id(frame)
