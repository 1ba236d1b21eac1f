"""What imports have written, and the clients they created.

A three-way merge compares IntakeQ now with the base to tell staff edits from the
admin's. Without this record, a value an earlier import wrote would look like a staff
edit the next time a file is imported (a false conflict). So every field an import
saves is recorded here per (export id, ClientId, field); :func:`written` gives the
diff the last value saved per (ClientId, field). The base itself is never changed:
edits are always the file against the export it came from, so a second file copied
from the same export cannot undo what the first one's import wrote (the diff keeps
those cells, see ``diff.Kept``).

SQLite in the account's state dir, owner-only; it holds field values, like the
snapshots beside it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from ..state.sqlite import open_private_db
from .diff import Written

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
    # WAL: every import of the account reads and writes it, several processes at once.
    db = open_private_db(account_dir / "applied.sqlite", wal=True, schema=_SCHEMA)
    if "source" not in {row[1] for row in db.execute("PRAGMA table_info(created)")}:
        db.execute("ALTER TABLE created ADD COLUMN source TEXT")     # older state dirs
    return db


def record(account_dir: Path, export_id: str | None, client_id: int, changes: Iterable) -> None:
    """Remember the values a save sent (``changes``: diff.Change objects), Name following
    FirstName/LastName included: live holding any of them is our doing, not staff's.
    A two-way import (no base) is recorded under export id "".
    """
    changes = list(changes)
    if not changes:
        return
    db = _connect(account_dir)
    try:
        db.executemany(
            "INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?, ?)",
            [(export_id or "", int(client_id), c.field, json.dumps(_plain(c.new)), time.time())
             for c in changes])
    finally:
        db.close()


def written(account_dir: Path) -> dict[tuple[int, str], Written]:
    """(ClientId, field) → the last value any import of this account saved there, and when."""
    if not (account_dir / "applied.sqlite").exists():
        return {}
    db = _connect(account_dir)
    try:
        rows = db.execute("SELECT client_id, field, value, at FROM applied ORDER BY at").fetchall()
    finally:
        db.close()
    return {(int(cid), field): Written(json.loads(value), at) for cid, field, value, at in rows}


def _plain(v):
    if v is None:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def record_created(account_dir: Path, client_id: int, first: str, last: str, source: Path | None = None) -> None:
    """Remember a client an import created (casefolded names) and the file it came from, so
    that a later import of the same row — its checkpoint lost or restarted, or its email
    edited since — finds it instead of creating it again."""
    db = _connect(account_dir)
    try:
        db.execute("INSERT OR REPLACE INTO created (client_id, first, last, at, source) VALUES (?, ?, ?, ?, ?)",
                   (int(client_id), first or "", last or "", time.time(),
                    str(Path(source).resolve()) if source else None))
    finally:
        db.close()


def created_names(account_dir: Path, source: Path | None = None) -> dict[tuple[str, str], set[int]]:
    """(first, last) → ClientIds of the clients imports created in this account (only from
    the file ``source``, when given)."""
    if not (account_dir / "applied.sqlite").exists():
        return {}
    db = _connect(account_dir)
    try:
        query, args = "SELECT client_id, first, last FROM created", ()
        if source is not None:
            query, args = query + " WHERE source = ?", (str(Path(source).resolve()),)
        out: dict[tuple[str, str], set[int]] = {}
        for cid, first, last in db.execute(query, args):
            out.setdefault((first, last), set()).add(int(cid))
        return out
    finally:
        db.close()
