"""Planning reads kept beside the checkpoint, so no run throws away the reads it paid for.

On 500 requests a day, reads are the cost of an import's planning: a look-up per edited
client, or a full pull. Without this module every run, every ``--wait`` round and the
real run after a dry run read them all again; a plan needing more reads than a day's
budget never got past planning.

What a run reads while planning (client profiles, the listing of clients created since
the base, a full pull) is kept in ``<stem>.reads.sqlite`` beside the checkpoint (0600,
never through a link), record by record as it arrives, so a budget stop keeps it. The
next run (or ``--wait`` round) first asks IntakeQ what changed since the oldest kept
read: one ``dateUpdatedStart`` listing (a page per 100 clients changed; listed with full
profiles, so a changed client needs no look-up of its own). Listed clients replace their
kept copies; everything else is still as read; then only what is missing is read.

The file belongs to one account and one plan identity (the input file's bytes and
reading options). Kept by a real run, it serves the next runs of that file, over days.
Kept by a dry run only, it serves within a window (``INTAKEQ_REUSE_DRY_RUN_MINUTES``,
default 60; 0 turns reuse of a dry run's reads off) and only with the same options. In
doubt (another account, file or options, a dry run older than the window, a file that
is not ours), it is ignored and replaced: the run reads as it would without it. A real
run that finishes with every row done removes the file.

A client deleted since it was read is not listed by ``dateUpdatedStart``: its save is
then refused by IntakeQ (not found) and the row reported failed, as a fresh read would.
A full pull (no base, or many rows changed) is fetched as a full export is, each page kept
as it arrives in the account's ``export-progress.sqlite`` under this plan's key: one larger
than a day's budget goes on the next day where it stopped, and stays exact (see
``etl.export.resume``).
"""
from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..api.client import PAGE_SIZE
from ..clock import api_day_before
from ..config import DEFAULT_REUSE_DRY_RUN_MINUTES, ENV_REUSE_DRY_RUN_MINUTES
from ..errors import ConfigError
from ..state.files import make_private_dirs, refuse_symlink
from ..state.sqlite import connect, open_private_db

WINDOW_VARIABLE = ENV_REUSE_DRY_RUN_MINUTES
DEFAULT_WINDOW_MINUTES = DEFAULT_REUSE_DRY_RUN_MINUTES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    client_id INTEGER PRIMARY KEY,
    record    TEXT,                 -- JSON profile; NULL: no such client when read
    read_at   REAL NOT NULL         -- as current as this epoch (read, or checked since)
);
CREATE TABLE IF NOT EXISTS listings (
    name    TEXT PRIMARY KEY,       -- the query's filters, as JSON
    ids     TEXT NOT NULL,          -- JSON: the ClientIds it listed, in order
    read_at REAL NOT NULL
);
"""


def reads_path(checkpoint: Path) -> Path:
    """``clients.checkpoint.sqlite`` → ``clients.reads.sqlite``; another name gets ``.reads.sqlite``."""
    checkpoint = Path(checkpoint)
    name = checkpoint.name
    for suffix in (".sqlite", ".checkpoint"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return checkpoint.with_name(name + ".reads.sqlite")


def window_seconds(env=None) -> float:
    """How long a dry run's reads serve the real run (``INTAKEQ_REUSE_DRY_RUN_MINUTES``)."""
    env = os.environ if env is None else env
    raw = (env.get(WINDOW_VARIABLE) or "").strip()
    if not raw:
        return DEFAULT_WINDOW_MINUTES * 60.0
    try:
        minutes = float(raw)
    except ValueError:
        minutes = -1
    if not minutes >= 0:
        raise ConfigError(f"{WINDOW_VARIABLE} must be 0 (never reuse a dry run's reads) or a number "
                          f"of minutes; got {raw!r}")
    return minutes * 60.0


