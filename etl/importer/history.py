"""The account's history of imports and undos, and the journal of what each one changed.

Every run that writes gets a run id (:func:`new_run_id`) and a line in ``runs``; before a
row's first request is sent, the row's **before image** (the live value of each field the
run changes, each tag it adds or removes) and its **after image** (what it sends) are
committed to ``changes`` with the status ``sent``; once the row is done they become
``confirmed``. So even a run killed in the middle of a request can be taken back
(``intakeq-etl undo``, :mod:`etl.importer.undo`): a ``sent`` change is checked against
live like any other.

Fields are the import's columns; a tag call is the field ``Tags+<tag>`` or ``Tags-<tag>``
(:func:`etl.importer.diff.tag_op_field`), a client the run created is the field
:data:`CREATED` (its after image: its first and last name).

SQLite (WAL: every run of the account writes it) in the account's state dir beside
``applied.sqlite``, owner-only: it holds field values.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..state.sqlite import open_private_db

IMPORT, UNDO = "import", "undo"
CREATED = "(created)"            # the field of a client the run created
SENT, CONFIRMED = "sent", "confirmed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id    TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,          -- import | undo
    undoes    TEXT,                   -- an undo: the run it takes back
    started   REAL NOT NULL,
    finished  REAL,                   -- the end of its latest round
    file      TEXT,                   -- the input file (an import) or the undone run's file
    counts    TEXT,                   -- JSON: created/updated/tagged/conflict/failed/pending...
    undone_by TEXT,                   -- the undo run that took this one back
    timezone  TEXT,                   -- the zone its dates were sent in (an undo sends them so)
    checkpoint TEXT                   -- its checkpoint (an undo holds its lock: never beside it)
);
CREATE TABLE IF NOT EXISTS changes (
    run_id    TEXT NOT NULL,
    row       INTEGER NOT NULL,       -- the input file's row (an undo: the undone run's row)
    client_id INTEGER,                -- NULL: a create whose answer never came
    field     TEXT NOT NULL,          -- a column, Tags+<tag>, Tags-<tag>, or (created)
    before    TEXT,                   -- JSON: the live value before the run
    after     TEXT,                   -- JSON: what the run sent
    status    TEXT NOT NULL,          -- sent | confirmed
    at        REAL NOT NULL,
    PRIMARY KEY (run_id, row, field)
);
"""


