"""The base of an import: the snapshot of the export a file was edited from.

Edits are the file against this base, so a wrong base is a wrong write: a stale one
makes every cell the file still holds from its own export look like an edit, and
reverts what staff changed since. So the base is never a stand-in:

* ``--base DIR|ID`` names it; ``--base none`` asks for a two-way import (no base);
* else the export id inside the file names it (XLSX and Parquet exports carry theirs): it
  wins over the manifest beside the file, which a later export into the same folder
  replaces;
* else the manifest beside the file names it — checked against the file, since an export
  run into the same folder later replaces that manifest (rows of the file older than the
  named export stop the import);
* else (a file moved, renamed, mailed) the snapshot the file agrees with on the most
  cells, counting the file's clients the snapshot lacks as disagreeing (ties: the older).

A named export whose snapshot is gone, or a file no snapshot agrees with, stops the
import with exit 1 before any request, saying what to pass. Local files only.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..codec.text import utc_ms
from ..errors import ConfigError, ValidationFailed
from ..state.snapshots import SnapshotStore, watermark_epoch
from . import diff as D

MATCH_THRESHOLD = 0.8        # share of a file's cells that must equal a snapshot's to take it as base
MATCH_SAMPLE = 2000          # rows compared per snapshot

_TWO_WAY = ("comparing with live only (two-way); IntakeQ edits made since the file was produced "
            "would be overwritten for the columns it carries")


@dataclass
class Base:
    frame: pd.DataFrame | None
    export_id: str | None
    how: str                           # said to the user
    taken_at: float | None = None      # the export's start (epoch s): imports after it wrote what it lacks
    complete: bool = False             # an unfiltered export: every client of the account is in it
    timezone: str | None = None        # the export's --timezone (its dates of birth are in it)
    custom_fields: dict | None = None  # FieldId -> label of the account's custom fields at the export

    @classmethod
    def of_snapshot(cls, frame: pd.DataFrame, meta: dict, export_id: str, how: str) -> "Base":
        meta = meta or {}
        return cls(frame, export_id, how, watermark_epoch(meta), complete=bool(meta.get("complete")),
                   timezone=meta.get("timezone"), custom_fields=known_custom_fields(frame, meta))


def known_custom_fields(frame: pd.DataFrame | None, meta: dict | None) -> dict | None:
    """FieldId → label of the account's custom fields as of a snapshot: its meta's list,
    else (an older snapshot) its ``custom.*`` columns; None when unknown."""
    from .. import fields as F

    listed = (meta or {}).get("custom_fields")
    if isinstance(listed, dict) and listed:
        return {str(k): str(v or "") for k, v in listed.items()}
    if frame is not None:
        found = {F.custom_field_id(c): "" for c in frame.columns if F.is_custom(c)}
        return found or None
    return None


def find_base(source: Path, base: str | None, store: SnapshotStore, frame: pd.DataFrame | None = None, *,
              inside: str | None = None) -> Base:
    """The export ``source`` came from (``base``: the --base value; ``inside``: the export id
    the file carries, ``codec.export_id.read_export_id``); ``frame`` is the file as read, for
    the checks against it and the content match."""
    if is_no_base(base):
        return Base(None, None, f"no base (--base none): {_TWO_WAY}")
    wanted, how = named_export(source, base, inside=inside)
    if wanted is None:
        return _base_by_content(source, store, frame)
    _refuse_without_client_id(source, frame, f"it came from export {wanted} ({how})")
    if not store.exists(wanted):
        raise ConfigError(_gone(source, wanted, how, store))
    found = Base.of_snapshot(*_load(store, wanted), wanted, f"base: export {wanted} (from {how})")
    if how == MANIFEST_BESIDE:
        _refuse_older_file(source, frame, found, store)
    return found


def is_no_base(base: str | None) -> bool:
    return bool(base) and base.lower() == "none"


MANIFEST_BESIDE = "the manifest beside the file"


def named_export(source: Path, base: str | None, *, inside: str | None = None) -> tuple[str | None, str]:
    """The export id a file names — ``--base`` (an export folder or id), else the id inside
    the file (``inside``), else the manifest beside the file — and how it was found."""
    if not base:
        beside = _manifest_export_id(Path(source).parent / "manifest.json")
        if inside and inside != beside:
            note = f"; the manifest beside it names export {beside}, not this file's" if beside else ""
            return inside, "the id inside the file" + note
        return beside, MANIFEST_BESIDE
    candidate = Path(base)
    if not candidate.is_dir():
        if candidate.exists() or "/" in base or "\\" in base:
            raise ConfigError(f"--base {base}: not an export folder (a folder with a manifest.json) nor an "
                              "export id")
        return base, f"--base {base}"
    wanted = _manifest_export_id(candidate / "manifest.json")
    if wanted is None:
        raise ConfigError(f"--base {base}: no manifest.json with an export id there")
    return wanted, f"--base {base}"


def _manifest_export_id(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("export_id")
    except (OSError, ValueError, AttributeError):
        return None


def _gone(source: Path, wanted: str, how: str, store: SnapshotStore) -> str:
    return (f"{source}: no snapshot of export {wanted} (named by {how}) in the state dir: it is gone "
            f"(snapshots are kept {store.keep_days:g} days, INTAKEQ_SNAPSHOT_DAYS), or it was never "
            "exported here; nothing was sent. Pass --base with the id of another export only if the file "
            "was edited from it, or --base none for a two-way import that writes every difference from "
            "IntakeQ (staff changes since the export in the file's columns would be overwritten)")


def _load(store: SnapshotStore, export_id: str) -> tuple[pd.DataFrame, dict]:
    try:
        return store.load(export_id)
    except (OSError, ValueError) as exc:       # pyarrow's errors are ValueErrors
        raise ConfigError(f"the snapshot of export {export_id} in {store.path} cannot be read ({exc}); "
                          "pass --base with another export the file came from, or --base none") from None


def _readable_snapshots(store: SnapshotStore):
    """(export id, frame, meta) of every snapshot, newest first; unreadable ones skipped."""
    for export_id, _ in store.list():
        try:
            frame, meta = store.load(export_id)
        except (OSError, ValueError):
            continue
        yield export_id, frame, meta


def _base_by_content(source: Path, store: SnapshotStore, frame: pd.DataFrame | None) -> Base:
    """A file with no manifest beside it: the snapshot it agrees with best (ties: the older)."""
    snapshots = store.list()
    if not snapshots:
        return Base(None, None, f"no base: no export snapshot in this state dir; {_TWO_WAY}")
    if not _has_client_ids(frame):   # only new rows: the base serves to match them, the newest is best
        export_id = next((e for e, meta in snapshots if meta.get("complete")), snapshots[0][0])
        return Base.of_snapshot(*_load(store, export_id), export_id,
                                f"base: export {export_id}, the account's newest snapshot (the file has no "
                                "ClientId: only new rows)")
    best = None
    for export_id, base_frame, meta in _readable_snapshots(store):      # newest first
        score = content_agreement(frame, base_frame)
        if best is None or score >= best[0]:
            best = (score, export_id, base_frame, meta)
    if best is None or best[0] < MATCH_THRESHOLD:
        raise ConfigError(
            f"{source}: no manifest.json beside the file, and it agrees with no export snapshot in this state "
            "dir (it was not exported from this account, or its export's snapshot is gone); nothing was "
            "sent. Pass --base with the export folder or id it came from, or --base none for a two-way "
            "import that writes every difference from IntakeQ")
    score, export_id, base_frame, meta = best
    return Base.of_snapshot(base_frame, meta, export_id, f"base: export {export_id} (no manifest beside the "
                                                         f"file: the snapshot it agrees with best, on "
                                                         f"{score:.0%} of its cells)")


def content_agreement(frame: pd.DataFrame, base: pd.DataFrame) -> float:
    """The share of the file's non-empty writable cells (on up to MATCH_SAMPLE of its
    clients) equal to the snapshot's, compared normalised. A client the snapshot lacks
    disagrees on every cell, so a small filtered export never beats the file's own."""
    from ..codec import normalized_frame

    keyed = frame[frame["ClientId"].notna()].head(MATCH_SAMPLE)
    columns = [c for c in D.compared_columns(frame.columns) if c in base.columns]
    if keyed.empty or not columns or "ClientId" not in base.columns:
        return 0.0
    theirs = base[base["ClientId"].notna()]
    theirs = theirs.set_index(theirs["ClientId"].astype("int64")).reindex(keyed["ClientId"].astype("int64"))
    a = normalized_frame(keyed[columns].reset_index(drop=True), columns).to_numpy(dtype=object)
    b = normalized_frame(theirs[columns].reset_index(drop=True), columns).to_numpy(dtype=object)
    present = pd.notna(a) | pd.notna(b)
    present[~theirs.index.isin(base["ClientId"].dropna().astype("int64")), :] = True   # missing: all disagree
    return float((present & (a == b)).sum() / max(1, present.sum()))


