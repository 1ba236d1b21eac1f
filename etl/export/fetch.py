"""Fetching an export's clients: a full pull, or the changes since a snapshot merged into it.

Requests (the API pages ``PAGE_SIZE`` = 100 clients):

* full: ⌈N/100⌉ GET clients?includeProfile=true (one more only when N % 100 == 0);
* incremental, from the snapshot the :class:`~etl.export.mode.Mode` names and its
  watermark W: dateUpdatedStart = (W − 1 day) and dateCreatedStart = (W − 1 day) (the
  API filters by whole days; a create might not set LastUpdateDate), plus the deletedOnly
  pages. The rows are merged into the snapshot by ClientId, deleted ids dropped: the same
  content as a full export at the same moment, for ⌈U/100⌉ + 1 + deleted pages;
* ``include_deleted``: the deletedOnly pages (shared with an incremental run).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import pandas as pd

from ..api.client import PAGE_SIZE
from ..clock import api_day_before
from ..config import Settings
from ..state.snapshots import SnapshotStore, watermark_epoch
from .frames import FrameBuilder, combine_frames
from .hooks import ExportHooks
from .mode import Mode, after_fetch
from .options import ExportOptions

if TYPE_CHECKING:
    from .resume import FullExportJob, Resumed


class Run:
    """One export run's side of the API: its client, clock, hooks and request count."""

    def __init__(self, client, *, clock, hooks: ExportHooks):
        self.client = client
        self.settings: Settings = client.settings
        self.clock = clock
        self.hooks = hooks
        self.requests_at_start = getattr(client, "requests_sent", 0)
        # Heard once, with the first non-empty page of profiles (a check that needs the
        # account's custom fields, before the rest is fetched).
        self.on_first_records: Callable[[list[dict]], None] | None = None

    @property
    def requests(self) -> int:
        return getattr(self.client, "requests_sent", 0) - self.requests_at_start

    def say(self, message: str) -> None:
        self.hooks.say(message)

    def one_page(self, page: int, **query) -> list[dict]:
        """Page ``page`` of a listing, alone (one request)."""
        for records in self.client.iter_pages(first_page=page, **query):
            return records
        return []

    def pages(self, desc: str, expected_records: int | None = None,
              **query) -> Iterator[list[dict]]:
        expected_pages = None
        if expected_records is not None:
            expected_pages = expected_records // PAGE_SIZE + 1
        seen = done = 0
        with self.hooks.progress(expected_pages, desc=desc, unit="page") as bar:
            bar.update(0, remaining=expected_pages)       # the ETA before the first request
            for page in self.client.iter_pages(**query):
                if page and self.on_first_records is not None:
                    check, self.on_first_records = self.on_first_records, None
                    check(page)
                seen += len(page)
                done += 1
                remaining = max(expected_pages - done, 0) if expected_pages else None
                bar.update(1, clients=seen, remaining=remaining)
                yield page

    def fetch(self, desc: str, expected_records: int | None = None, **query) -> list[dict]:
        records: list[dict] = []
        for page in self.pages(desc, expected_records, **query):
            records.extend(page)
        return records

    def fetch_deleted(self) -> list[dict]:
        return self.fetch("deleted clients", include_profile=True, deleted_only=True)


@dataclass
class Fetched:
    """The clients of a run (every column, sorted by ClientId), how they were fetched
    (``mode``: an incremental run may have become full), the custom-field labels, and
    the deleted clients' records when asked for or fetched anyway (None otherwise)."""

    mode: Mode
    clients: pd.DataFrame
    labels: dict[str, str]
    deleted_records: list[dict] | None
    resumed: "Resumed | None" = None     # a full pull: how many runs it took (etl.export.resume)
    job: "FullExportJob | None" = None   # its kept progress, dropped once the files are written


@dataclass
class Changes:
    """What an incremental run fetched: clients updated or created since ``since``."""

    since: date
    records: dict[int, dict]       # by ClientId
    unkeyed: list[dict]            # records without a usable ClientId (kept, to be reported)
    deleted_ids: set[int]


