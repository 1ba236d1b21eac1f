"""A full export that spans runs and days: parts that do not shift, pages kept as they arrive.

Why: a full export needs ⌈N/100⌉ requests, and the API allows 500 a day. A run stopped by
the budget (exit 75), a kill or Ctrl-C must not throw away the pages it fetched, and the
result must still equal the account as it is at the end, although clients are created,
edited and deleted between runs (``page=k`` is an offset: it shifts).

How it stays exact
------------------
* **Parts that do not shift.** The account is split into ranges of creation days
  (``dateCreatedStart``/``dateCreatedEnd``, whole UTC days), planned from the newest snapshot
  so that each part fits a day's budget; without a snapshot (or without a daily limit) the
  whole account is one part. The last part has no end: it holds every later creation.
  Only deletions (and, in the open part, creations) change a closed range's members.
* **Every page is kept as it arrives** (SQLite, 0600, in the account's state dir, keyed by
  the export's options), so a stop (the budget, a kill, Ctrl-C) loses at most the page in
  flight; a power loss, at most the last pages committed before it.
* **A part cut short resumes at its next page.** When today's budget covers the catch-up
  and the rest, the run catches up first: if no client of the part was deleted, created or
  renamed since (the listing is sorted by name, so an edit that keeps the name moves
  nobody), page k starts where page k−1 ended and no check is needed. Otherwise it first
  fetches again the last page it kept (page k−1). If the first client of that page is one it
  had and unchanged since (same LastUpdateDate), every unchanged client before it was fetched
  already (an unchanged client keeps its place relative to another unchanged one), so paging
  on from page k misses nobody; else it steps back a page until that holds (page 1 always
  does). Clients that changed are what the catch-up is for.
* **The catch-up** (only when the export took more than one run): clients updated since the
  day before the first part was fetched (``dateUpdatedStart``), clients created since the
  day before the open part was fetched (``dateCreatedStart``; skipped when that part was
  fetched whole in this run) and the deleted clients (``deletedOnly``): the newest record of
  each client wins, deleted ones are dropped — what ``--incremental`` does with a snapshot.
* The final files are written once, when the last part is in; then the progress is removed.
  Progress older than ``MAX_AGE_DAYS`` is dropped (IntakeQ forgets deleted clients after 10
  days: the catch-up could no longer see them).

What it costs
-------------
⌈n/100⌉ per part (one more when n is a multiple of 100), one check page per part resumed
across runs when a client of it changed (none for a killed run re-run at once), and 2–3
catch-up requests (plus a page per 100 changed clients) per run that continues: at most
⌈N/100⌉ + 3 × runs + 3 with parts sized to a day's budget.

    <account_dir>/export-progress.sqlite
      jobs(key, started, runs, requests, parts JSON)
      pages(seq, key, part, page, fetched_at, records JSON)   a page fetched again is added
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..api.client import PAGE_SIZE
from ..clock import DAY, api_day_before
from ..state.sqlite import open_private_db

FILENAME = "export-progress.sqlite"
MAX_AGE_DAYS = 9
MIN_PART_PAGES = 20          # parts are never planned smaller (each costs up to one extra page)
PART_SLACK = 10              # pages of a day's budget left for the catch-up and checks
CATCH_UP_REQUESTS = 3        # updated, created and deleted clients, a page each when few

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    started REAL NOT NULL,
    runs INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    parts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    part INTEGER NOT NULL,
    page INTEGER NOT NULL,
    fetched_at REAL NOT NULL,
    records TEXT NOT NULL
);
"""


@dataclass
class Part:
    """Clients created on days ``lo``..``hi`` (inclusive, UTC; None: unbounded)."""

    lo: str | None
    hi: str | None
    pages: int = 0                  # pages kept, 1..pages
    done: bool = False
    first_fetch: float | None = None
    done_run: int | None = None     # the run that fetched its last page
    first_run: int | None = None    # the run that fetched its first page

    def query(self) -> dict:
        return {"date_created_start": self.lo, "date_created_end": self.hi}


