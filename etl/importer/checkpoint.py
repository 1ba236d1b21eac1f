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
started anew (a continuing edit, a fixed file), at the first write.

The file is created at the first write, not before: a run that stops before sending
anything (an invalid file, a bad option, a declined prompt, a dry run) leaves nothing
that could block the next one. For the same reason a file of another identity with
nothing left to resume (it never began an operation, or every row it began is finished:
clients it created stay known through applied.sqlite) is replaced at the first write,
silently; only one with unfinished rows refuses to resume.
A ``pending`` row may keep its ``op``: the operation's effect could not be verified
(the verifying read failed too), so the next run verifies it first.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointMismatch, PathError
from ..state.files import refuse_symlink
from ..state.sqlite import connect, open_private_db

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

    @property
    def create_unverified(self) -> bool:
        """A create was sent, and whether it made a client is not known yet."""
        return self.op == "create" and self.client_id is None and not self.final


class Checkpoint:
    """The journal at ``path`` for one plan identity; the file appears at the first write.

    ``restart`` ignores an existing file (it is replaced at the first write);
    ``fresh_when_finished`` ignores it too when nothing is left to resume (no row in flight
    or pending): an undo asked again after it finished is a new run, planned afresh.
    ``operations_begun`` counts the operations this object marked in flight: non-zero once
    this run has sent (or is about to send) a write.
    """

    def __init__(self, path: Path, identity: str, *, restart: bool = False, fresh_when_finished: bool = False):
        self.path = Path(path)
        refuse_symlink(self.path, "the checkpoint")
        self.identity = identity
        self.db: sqlite3.Connection | None = None
        self.operations_begun = 0
        self.run_id: str | None = None      # the run it journals (``history``): kept by a resume
        if self.path.exists() and not restart:
            self.db = self._resume_existing(fresh_when_finished)
            self.run_id = _meta(self.db, "run") if self.db is not None else None
        # A file left at path now is not ours (--restart, or it never sent): replaced at the first write.
        self._replaces = self.db is None and self.path.exists()

    def _resume_existing(self, fresh_when_finished: bool = False) -> sqlite3.Connection | None:
        """The file, open for resuming, if it is ours; None if it may be replaced."""
        if self.path.stat().st_size and not _is_checkpoint(self.path):
            raise PathError(f"{self.path} is not a checkpoint of intakeq-etl (another file is there): "
                            "pass --checkpoint with another path; the file was left as it is")
        db = connect(self.path, wal=False)
        if _identity_of(db) == self.identity and not (fresh_when_finished and not _has_unfinished_rows(db)):
            return db
        unfinished = _has_unfinished_rows(db) and _identity_of(db) != self.identity
        db.close()
        if unfinished:
            raise CheckpointMismatch(
                f"the checkpoint {self.path} belongs to another version of the input file (or "
                "other reading options); run again with --restart to start over: rows already "
                "applied, and clients earlier runs created, are then recognised and not written "
                "again. Or pass --checkpoint with another path"
            )
        return None

    def _writable(self) -> sqlite3.Connection:
        if self.db is None:
            self.db = _create(self.path, self.identity, replace=self._replaces)
            if self.run_id is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (self.run_id,))
        return self.db

    def hold_run(self) -> None:
        """Write the checkpoint with its run id now, before the run's journal gets its first
        line: a kill between the two would else leave a journal the resume cannot name (it
        would go on as a second run)."""
        if self.run_id is not None:
            self._writable()

    def keep_run(self, run_id: str) -> None:
        """The run this journal belongs to: kept from its first write (a file of an older
        version, resumed, gets it now)."""
        self.run_id = run_id
        if self.db is not None:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (run_id,))

    # ---------------------------------------------------------------- reading
    def get(self, row: int) -> RowState | None:
        if self.db is None:
            return None
        found = self.db.execute("SELECT * FROM rows WHERE row=?", (row,)).fetchone()
        return _state(found) if found else None

    def all(self) -> dict[int, RowState]:
        if self.db is None:
            return {}
        return {r[0]: _state(r) for r in self.db.execute("SELECT * FROM rows")}

    # ---------------------------------------------------------------- writing
    def begin(self, row: int, op: str, *, client_id: int | None = None, detail: str | None = None,
              known_ids=None) -> None:
        """Mark an operation in flight, committed before its request is sent."""
        known = json.dumps(sorted(int(i) for i in known_ids)) if known_ids is not None else None
        self._writable().execute(
            """INSERT INTO rows (row, status, client_id, op, detail, known_ids, attempts, updated_at)
               VALUES (?, 'inflight', ?, ?, ?, ?, 1, ?)
               ON CONFLICT(row) DO UPDATE SET status='inflight', op=excluded.op,
                   detail=excluded.detail, client_id=COALESCE(excluded.client_id, rows.client_id),
                   known_ids=COALESCE(excluded.known_ids, rows.known_ids),
                   attempts=rows.attempts + 1, updated_at=excluded.updated_at""",
            (row, client_id, op, detail, known, time.time()),
        )
        self.operations_begun += 1

    def set_client(self, row: int, client_id: int) -> None:
        """Record the ClientId a create produced, the moment its answer arrives."""
        self._writable().execute("UPDATE rows SET client_id=?, updated_at=? WHERE row=?",
                                 (int(client_id), time.time(), row))

    def finish(self, row: int, status: str, *, client_id: int | None = None, fields=(),
               error: str | None = None) -> None:
        """Record a row's outcome (final, or ``pending`` to retry on the next run)."""
        self._writable().execute(
            """INSERT INTO rows (row, status, client_id, fields, error, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(row) DO UPDATE SET status=excluded.status, op=NULL, detail=NULL,
                   client_id=COALESCE(excluded.client_id, rows.client_id),
                   fields=excluded.fields, error=excluded.error, updated_at=excluded.updated_at""",
            (row, status, client_id, json.dumps(list(fields)), error, time.time()),
        )

    def leave_unverified(self, row: int, *, fields=(), error: str) -> None:
        """``pending``, keeping the operation in flight: its effect could not be verified,
        so the next run verifies it before anything is sent again."""
        self._writable().execute(
            "UPDATE rows SET status='pending', fields=?, error=?, updated_at=? WHERE row=?",
            (json.dumps(list(fields)), error, time.time(), row))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _identity_of(db: sqlite3.Connection) -> str | None:
    """The identity the file was made for; None for a file with no checkpoint tables."""
    try:
        found = db.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
    except sqlite3.OperationalError:        # no such table: an empty or foreign database
        return None
    return found[0] if found else None


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    found = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return found[0] if found else None