class KeptReads:
    """The reads file of one import (see the module's docstring).

    ``reused_from`` says whose reads were found ("the dry run", "earlier runs") or None;
    :meth:`reader` wraps the API client for one planning round.
    """

    def __init__(self, path: Path, *, account: str, identity: str, options: dict, dry_run: bool,
                 clock, window: float | None = None):
        self.path = Path(path)
        refuse_symlink(self.path, "the reads file")
        self.account, self.identity, self.dry_run, self.clock = account, identity, dry_run, clock
        self.options = json.dumps(options, sort_keys=True, default=str)
        self.window = window_seconds() if window is None else window
        self.db: sqlite3.Connection | None = None
        self.reused_from: str | None = None
        self.why_not: str | None = None       # why an existing file was not used
        self.enabled = True                   # False: a file that is not ours is there (left alone)
        if self.path.exists():
            self.db = self._open_existing()

    # ---------------------------------------------------------------- opening
    def _open_existing(self) -> sqlite3.Connection | None:
        try:
            db = connect(self.path, wal=False)
            _no_sync(db)
            meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError:       # not ours: left as it is, and nothing is kept
            self.why_not = "not a reads file of intakeq-etl (left as it is; nothing is kept)"
            self.enabled = False
            return None
        if "identity" not in meta:
            db.close()
            self.why_not = "not a reads file of intakeq-etl (left as it is; nothing is kept)"
            self.enabled = False
            return None
        reason = self._doubt(meta)
        if reason is not None:
            db.close()
            self.why_not = reason
            return None
        self.reused_from = "the dry run" if meta.get("kind") == "dry-run" else "earlier runs"
        return db

    def _doubt(self, meta: dict) -> str | None:
        """Why the kept reads must not be used (None: they may)."""
        if meta.get("account") != self.account or meta.get("identity") != self.identity:
            return "kept for another file, options or account"
        if meta.get("kind") == "dry-run":
            if self.window <= 0:
                return f"reuse of a dry run's reads is off ({WINDOW_VARIABLE}=0)"
            if self.clock.time() - float(meta.get("dry_run_at", 0)) > self.window:
                return f"the dry run is older than {self.window / 60:g} min ({WINDOW_VARIABLE})"
            if meta.get("options") != self.options:
                return "the dry run had other options"
        return None

    def _writable(self) -> sqlite3.Connection:
        """The file, open and in a transaction that notes this run's use of it: every
        write goes into one transaction with it (one commit a kept read, not two)."""
        if self.db is None:
            make_private_dirs(self.path.parent)
            if self.path.exists() or self.path.is_symlink():
                refuse_symlink(self.path, "the reads file")
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            # 0600, never through a link; one run writes it at a time: no WAL
            self.db = open_private_db(self.path, wal=False, schema=_SCHEMA, state_dir=False)
            _no_sync(self.db)
            meta = dict(account=self.account, identity=self.identity, options=self.options,
                        kind="dry-run" if self.dry_run else "run", dry_run_at=self.clock.time())
        elif not self.dry_run:                     # a real run's reads serve over days
            meta = dict(kind="run")
        else:
            meta = dict(dry_run_at=self.clock.time(), options=self.options)
        self.db.execute("BEGIN")
        try:
            self._set_meta(**meta)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.db

    def _set_meta(self, **values) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [(k, str(v)) for k, v in values.items()])

    # ---------------------------------------------------------------- reading
    def oldest(self) -> float | None:
        if self.db is None:
            return None
        found = self.db.execute("SELECT MIN(t) FROM (SELECT MIN(read_at) AS t FROM records "
                                "UNION ALL SELECT MIN(read_at) FROM listings)").fetchone()
        return found[0] if found else None

    def record(self, client_id: int):
        """(True, profile or None) when kept; (False, None) when not."""
        if self.db is None:
            return False, None
        found = self.db.execute("SELECT record FROM records WHERE client_id=?", (int(client_id),)).fetchone()
        if found is None:
            return False, None
        return True, (json.loads(found[0]) if found[0] is not None else None)

    def kept_ids(self) -> set[int]:
        if self.db is None:
            return set()
        return {r[0] for r in self.db.execute("SELECT client_id FROM records")}

    def listing(self, name: str) -> list[int] | None:
        if self.db is None:
            return None
        found = self.db.execute("SELECT ids FROM listings WHERE name=?", (name,)).fetchone()
        return json.loads(found[0]) if found else None

    # ---------------------------------------------------------------- keeping
    def keep(self, client_id: int, record: dict | None, at: float) -> None:
        db = self._writable()
        try:
            db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                       (int(client_id), json.dumps(record) if record is not None else None, at))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def keep_listing(self, name: str, records: list[dict], at: float) -> None:
        db = self._writable()
        try:
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                           [(int(r["ClientId"]), json.dumps(r), at) for r in records])
            db.execute("INSERT OR REPLACE INTO listings VALUES (?, ?, ?)",
                       (name, json.dumps([int(r["ClientId"]) for r in records]), at))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def checked(self, records: list[dict], at: float) -> None:
        """After a freshness listing at ``at``: listed clients replace their copies (and join
        the listings they now belong to); every other kept read is as current as ``at``."""
        db = self._writable()
        try:
            kept = self.kept_ids()
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                           [(int(r["ClientId"]), json.dumps(r), at) for r in records
                            if int(r["ClientId"]) in kept])
            for name, ids_json in db.execute("SELECT name, ids FROM listings").fetchall():
                ids = json.loads(ids_json)
                have = set(ids)
                start = _created_start_ms(json.loads(name))
                ids += [int(r["ClientId"]) for r in records if int(r["ClientId"]) not in have
                        and (start is None or float(r.get("DateCreated") or 0) >= start)]
                members = set(ids)
                for r in records:
                    if int(r["ClientId"]) in members and int(r["ClientId"]) not in kept:
                        db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                                   (int(r["ClientId"]), json.dumps(r), at))
                db.execute("UPDATE listings SET ids=?, read_at=? WHERE name=?", (json.dumps(ids), at, name))
            db.execute("UPDATE records SET read_at=? WHERE read_at < ?", (at, at))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def discard(self) -> None:
        """Remove the file (the import is done: its reads would only go stale)."""
        self.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def reader(self, client):
        """``client`` reading through this file (``client`` itself when nothing may be kept)."""
        return ReadThrough(client, self) if self.enabled else client