def _has_client_ids(frame: pd.DataFrame | None) -> bool:
    return frame is not None and "ClientId" in frame.columns and bool(frame["ClientId"].notna().any())


def _refuse_without_client_id(source: Path, frame: pd.DataFrame | None, why: str) -> None:
    """A file from an export needs its ClientId column: without it every row would be new."""
    if frame is None or "ClientId" in frame.columns:
        return
    renamed = [c for c in frame.columns if re.sub(r"[^a-z]", "", str(c).lower()) in ("clientid", "id")]
    hint = f" The column {renamed[0]!r} looks like it: rename it back to ClientId." if renamed else ""
    raise ValidationFailed(f"{source}: the file has no ClientId column, but {why}: without it every row "
                           f"would be created as a new client; nothing was sent.{hint}")


def _refuse_older_file(source: Path, frame: pd.DataFrame | None, base: Base, store: SnapshotStore) -> None:
    """The manifest beside a file names the export last run into that folder, not always the
    one the file was copied from: rows exported before the named export give it away."""
    older = _rows_older_than_base(frame, base.frame)
    if not older:
        return
    try:
        candidate = _base_by_content(source, store, frame).export_id
    except ConfigError:
        candidate = None
    suggest = f" (it agrees best with export {candidate}: --base {candidate})" if candidate else ""
    raise ConfigError(
        f"{source}: the manifest beside the file names export {base.export_id}, but {older} of the file's "
        "rows were exported before it (their LastUpdateDate is older): the folder was exported into again "
        f"after the file was made; nothing was sent. Pass --base with the export the file came from{suggest}")


def _rows_older_than_base(frame: pd.DataFrame | None, base: pd.DataFrame | None) -> int:
    column = "LastUpdateDate"
    if frame is None or base is None or column not in frame.columns or column not in base.columns \
            or "ClientId" not in frame.columns:
        return 0
    ok = (frame["ClientId"].notna() & frame[column].notna()).to_numpy()
    theirs_ok = base["ClientId"].notna().to_numpy()
    theirs = pd.Series(utc_ms(base[column])[theirs_ok],
                       index=base["ClientId"][theirs_ok].astype("int64").to_numpy())
    exported = theirs.reindex(frame["ClientId"][ok].astype("int64").to_numpy()).to_numpy()
    mine = utc_ms(frame[column])[ok]
    both = ~np.isnat(exported) & ~np.isnat(mine)
    return int((mine[both] < exported[both]).sum())