def fetch_clients(run: Run, store: SnapshotStore, mode: Mode, opts: ExportOptions) -> Fetched:
    """The clients frame, by the incremental merge or a full pull (an incremental run whose
    merge would be wrong says why and does the full pull)."""
    deleted_records = None
    if mode.incremental:
        base, meta = store.load(mode.base_id)
        changes, deleted_records = _fetch_changes(run, meta)
        builder = FrameBuilder(opts.timezone)
        builder.add(list(changes.records.values()) + changes.unkeyed)
        changed = builder.frame()
        snapshot_labels = meta.get("custom_fields", {})
        mode = after_fetch(mode, snapshot_labels, builder.labels)
        if mode.incremental:
            merged = merge(base, changed, changes)
            run.say(f"{len(changes.records)} client(s) updated or created and "
                    f"{len(changes.deleted_ids)} deleted since {changes.since.isoformat()}")
            return Fetched(mode, merged, builder.labels or {**snapshot_labels}, deleted_records)
        run.say(mode.reason)
    newest_any = store.newest(complete_only=False)
    expected = int(newest_any[1].get("rows", 0)) if newest_any else None
    if opts.complete:
        return _fetch_resumable(run, store, mode, opts, expected, deleted_records)
    builder = FrameBuilder(opts.timezone)
    for page in run.pages("clients", expected, include_profile=True,
                          **opts.filters.api_kwargs()):
        builder.add(page)
    clients = builder.frame()
    if opts.include_deleted and deleted_records is None:
        deleted_records = run.fetch_deleted()
    return Fetched(mode, clients, builder.labels, deleted_records)


def _fetch_resumable(run: Run, store: SnapshotStore, mode: Mode, opts: ExportOptions,
                     expected: int | None, deleted_records: list[dict] | None) -> Fetched:
    """The whole account, part by part, every page kept as it arrives: a run stopped by
    the budget, a kill or Ctrl-C is continued by the next one (see etl.export.resume)."""
    from .resume import FullExportJob, ProgressStore, feed_newest, job_key, part_size

    progress = ProgressStore.for_settings(run.settings)
    try:
        job = FullExportJob(run, progress, job_key(resume_identity(run.settings)))
        days: list[str] = []
        if part_size(run.settings.max_per_day) and progress.load(job.key) is None:
            days = snapshot_created_days(store)
        job.open(days, expected)
        done = job.fetch(opts.include_deleted and deleted_records is None, expected)
    except BaseException as exc:
        exc.kept_pages = job.kept_pages() if "job" in locals() else 0
        if "job" in locals():
            job.save()              # the requests this run spent count in requests_total
        progress.close()
        raise
    # streamed from the kept pages, a chunk of frames at a time, each client's newest record
    builder = feed_newest(done.read_records, lambda: FrameBuilder(opts.timezone))
    if deleted_records is None:
        deleted_records = done.deleted_records
    return Fetched(mode, builder.frame(), builder.labels, deleted_records, resumed=done, job=job)


def resume_identity(settings: Settings) -> dict:
    """What a full export's kept progress belongs to: the account's server and the schema
    (every complete export of an account fetches the same pages, whatever --out or --format)."""
    from .manifest import schema_version
    from .mode import settings_base

    return {"base_url": settings_base(settings), "schema_version": schema_version(),
            "what": "full export of the whole account"}


def snapshot_created_days(store: SnapshotStore) -> list[str]:
    """The UTC creation day of each client of the newest complete snapshot (to plan parts)."""
    newest = store.newest(complete_only=True)
    if newest is None or not store.exists(newest[0]):
        return []
    frame, _ = store.load(newest[0])
    if "DateCreated" not in frame.columns:
        return []
    created = pd.to_datetime(frame["DateCreated"], utc=True, errors="coerce").dropna()
    return [d.date().isoformat() for d in created]


def _fetch_changes(run: Run, meta: dict) -> tuple[Changes, list[dict]]:
    """Updated + created since (snapshot watermark − 1 day), and the deleted clients."""
    since = api_day_before(watermark_epoch(meta))
    records: dict[int, dict] = {}
    unkeyed: list[dict] = []
    for desc, query in (("updated clients", {"date_updated_start": since}),
                        ("created clients", {"date_created_start": since})):
        for page in run.pages(desc, None, include_profile=True, **query):
            for record in page:
                try:
                    key = int(record["ClientId"])
                except (KeyError, TypeError, ValueError):
                    unkeyed.append(record)
                    continue
                records.setdefault(key, record)
    deleted_records = run.fetch_deleted()
    changes = Changes(since=since, records=records, unkeyed=unkeyed,
                      deleted_ids=set(client_ids(deleted_records)))
    return changes, deleted_records


def merge(base: pd.DataFrame, changed: pd.DataFrame, changes: Changes) -> pd.DataFrame:
    """The snapshot with changed clients replaced and deleted ones dropped."""
    parts = []
    if len(base):
        keep = ~base["ClientId"].isin(set(changes.records) | changes.deleted_ids)
        parts.append(base[keep])
    if len(changed):
        parts.append(changed[~changed["ClientId"].isin(changes.deleted_ids)])
    if not parts:
        parts = [base]
    return combine_frames(parts)


def client_ids(records: Iterable[dict]) -> list[int]:
    out = []
    for record in records:
        try:
            out.append(int(record.get("ClientId", record.get("ClientNumber"))))
        except (TypeError, ValueError):
            continue
    return out