class ReadThrough:
    """The API client as planning sees it: kept reads first (after one freshness listing),
    the API for what is missing, each answer kept as it arrives.

    ``reused`` counts the requests kept reads saved.
    """

    def __init__(self, client, kept: KeptReads):
        self.client, self.kept = client, kept
        self.clock = client.clock
        self.reused = 0
        self.recent: dict[int, dict] = {}       # listed by this round's freshness query
        self._checked = False

    @property
    def requests_sent(self) -> int:
        return self.client.requests_sent

    def cached_ids(self) -> set[int]:
        """Clients whose look-up costs nothing now."""
        return self.kept.kept_ids() | set(self.recent)

    def has_listing(self, **filters) -> bool:
        return self.kept.listing(_listing_name(filters)) is not None

    def _check_freshness(self) -> None:
        """Once a round, before kept reads serve: what changed since the oldest of them."""
        if self._checked:
            return
        self._checked = True
        oldest = self.kept.oldest()
        if oldest is None:
            return
        since = api_day_before(oldest)
        at = self.clock.time()
        listed = list(self.client.iter_clients(date_updated_start=since))
        self.recent = {int(r["ClientId"]): r for r in listed}
        self.kept.checked(listed, at)

    def get_client(self, client_id: int) -> dict | None:
        self._check_freshness()
        cid = int(client_id)
        if cid in self.recent:          # listed with its profile by the freshness query
            if not self.kept.record(cid)[0]:
                self.kept.keep(cid, self.recent[cid], self.clock.time())
            return self.recent[cid]
        found, record = self.kept.record(cid)
        if found:
            self.reused += 1
            return record
        at = self.clock.time()
        record = self.client.get_client(cid)
        self.kept.keep(cid, record, at)
        return record

    def iter_clients(self, **filters):
        self._check_freshness()
        name = _listing_name(filters)
        ids = self.kept.listing(name)
        if ids is not None:
            records = [r for r in (self.kept.record(i)[1] for i in ids) if r is not None]
            self.reused += len(records) // PAGE_SIZE + 1
            return iter(records)
        at = self.clock.time()
        if filters or not hasattr(self.client, "settings"):
            records = list(self.client.iter_clients(**filters))   # kept only once complete
        else:
            records = self._full_pull()
        self.kept.keep_listing(name, records, at)
        return iter(records)

    def _full_pull(self) -> list[dict]:
        """Every client, fetched as a full export is: page by page, each page kept as it
        arrives (the account's export-progress file, under this plan's own key), so a pull
        larger than a day's budget goes on the next day where it stopped and stays exact
        (parts that do not shift, a check page, the catch-up: see etl.export.resume)."""
        from ..export.fetch import Run
        from ..export.hooks import ExportHooks
        from ..export.resume import FullExportJob, ProgressStore, job_key, newest_per_client

        run = Run(self.client, clock=self.clock, hooks=ExportHooks())
        store = ProgressStore.for_settings(self.client.settings)
        job = FullExportJob(run, store, job_key({"import full pull": self.kept.identity,
                                                 "account": self.kept.account}))
        try:
            job.open([])
            records = newest_per_client(job.fetch(include_deleted=False, expected=None).read_records())
        except BaseException:
            job.save()
            job.close()
            raise
        job.finished()
        return records


def _listing_name(filters: dict) -> str:
    return json.dumps({k: str(v) for k, v in sorted(filters.items())}, sort_keys=True)


def _created_start_ms(filters: dict) -> float | None:
    """The listing's ``date_created_start`` as epoch ms (None: a listing of every client)."""
    since = filters.get("date_created_start")
    if since is None:
        return None
    day = datetime.fromisoformat(str(since)).replace(tzinfo=timezone.utc)
    return day.timestamp() * 1000.0


def _no_sync(db: sqlite3.Connection) -> None:
    """Kept reads are a cache of answers: ``synchronous=OFF`` keeps them safe from a killed
    process (the operating system holds the writes) without an fsync a read, which cost
    more than the read itself against a fast server. A power loss can damage the file: it
    is then left as it is and not used (nothing is kept until it is removed)."""
    db.execute("PRAGMA synchronous=OFF")
