"""What imports have written: the base moves with our own edits; creates are remembered.

A three-way merge compares IntakeQ now with the base to tell staff edits from the
admin's. Without this record, a value an earlier import wrote would look like a staff
edit the next time a file from the same export is imported (a false conflict). So
every field an import saves is recorded here per (export id, ClientId, field), and
:func:`overlay` lays those values over the snapshot before the diff.

SQLite in the account's state dir, owner-only; it holds field values, like the
snapshots beside it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable

import pandas as pd

from .files import create_private_file, ensure_private_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS created (
    client_id INTEGER PRIMARY KEY, first TEXT NOT NULL, last TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    export_id TEXT NOT NULL, client_id INTEGER NOT NULL, field TEXT NOT NULL,
    value TEXT, at REAL NOT NULL,
    PRIMARY KEY (export_id, client_id, field)
);
"""


def _connect(account_dir: Path) -> sqlite3.Connection:
    ensure_private_dir(account_dir)
    path = account_dir / "applied.sqlite"
    create_private_file(path)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.executescript(_SCHEMA)
    return db


def record(account_dir: Path, export_id: str | None, client_id: int, changes: Iterable) -> None:
    """Remember the admin's values a save sent (``changes``: diff.Change objects).

    Derived changes (Name following FirstName/LastName) are left out: the file's Name
    cell was not edited, so the base must keep the Name the file still holds.
    """
    changes = [c for c in changes if not getattr(c, "derived", False)]
    if export_id is None or not changes:
        return
    db = _connect(account_dir)
    try:
        db.executemany(
            "INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?)",
            [(export_id, int(client_id), c.field, json.dumps(_plain(c.new)), time.time()) for c in changes])
    finally:
        db.close()


def overlay(account_dir: Path, export_id: str | None, base: pd.DataFrame | None) -> pd.DataFrame | None:
    """The base snapshot with every value imports have written since laid over it."""
    if base is None or export_id is None or not (account_dir / "applied.sqlite").exists():
        return base
    db = _connect(account_dir)
    try:
        rows = db.execute("SELECT client_id, field, value FROM applied WHERE export_id=?",
                          (export_id,)).fetchall()
    finally:
        db.close()
    if not rows:
        return base
    base = base.copy()
    position = {int(cid): i for i, cid in enumerate(base["ClientId"]) if not pd.isna(cid)}
    for client_id, field, value in rows:
        if client_id in position and field in base.columns:
            base.iat[position[client_id], base.columns.get_loc(field)] = _typed(json.loads(value))
    return base


def _plain(v):
    if v is None:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _typed(v):
    return pd.NA if v is None else v


def record_created(account_dir: Path, client_id: int, first: str, last: str) -> None:
    """Remember a client an import created (casefolded names), so that a later import of
    the same row without email or phone — its checkpoint lost or restarted — finds it
    instead of creating it again."""
    db = _connect(account_dir)
    try:
        db.execute("INSERT OR REPLACE INTO created VALUES (?, ?, ?, ?)",
                   (int(client_id), first or "", last or "", time.time()))
    finally:
        db.close()


def created_names(account_dir: Path) -> dict[tuple[str, str], set[int]]:
    """(first, last) → ClientIds of the clients imports created in this account."""
    if not (account_dir / "applied.sqlite").exists():
        return {}
    db = _connect(account_dir)
    try:
        out: dict[tuple[str, str], set[int]] = {}
        for cid, first, last in db.execute("SELECT client_id, first, last FROM created"):
            out.setdefault((first, last), set()).add(int(cid))
        return out
    finally:
        db.close()