@dataclass
class Job:
    key: str
    started: float
    runs: int
    requests: int
    parts: list[Part] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return all(p.done for p in self.parts)


B = TypeVar("B")


def job_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ProgressStore:
    """The pages of unfinished full exports of one account."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        # WAL, synchronous=NORMAL: a page's commit waits for no fsync, and survives a killed
        # process all the same (etl.state.sqlite); one run writes it at a time.
        self._conn = open_private_db(self.path, wal=True, schema=_SCHEMA)

    @classmethod
    def for_settings(cls, settings) -> "ProgressStore":
        return cls(Path(settings.account_dir) / FILENAME)

    def close(self) -> None:
        self._conn.close()

    def load(self, key: str) -> Job | None:
        row = self._conn.execute("SELECT started, runs, requests, parts FROM jobs WHERE key = ?",
                                 (key,)).fetchone()
        if row is None:
            return None
        parts = [Part(**p) for p in json.loads(row[3])]
        return Job(key, float(row[0]), int(row[1]), int(row[2]), parts)

    def save_job(self, job: Job) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO jobs (key, started, runs, requests, parts) VALUES (?, ?, ?, ?, ?)",
            (job.key, job.started, job.runs, job.requests,
             json.dumps([p.__dict__ for p in job.parts])))
        self._conn.commit()

    def save_page(self, job: Job, part: int, page: int, records: list[dict], now: float) -> None:
        """One page and the job's new state, in one transaction (a kill keeps both or neither).
        A page fetched again is added, never replaces the earlier copy: after a shift the two
        hold different clients."""
        self._conn.execute(
            "INSERT INTO pages (key, part, page, fetched_at, records) VALUES (?, ?, ?, ?, ?)",
            (job.key, part, page, now, json.dumps(records, ensure_ascii=False, default=str)))
        self.save_job(job)

    def records(self, key: str) -> Iterable[tuple[float, dict]]:
        """Every kept record with its fetch time, oldest first."""
        cur = self._conn.execute("SELECT fetched_at, records FROM pages WHERE key = ? "
                                 "ORDER BY seq", (key,))
        for fetched_at, records in cur:
            for record in json.loads(records):
                yield float(fetched_at), record

    def part_ids(self, key: str, part: int) -> dict[int, object]:
        """ClientId → LastUpdateDate of the records kept for one part."""
        return self._part_by_id(key, part, lambda record: record.get("LastUpdateDate"))

    def part_names(self, key: str, part: int) -> dict[int, tuple]:
        """ClientId → the name the listing sorts by, as kept for one part."""
        return self._part_by_id(key, part, _sort_name)

    def _part_by_id(self, key: str, part: int, value) -> dict[int, object]:
        """ClientId → ``value(record)`` of the newest record kept for one part."""
        out = {}
        for (records,) in self._conn.execute(
                "SELECT records FROM pages WHERE key = ? AND part = ? ORDER BY seq", (key, part)):
            for record in json.loads(records):
                cid = _client_id(record)
                if cid is not None:
                    out[cid] = value(record)
        return out

    def drop(self, key: str) -> None:
        self._conn.execute("DELETE FROM pages WHERE key = ?", (key,))
        self._conn.execute("DELETE FROM jobs WHERE key = ?", (key,))
        self._conn.commit()


# -- planning ------------------------------------------------------------------------------

def plan_parts(created_days: list[str], part_clients: int | None) -> list[Part]:
    """Ranges of creation days holding about ``part_clients`` clients each (by the days of
    the newest snapshot's clients); one unbounded part without a size or a snapshot."""
    if not part_clients or not created_days:
        return [Part(None, None)]
    counts: dict[str, int] = {}
    for day in created_days:
        counts[day] = counts.get(day, 0) + 1
    parts: list[Part] = []
    lo: str | None = None
    size = 0
    for day in sorted(counts):
        if size and size + counts[day] > part_clients:
            hi = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
            parts.append(Part(lo, hi))
            lo, size = day, 0
        size += counts[day]
    parts.append(Part(lo, None))          # the open part: every later creation too
    return parts


def part_size(max_per_day: int | None) -> int | None:
    """Clients a part is planned to hold: what a day's budget fetches, less some slack."""
    if not max_per_day:
        return None
    return max(MIN_PART_PAGES, int(max_per_day) - PART_SLACK) * PAGE_SIZE - 1


def day_of(epoch: float) -> date:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).date()