def new_run_id(now: float | None = None) -> str:
    """Short, sortable and unique: ``20261201T211530-3f9a`` (UTC start, 4 random hex digits)."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return f"{stamp:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Run:
    run_id: str
    kind: str
    undoes: str | None
    started: float
    finished: float | None
    file: str | None
    counts: dict
    undone_by: str | None
    timezone: str | None = None
    checkpoint: str | None = None

    def as_json(self) -> dict:
        return {"run": self.run_id, "kind": self.kind, "undoes": self.undoes,
                "started": _iso(self.started), "finished": _iso(self.finished),
                "file": Path(self.file).name if self.file else None, "counts": self.counts,
                "undone_by": self.undone_by}


@dataclass(frozen=True)
class JournalEntry:
    row: int
    client_id: int | None
    field: str
    before: Any
    after: Any
    status: str
    at: float


def path_of(account_dir: Path) -> Path:
    return Path(account_dir) / "history.sqlite"


def _connect(account_dir: Path) -> sqlite3.Connection:
    return open_private_db(path_of(account_dir), wal=True, schema=_SCHEMA)


class History:
    """The account's history store (open it with ``with History(account_dir) as h``)."""

    def __init__(self, account_dir: Path):
        self.account_dir = Path(account_dir)
        self.db = _connect(self.account_dir)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- runs
    def start(self, run_id: str, kind: str, *, file: str | None, undoes: str | None = None,
              timezone: str | None = None, checkpoint: str | None = None) -> None:
        """The run's line, once (a resumed run keeps its first start)."""
        self.db.execute("INSERT OR IGNORE INTO runs (run_id, kind, undoes, started, file, timezone, checkpoint) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, kind, undoes, time.time(), file, timezone, checkpoint))

    def unfinished(self, kind: str, checkpoint: str | None) -> str | None:
        """The newest run of ``kind`` with this checkpoint that never finished a round (killed
        after its last write, before its end was recorded)."""
        if checkpoint is None:
            return None
        found = self.db.execute("SELECT run_id FROM runs WHERE kind=? AND checkpoint=? AND finished IS NULL "
                                "ORDER BY started DESC LIMIT 1", (kind, checkpoint)).fetchone()
        return found[0] if found else None

    def finish_round(self, run_id: str, counts: dict) -> None:
        self.db.execute("UPDATE runs SET finished=?, counts=? WHERE run_id=?",
                        (time.time(), json.dumps(counts, sort_keys=True), run_id))

    def mark_undone(self, run_id: str, by: str) -> None:
        """``run_id`` is undone by ``by`` (a first undo only). Undoing an undo puts the run
        it had undone back in effect: no longer undone."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE runs SET undone_by=? WHERE run_id=? AND undone_by IS NULL", (by, run_id))
            self.db.execute("UPDATE runs SET undone_by=NULL WHERE undone_by=? AND run_id=(SELECT undoes FROM "
                            "runs WHERE run_id=? AND kind='undo')", (run_id, run_id))

    def runs(self) -> list[Run]:
        """Newest first."""
        return [_run(r) for r in self.db.execute(
            "SELECT run_id, kind, undoes, started, finished, file, counts, undone_by, timezone, checkpoint "
            "FROM runs "
            "ORDER BY started DESC, run_id DESC")]

    def run(self, run_id: str) -> Run | None:
        found = self.db.execute("SELECT run_id, kind, undoes, started, finished, file, counts, undone_by, timezone, "
                                "checkpoint FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _run(found) if found else None

    # ---------------------------------------------------------------- the journal
    def sending(self, run_id: str, row: int, client_id: int | None,
                images: Iterable[tuple[str, Any, Any]]) -> None:
        """Before a row's first request: its (field, before, after) images, committed.

        A resumed run keeps the first before image (the value before the run touched it)."""
        now = time.time()
        with self.db:     # one transaction: the row's images all or none
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                """INSERT INTO changes (run_id, row, client_id, field, before, after, status, at)
                   VALUES (?, ?, ?, ?, ?, ?, 'sent', ?)
                   ON CONFLICT(run_id, row, field) DO UPDATE SET after=excluded.after,
                       client_id=COALESCE(changes.client_id, excluded.client_id), status='sent'""",
                [(run_id, row, client_id, field, _dumps(before), _dumps(after), now)
                 for field, before, after in images])

    def confirmed(self, run_id: str, row: int, client_id: int | None) -> None:
        """The row's requests were answered (``client_id``: the client a create made)."""
        self.db.execute("UPDATE changes SET status='confirmed', client_id=COALESCE(client_id, ?) "
                        "WHERE run_id=? AND row=?", (client_id, run_id, row))

    def forget(self, run_id: str, row: int, fields) -> None:
        """Journal entries of writes that never happened (refused before taking effect)."""
        self.db.executemany("DELETE FROM changes WHERE run_id=? AND row=? AND field=? AND status='sent'",
                            [(run_id, row, f) for f in fields])

    def set_client(self, run_id: str, row: int, client_id: int) -> None:
        self.db.execute("UPDATE changes SET client_id=? WHERE run_id=? AND row=? AND client_id IS NULL",
                        (int(client_id), run_id, row))

    def journal(self, run_id: str) -> list[JournalEntry]:
        return [JournalEntry(row, cid, field, _loads(b), _loads(a), status, at) for row, cid, field, b, a, status, at
                in self.db.execute("SELECT row, client_id, field, before, after, status, at FROM changes "
                                   "WHERE run_id=? ORDER BY row, rowid", (run_id,))]

    def touched_later(self, run: Run) -> set[tuple[int, str]]:
        """(ClientId, field) that imports started after ``run``, and not undone, changed
        (tags as ``Tags:<tag>``): live holding ``run``'s value there is not ``run``'s doing."""
        found = self.db.execute(
            """SELECT c.client_id, c.field FROM changes c JOIN runs r ON r.run_id = c.run_id
               WHERE r.kind = 'import' AND r.undone_by IS NULL AND r.run_id != ?
                     AND (r.started > ? OR (r.started = ? AND r.run_id > ?))
                     AND c.client_id IS NOT NULL""",
            (run.run_id, run.started, run.started, run.run_id)).fetchall()
        return {(int(cid), change_key(field)) for cid, field in found}


def is_undone(account_dir: Path, run_id: str | None) -> bool:
    """Has an undo taken the run back (``undone_by``)?"""
    if run_id is None:
        return False
    with History(account_dir) as history:
        found = history.run(run_id)
    return found is not None and found.undone_by is not None


def change_key(field: str) -> str:
    """A field's key for "the same change": a tag's add and removal are one key."""
    tag = tag_of(field)
    return f"Tags:{tag}" if tag is not None else field


def tag_of(field: str) -> str | None:
    """The tag of a ``Tags+<tag>`` / ``Tags-<tag>`` field, else None."""
    if field.startswith(("Tags+", "Tags-")):
        return field[5:]
    return None


def _run(r) -> Run:
    return Run(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {}, r[7], r[8], r[9])


def _plain(v):
    if hasattr(v, "isoformat"):                  # a date or a timestamp: ISO text, read back as such
        return v.isoformat()
    if isinstance(v, (set, frozenset, tuple)):
        return sorted(str(t) for t in v)
    if hasattr(v, "item"):                      # a numpy scalar
        return v.item()
    try:
        import pandas as pd

        if v is pd.NA or (isinstance(v, float) and v != v):
            return None
    except ImportError:     # pragma: no cover
        pass
    return v


def _dumps(v) -> str:
    return json.dumps(_plain(v))


def _loads(text: str | None):
    return None if text is None else json.loads(text)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(epoch: float | None) -> str:
    """A start time as people read it: ``2026-12-01 21:15 UTC``."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")




# --------------------------------------------------------------------------- a run's journal


@dataclass(frozen=True)
class RunInfo:
    """Who is writing: the run id, its kind, its input file, the run an undo takes back."""

    run_id: str
    kind: str = IMPORT
    file: str | None = None
    undoes: str | None = None
    checkpoint: str | None = None       # its checkpoint file (resolved)


FINISHED_ROW = frozenset({"created", "updated"})


class Journal:
    """One run's journal, open while it applies a round (``importer.run`` drives it)."""

    def __init__(self, account_dir: Path, run: RunInfo, *, timezone: str | None = None):
        self.run = run
        self.saved_rows: set[int] = set()
        self.history = History(account_dir)
        self.history.start(run.run_id, run.kind, file=run.file, undoes=run.undoes, timezone=timezone,
                           checkpoint=run.checkpoint)

    def sending(self, plan) -> None:
        """Before the row's first request: what it changes, before and after."""
        self.history.sending(self.run.run_id, plan.row, plan.client_id, images(plan))

    def created(self, plan) -> None:
        self.history.set_client(self.run.run_id, plan.row, plan.client_id)

    def saved(self, plan) -> None:
        """A save of the row landed (``apply_plan``'s ``on_saved``; tag calls come apart)."""
        if any(tag_of(c.field) is None for c in plan.changes):
            self.saved_rows.add(plan.row)

    def row_done(self, plan, result) -> None:
        if result is None:
            return
        if result.status in FINISHED_ROW or (result.status == "conflict" and plan.conflicts):
            self.history.confirmed(self.run.run_id, plan.row, result.client_id)
        elif result.status in ("failed", "conflict") and plan.row not in self.saved_rows:
            # Refused (4xx), or a clash found before sending: the save or create never
            # happened, so its fields are not the run's to take back (tag calls may have).
            fields = [CREATED] if plan.action == "create" else [c.field for c in plan.changes]
            self.history.forget(self.run.run_id, plan.row, fields)

    def finish(self, results) -> None:
        """The round's counts; an undo with nothing left pending marks its run undone."""
        try:
            results = list(results)
            self.history.finish_round(self.run.run_id, counts(results))
            if self.run.undoes and not any(r.status == "pending" for r in results):
                self.history.mark_undone(self.run.undoes, self.run.run_id)
        finally:
            self.history.close()


def images(plan) -> list[tuple[str, Any, Any]]:
    """(field, before, after) of everything a row's requests change."""
    from .diff import CREATE, tag_op_field

    if plan.action == CREATE:
        body = plan.body or {}
        return [(CREATED, None, {"FirstName": body.get("FirstName"), "LastName": body.get("LastName")})]
    out = [(c.field, c.old, c.new) for c in plan.changes]
    out += [(tag_op_field(t, True), False, True) for t in plan.tag_adds]
    out += [(tag_op_field(t, False), True, False) for t in plan.tag_removes]
    return out


def counts(results) -> dict[str, int]:
    """A run's counts for ``history``: created, updated (a field saved), tagged (tag calls),
    and the rows that conflict, failed, wait (pending) or are left to do by hand."""
    out: dict[str, int] = {}

    def add(key):
        out[key] = out.get(key, 0) + 1

    for r in results:
        if r.status == "created":
            add("created")
        if r.status in ("updated", "conflict"):
            if any(f != "Tags" for f in r.fields):
                add("updated")
            if "Tags" in r.fields:
                add("tagged")
        if r.status in ("conflict", "failed", "pending", "manual"):
            add(r.status)
    return out
