"""The import's checkpoint: a SQLite journal of what each input row has done.

One row per input row that an apply has touched. Every state change is committed at
once (before and after each request), so a ``kill -9`` at any instant loses at most
the knowledge of the one request in flight — and that request is marked ``inflight``,
so the next run verifies it against live before sending anything again.

States: ``inflight`` (an operation was sent, its answer not recorded), ``pending`` (a
transient failure: retried by the next run), and the final ``created``, ``updated``,
``unchanged``, ``failed`` (refused by the API with a 4xx: not retried on resume).

The checkpoint belongs to one plan identity (a hash of the input file's bytes and the
options that shape the plan). Another file or other options refuse to resume while the
journal holds unfinished rows (in flight or pending); a finished journal is simply
started anew.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointMismatch
from .files import create_private_file

FINAL = frozenset({"created", "updated", "unchanged", "failed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row        INTEGER PRIMARY KEY,   -- spreadsheet row of the input file
    status     TEXT NOT NULL,
    client_id  INTEGER,               -- the client it concerns (filled in by a create)
    op         TEXT,                  -- the operation in flight: create, save, tag_add, tag_remove
    detail     TEXT,                  -- e.g. the tag of a tag operation
    known_ids  TEXT,                  -- JSON: live clients sharing a create's name before it was sent
    fields     TEXT,                  -- JSON: the fields changed
    error      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class RowState:
    row: int
    status: str
    client_id: int | None
    op: str | None
    detail: str | None
    known_ids: tuple[int, ...]
    fields: tuple[str, ...]
    error: str | None
    attempts: int

    @property
    def final(self) -> bool:
        return self.status in FINAL


class Checkpoint:
    def __init__(self, path: Path, identity: str, *, restart: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart and self.path.exists():
            self.path.unlink()
        create_private_file(self.path)      # 0600, and never through a symbolic link
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._claim(identity)

    def _claim(self, identity: str) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if row is not None and row[0] != identity and not self._unfinished():
            # A finished run (or one that never sent): nothing to resume, so a new version
            # of the file (a continuing edit, a fixed file) simply starts a new journal.
            # Clients it created stay known through applied.sqlite, never created twice.
            self.db.executescript("DELETE FROM rows; DELETE FROM meta;")
            row = None
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('identity', ?)", (identity,))
        elif row[0] != identity:
            self.db.close()
            raise CheckpointMismatch(
                f"the checkpoint {self.path} belongs to another version of the input file (or "
                "other reading options); run again with --restart to start over: rows already "
                "applied, and clients earlier runs created, are then recognised and not written "
                "again. Or pass --checkpoint with another path"
            )

    def _unfinished(self) -> bool:
        return self.db.execute("SELECT 1 FROM rows WHERE status IN ('inflight', 'pending') LIMIT 1"
                               ).fetchone() is not None

    # ---------------------------------------------------------------- reading
    def get(self, row: int) -> RowState | None:
        found = self.db.execute("SELECT * FROM rows WHERE row=?", (row,)).fetchone()
        return _state(found) if found else None

    def all(self) -> dict[int, RowState]:
        return {r[0]: _state(r) for r in self.db.execute("SELECT * FROM rows")}

    # ---------------------------------------------------------------- writing
    def begin(self, row: int, op: str, *, client_id: int | None = None, detail: str | None = None,
              known_ids=None) -> None:
        """Mark an operation in flight, committed before its request is sent."""
        known = json.dumps(sorted(int(i) for i in known_ids)) if known_ids is not None else None
        self.db.execute(
            """INSERT INTO rows (row, status, client_id, op, detail, known_ids, attempts, updated_at)
               VALUES (?, 'inflight', ?, ?, ?, ?, 1, ?)
               ON CONFLICT(row) DO UPDATE SET status='inflight', op=excluded.op,
                   detail=excluded.detail, client_id=COALESCE(excluded.client_id, rows.client_id),
                   known_ids=COALESCE(excluded.known_ids, rows.known_ids),
                   attempts=rows.attempts + 1, updated_at=excluded.updated_at""",
            (row, client_id, op, detail, known, time.time()),
        )

    def set_client(self, row: int, client_id: int) -> None:
        """Record the ClientId a create produced, the moment its answer arrives."""
        self.db.execute("UPDATE rows SET client_id=?, updated_at=? WHERE row=?",
                        (int(client_id), time.time(), row))

    def finish(self, row: int, status: str, *, client_id: int | None = None, fields=(),
               error: str | None = None) -> None:
        """Record a row's outcome (final, or ``pending`` to retry on the next run)."""
        self.db.execute(
            """INSERT INTO rows (row, status, client_id, fields, error, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(row) DO UPDATE SET status=excluded.status, op=NULL, detail=NULL,
                   client_id=COALESCE(excluded.client_id, rows.client_id),
                   fields=excluded.fields, error=excluded.error, updated_at=excluded.updated_at""",
            (row, status, client_id, json.dumps(list(fields)), error, time.time()),
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _state(r) -> RowState:
    return RowState(row=r[0], status=r[1], client_id=r[2], op=r[3], detail=r[4],
                    known_ids=tuple(json.loads(r[5])) if r[5] else (),
                    fields=tuple(json.loads(r[6])) if r[6] else (),
                    error=r[7], attempts=r[8])