def feed_newest(read: Callable[[], Iterable[dict]], new_builder: Callable[[], B]) -> B:
    """A builder (``new_builder()``, with ``add(records)``) fed the newest record of each
    client that ``read()`` yields (the last one), and every record without a ClientId, as
    a stream: what :func:`newest_per_client` returns, without holding the records.

    Usually no client repeats: one pass, holding only the ids seen. When one does (a catch-up
    after a resumed run, a client that moved across pages), the builder is started again
    and ``read()`` is read twice more: once for each client's last position, once to feed
    only those (a superseded copy would add its custom fields and labels to the export).
    """
    repeated: list[bool] = []

    def until_repeated(records):
        seen: set[int] = set()
        for record in records:
            cid = _client_id(record)
            if cid is not None:
                if cid in seen:
                    repeated.append(True)
                    return
                seen.add(cid)
            yield record

    builder = new_builder()
    builder.add(until_repeated(read()))
    if not repeated:
        return builder
    last = {cid: i for i, record in enumerate(read()) if (cid := _client_id(record)) is not None}
    builder = new_builder()
    builder.add(record for i, record in enumerate(read()) if last.get(_client_id(record), i) == i)
    return builder


def newest_per_client(records: Iterable[dict]) -> list[dict]:
    """The last record of each ClientId (in first-seen order), then those without one."""
    newest: dict[int, dict] = {}
    unkeyed = []
    for record in records:
        cid = _client_id(record)
        if cid is None:
            unkeyed.append(record)
        else:
            newest[cid] = record
    return list(newest.values()) + unkeyed


def _client_id(record: dict) -> int | None:
    try:
        return int(record.get("ClientId", record.get("ClientNumber")))
    except (TypeError, ValueError):
        return None


def _sort_name(record: dict) -> tuple:
    return tuple(record.get(k) for k in ("Name", "FirstName", "LastName"))


def _in_part(record: dict, part: Part) -> bool:
    """Whether the client was created within the part's days (True when unsure)."""
    try:
        day = day_of(float(record.get("DateCreated")) / 1000).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return True
    return (part.lo is None or day >= part.lo) and (part.hi is None or day <= part.hi)


# -- the job -------------------------------------------------------------------------------

@dataclass
class Resumed:
    """What the job hands the export: the records, and how they were fetched."""

    read_records: Callable[[], Iterator[dict]]   # each call reads the kept pages afresh: before finished()
    deleted_records: list[dict] | None
    runs: int
    requests_before: int            # sent by the earlier runs of this export
    started: float
    parts: int
    caught_up: dict | None