def _is_checkpoint(path: Path) -> bool:
    """A checkpoint file: an SQLite database whose meta table names an identity (a
    database of anything else, e.g. applied.sqlite, is never ours to replace).

    A run killed in the middle of a commit leaves a hot journal beside the file, which a
    read-only connection cannot roll back (SQLITE_READONLY_ROLLBACK): the file is then
    opened read-write, so that SQLite rolls the journal back, as the next writer would,
    before it is looked at."""
    for mode in ("ro", "rw"):
        try:
            db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True)
            try:
                db.execute("SELECT name FROM sqlite_master").fetchall()    # reads (or recovers) the file
                return _identity_of(db) is not None
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if mode == "ro" and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY_ROLLBACK:
                continue
            return False
        except sqlite3.DatabaseError:       # not a database at all
            return False
    return False


def _has_unfinished_rows(db: sqlite3.Connection) -> bool:
    """Does the file hold a row still in flight or pending (something a re-run resumes)?"""
    try:
        return db.execute("SELECT 1 FROM rows WHERE status IN ('inflight', 'pending') LIMIT 1"
                          ).fetchone() is not None
    except sqlite3.OperationalError:        # no rows table: nothing was ever begun
        return False


def _create(path: Path, identity: str, *, replace: bool) -> sqlite3.Connection:
    """A new, owner-only checkpoint file for ``identity``; ``replace`` removes the one at ``path``."""
    if replace:
        # The old file's journal too: SQLite would roll a stale one back into the new file.
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    # exclusive (O_EXCL): a file that appeared since the run started (another run) is never
    # overwritten. Beside the user's file, so its folder keeps its mode (state_dir=False).
    # The rollback journal, synchronous=FULL: each state change is on disk before its request.
    db = open_private_db(path, wal=False, schema=_SCHEMA, state_dir=False, exclusive=True)
    db.execute("INSERT INTO meta VALUES ('identity', ?)", (identity,))
    return db


def _state(r) -> RowState:
    return RowState(row=r[0], status=r[1], client_id=r[2], op=r[3], detail=r[4],
                    known_ids=tuple(json.loads(r[5])) if r[5] else (),
                    fields=tuple(json.loads(r[6])) if r[6] else (),
                    error=r[7], attempts=r[8])