class FullExportJob:
    """Fetch the whole account part by part, keeping every page; see the module doc."""

    def __init__(self, run, store: ProgressStore, key: str):
        self.run = run
        self.store = store
        self.key = key
        self.job: Job | None = None
        self.requests_before = 0
        self.store_closed = False

    def open(self, created_days: list[str], expected: int | None = None) -> Job:
        """The unfinished job of these options, or a new one; counts this run."""
        now = self.run.clock.time()
        job = self.store.load(self.key)
        if job is not None and now - job.started > MAX_AGE_DAYS * DAY:
            self.run.say(f"the unfinished full export is more than {MAX_AGE_DAYS} days old "
                         "(deleted clients may have expired from the API): starting again")
            self.store.drop(self.key)
            job = None
        if job is not None and self._cheaper_to_start_over(job, expected):
            self.run.say(f"the unfinished full export kept {sum(p.pages for p in job.parts)} page(s): "
                         "fetching them again costs no more than catching up; starting again")
            self.store.drop(self.key)
            job = None
        if job is None:
            job = Job(self.key, now, 0, 0, plan_parts(created_days,
                                                      part_size(self.run.settings.max_per_day)))
        else:
            kept = sum(p.pages for p in job.parts)
            left = sum(1 for p in job.parts if not p.done)
            self.run.say(f"continuing the full export started {_ago(now - job.started)}: "
                         f"{kept} page(s) kept, {left} of {len(job.parts)} part(s) to fetch")
        job.runs += 1
        self.requests_before = job.requests
        self.job = job
        self.store.save_job(job)
        return job

    def _cheaper_to_start_over(self, job: Job, expected: int | None) -> bool:
        """Few pages kept (no more than the catch-up would cost) and today's budget covers
        the whole export: fetching it afresh is cheaper and needs no catch-up."""
        kept = sum(p.pages for p in job.parts)
        if kept > CATCH_UP_REQUESTS:
            return False
        remaining = self._remaining()
        if remaining is None:
            return True
        return expected is not None and remaining >= expected // PAGE_SIZE + 1

    def _remaining(self) -> int | None:
        """Today's remaining budget (None: no daily limit, or no ledger)."""
        ledger = getattr(self.run.client, "ledger", None)
        return ledger.usage().remaining if ledger is not None else None

    def _count(self) -> None:
        self.job.requests = self.requests_before + self.run.requests

    def fetch(self, include_deleted: bool, expected: int | None) -> Resumed:
        job = self.job
        early = self._catch_up_first(expected)
        for index, part in enumerate(job.parts):
            if not part.done:
                self._fetch_part(index, part, expected if len(job.parts) == 1 else None, early)
        caught_up = None
        deleted_records = None
        changed: list[dict] = []
        if early is not None:
            caught_up, _, deleted_records = early        # its records are kept as pages
        elif job.runs > 1:
            caught_up, changed, deleted_records = self._catch_up()
        if include_deleted and deleted_records is None:
            deleted_records = self.run.fetch_deleted()
        self.save()
        gone = deleted_records if job.runs > 1 else None
        return Resumed(read_records=lambda: self._records(changed, gone),
                       deleted_records=deleted_records, runs=job.runs,
                       requests_before=self.requests_before, started=job.started,
                       parts=len(job.parts), caught_up=caught_up)

    def save(self) -> None:
        """The job's state and its request count, also when a run stops halfway."""
        if self.job is not None and not self.store_closed:
            self._count()
            self.store.save_job(self.job)

    def _catch_up_first(self, expected: int | None):
        """A continued run with a part cut short catches up before paging on, when today's
        budget covers the catch-up and the rest: then a part nobody changed needs no check
        page. The changed records are kept as pages (part -1), older than what follows."""
        job = self.job
        cut_short = [p for p in job.parts if p.pages and not p.done]
        if job.runs < 2 or not cut_short or not self._budget_covers(expected):
            return None
        info, changed, deleted = self._catch_up()
        if changed:
            self.store.save_page(job, -1, 0, changed, self.run.clock.time())
        return info, changed, deleted

    def _budget_covers(self, expected: int | None) -> bool:
        remaining = self._remaining()
        if remaining is None:
            return True
        if expected is None or len(self.job.parts) != 1:
            return False
        left = expected // PAGE_SIZE + 1 - self.job.parts[0].pages
        return remaining >= left + CATCH_UP_REQUESTS + 1      # and a check page

    def _fetch_part(self, index: int, part: Part, expected: int | None, early) -> None:
        run, job = self.run, self.job
        page = part.pages + 1
        if part.pages and part.first_run != job.runs and (
                early is None or self._may_have_shifted(index, part, early[1], early[2])):
            page = self._check_resume(index, part)
        desc = "clients" if len(job.parts) == 1 else f"clients, part {index + 1} of {len(job.parts)}"
        for records in run.pages(desc, expected, include_profile=True, first_page=page,
                                 **part.query()):
            now = run.clock.time()
            if part.first_fetch is None:
                part.first_fetch, part.first_run = now, job.runs
            part.pages = max(part.pages, page)
            if len(records) < PAGE_SIZE:
                part.done, part.done_run = True, job.runs
            self._count()
            self.store.save_page(job, index, page, records, now)
            page += 1

    def _may_have_shifted(self, index: int, part: Part, changed: list[dict],
                          deleted: list[dict]) -> bool:
        """Whether a client of the part was deleted, created or renamed since its pages were
        kept (what can move a client from one page to another)."""
        kept = self.store.part_names(self.key, index)
        if any(_client_id(r) in kept for r in deleted):
            return True
        for record in changed:
            if _in_part(record, part):
                cid = _client_id(record)
                if cid not in kept or kept[cid] != _sort_name(record):
                    return True
        return False

    def _check_resume(self, index: int, part: Part) -> int:
        """Fetch kept pages again, from the last one back, until the first client of one
        is a kept and unchanged client: paging on after it then misses nobody. Returns the
        page to continue at."""
        known = self.store.part_ids(self.key, index)
        page = part.pages
        while page >= 1:
            records = self.run.one_page(page, include_profile=True, **part.query())
            now = self.run.clock.time()
            self._count()
            self.store.save_page(self.job, index, page, records, now)
            if not records:         # the part shrank below this page: go back
                page -= 1
                continue
            first = records[0]
            cid = _client_id(first)
            if cid in known and known[cid] == first.get("LastUpdateDate"):
                if len(records) < PAGE_SIZE:
                    part.done, part.done_run = True, self.job.runs
                    part.pages = page
                    self.store.save_job(self.job)
                return page + 1
            page -= 1
        return 1

    def _catch_up(self) -> tuple[dict, list[dict], list[dict]]:
        """What changed since each part was fetched: updated, created, deleted."""
        job = self.job
        fetched = [p.first_fetch for p in job.parts if p.first_fetch is not None]
        updated_since = api_day_before(min(fetched))
        queries = [("updated clients", {"date_updated_start": updated_since})]
        open_part = job.parts[-1]
        created_since = None
        if not (open_part.first_run == job.runs and open_part.done_run == job.runs):
            created_since = api_day_before(open_part.first_fetch or job.started)
            queries.append(("created clients", {"date_created_start": created_since}))
        changed: list[dict] = []
        for desc, query in queries:
            changed.extend(self.run.fetch(desc, None, include_profile=True, **query))
        deleted = self.run.fetch_deleted()
        info = {"updated_since": updated_since.isoformat(),
                "created_since": created_since.isoformat() if created_since else None,
                "changed": len({_client_id(r) for r in changed}), "deleted": len(deleted)}
        self.run.say(f"caught up: {info['changed']} client(s) updated or created and "
                     f"{info['deleted']} deleted since the parts were fetched")
        return info, changed, deleted

    def _records(self, changed: list[dict], deleted: list[dict] | None) -> Iterator[dict]:
        """The kept pages' records, then the catch-up's, oldest first, deleted clients left out,
        read a page at a time (a whole account's records as dicts were most of an export's
        peak memory). A client listed twice comes twice; the newest is the last
        (:func:`feed_newest`)."""
        gone = {_client_id(r) for r in deleted or []} - {None}
        for _, record in self.store.records(self.key):
            if _client_id(record) not in gone:
                yield record
        for record in changed:
            cid = _client_id(record)
            if cid is not None and cid not in gone:
                yield record

    def finished(self) -> None:
        """The files are written: the progress is no longer needed."""
        self.store.drop(self.key)
        self.close()

    def close(self) -> None:
        """Stopped before the files were written: the progress stays for the next run."""
        if not self.store_closed:
            self.store.close()
            self.store_closed = True

    def kept_pages(self) -> int:
        return sum(p.pages for p in self.job.parts) if self.job else 0


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / DAY:.1f} days ago"
