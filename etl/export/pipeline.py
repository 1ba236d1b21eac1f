"""An export, start to end: check the options and --out, choose the mode, fetch, check,
fetch diagnoses, then write every file (or none). :func:`export_clients` is the entry
point; the steps live beside it (options, mode, fetch, diagnoses, write, manifest).

When the budget runs out while fetching clients, nothing is written
(:class:`~etl.errors.BudgetExhausted`, exit 75); when it runs out while fetching
diagnoses, the clients file and the diagnoses that are complete are written and
:class:`~etl.errors.ExportIncomplete` (a ``BudgetExhausted``) carries the result.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..clock import SystemClock
from ..codec.records import custom_field_labels
from ..config import Settings
from ..errors import BudgetExhausted, ConfigError, ExportIncomplete
from ..state.files import ensure_private_dir
from ..state.lock import export_lock
from ..state.snapshots import SnapshotStore
from .diagnoses import Diagnoses, DiagnosesJob
from .fetch import Fetched, Run, fetch_clients
from .frames import deleted_frame
from .hooks import ExportHooks
from .manifest import build_manifest, iso_utc, new_export_id, schema_version
from .mode import choose_mode, settings_base
from .options import ExportOptions, check_columns, check_custom_filters, new_custom_columns
from .write import ExportFiles, prepare_out_dir, remove_empty_folders, tables_for, write_export

COMPLETE = "complete"
DIAGNOSES_INCOMPLETE = "diagnoses_incomplete"


@dataclass
class ExportResult:
    """What an export produced. ``manifest`` is the manifest.json content."""

    clients: pd.DataFrame
    deleted: pd.DataFrame | None
    diagnoses: pd.DataFrame | None
    manifest: dict
    out: Path | None = None
    files: list[Path] = field(default_factory=list)
    all_columns: pd.DataFrame | None = None   # every column (what the snapshot holds)

    @property
    def export_id(self) -> str:
        return self.manifest["export_id"]

    @property
    def mode(self) -> str:
        return self.manifest["mode"]

    @property
    def requests(self) -> int:
        return self.manifest["requests"]


def export_clients(settings_or_client, options: ExportOptions | None = None, *,
                   hooks: ExportHooks | None = None, clock=None, **option_values) -> ExportResult:
    """Export the account's clients (and, if asked, deleted clients and diagnoses).

    ``settings_or_client``: a :class:`~etl.config.Settings` (a client is made and closed
    here) or an :class:`~etl.api.IntakeQClient`. The options are an
    :class:`ExportOptions` or its fields as keywords (``out=``, ``format=``,
    ``incremental=``, ...). ``hooks``: an :class:`ExportHooks` that hears one-line,
    data-free messages (mode and why, what was written) and progress; none: silent.

    Raises :class:`~etl.errors.BudgetExhausted` when the daily budget runs out
    (:class:`~etl.errors.ExportIncomplete`, with ``.result``, if diagnoses were cut short
    and the rest was written), and other :class:`~etl.errors.EtlError` for what a user
    can fix.
    """
    if options is None:
        options = ExportOptions(**option_values)
    elif option_values:
        raise TypeError("pass the options either as an ExportOptions or as keywords, not both")
    hooks = hooks or ExportHooks()
    made: list[Path] = []
    if options.out is not None:     # before any request: a bad --out costs none
        made = [p for p in (options.out, *options.out.parents) if not p.exists()]
        prepare_out_dir(options.out, options.format, hooks.say)
    try:
        return _export_with_client(settings_or_client, options, hooks, clock)
    except BaseException:
        remove_empty_folders(made)      # a run that wrote nothing leaves no empty --out behind
        raise


def _export_with_client(settings_or_client, options: ExportOptions, hooks: ExportHooks, clock) -> ExportResult:
    own_client = isinstance(settings_or_client, Settings)
    if own_client:
        from ..api import IntakeQClient

        clock = clock or SystemClock()
        client = IntakeQClient(settings_or_client, clock=clock)
    else:
        client = settings_or_client
        clock = clock or getattr(client, "clock", None) or SystemClock()
    try:
        with contextlib.ExitStack() as held:        # the budget reservation, released at the end
            # One export of an account at a time: two would share the kept pages of a full
            # export, and the first to finish would drop what the other goes on with.
            account_dir = getattr(getattr(client, "settings", None), "account_dir", None)
            if account_dir is not None:
                ensure_private_dir(account_dir)
                held.enter_context(export_lock(account_dir, clock=clock,
                                               wait=getattr(client, "wait_for_others", True)))
            return _export(Run(client, clock=clock, hooks=hooks), options, held)
    finally:
        if own_client:
            client.close()


def hold_budget(run: Run, store: SnapshotStore, mode, opts: ExportOptions):
    """Reserve the requests this export expects to send, before the first one: other runs
    of the account then wait for it instead of spending the day halfway beside it."""
    hold = getattr(run.client, "hold_budget", None)
    if hold is None:            # a stand-in client without a ledger
        return contextlib.nullcontext()
    return hold(requests_estimate(store, mode, opts), what="export",
                keeps_progress=keeps_progress(mode, opts))


def keeps_progress(mode, opts: ExportOptions) -> bool:
    """Only a full export of the whole account keeps its pages across runs (``resume``): one
    that today's budget cannot finish uses what is left. A filtered or incremental one would
    spend the day and write nothing, so it stops before its first request instead."""
    return bool(opts.complete) and not mode.incremental


def requests_estimate(store: SnapshotStore, mode, opts: ExportOptions) -> int | None:
    """Requests this export should need: ≈ 3 for an incremental run, else the pages of the
    newest snapshot's row count (+ the deleted clients' page); + one per client with
    diagnoses. None (the rest of the day's budget) when there is nothing to estimate from."""
    from ..api.client import PAGE_SIZE

    newest = store.newest(complete_only=False)
    rows = int(newest[1].get("rows", 0) or 0) if newest else None
    if mode.incremental:
        estimate = 3
    elif rows is None:
        return None
    else:
        estimate = rows // PAGE_SIZE + 1 + (1 if opts.include_deleted else 0)
    if opts.include_diagnoses:
        if rows is None:
            return None
        estimate += rows
    return estimate


def budget_message(exc: BudgetExhausted, what_now: str) -> str:
    """The budget's own message (with "retry tomorrow" when it cannot say when), then
    what this run did about it."""
    message = exc.message
    if exc.frees_at is None:
        message += " (retry tomorrow)"
    return f"{message}; {what_now}"


@dataclass
class Collected:
    """What a run fetched, before anything is written."""

    export_id: str
    started: float                      # also the watermark of the snapshot
    fetched: Fetched
    warnings: list[dict]
    deleted: pd.DataFrame | None = None
    diagnoses: Diagnoses | None = None
    budget_ran_out: bool = False        # during diagnoses: the rest is written

    @property
    def status(self) -> str:
        return DIAGNOSES_INCOMPLETE if self.budget_ran_out else COMPLETE


def _export(run: Run, opts: ExportOptions, held: contextlib.ExitStack) -> ExportResult:
    started = run.clock.time()
    store = SnapshotStore(run.settings)
    custom_ids = snapshot_custom_ids(store)
    check_columns(opts.columns, custom_ids)                      # before any request
    check_custom_filters(opts.filters.custom, custom_ids)
    if new_custom_columns(opts.columns, custom_ids):             # a field added since: after page 1
        run.on_first_records = lambda records: check_columns(
            opts.columns, custom_field_labels(records), all_custom_known=True,
            after=f"nothing was written ({run.requests} request(s) sent)")
    mode = choose_mode(store, opts, run.settings, now=started)
    run.say(mode.reason)
    held.enter_context(hold_budget(run, store, mode, opts))      # before the first request
    try:
        fetched = fetch_clients(run, store, mode, opts)
    except BudgetExhausted as exc:
        where = f"nothing was written to {opts.out}" if opts.out else "nothing was written"
        kept = getattr(exc, "kept_pages", 0)
        if kept:
            where += (f"; the {kept} page(s) fetched so far are kept in the state dir, the "
                      "next run fetches only the rest")
        raise BudgetExhausted(budget_message(exc, f"{where}; run the same command again then"),
                              used=exc.used, limit=exc.limit, frees_at=exc.frees_at) from exc
    try:
        return _after_fetch(run, opts, store, started, fetched)
    finally:
        if fetched.job is not None and not fetched.job.store_closed:
            fetched.job.close()           # not finished: the kept pages stay for the next run


def snapshot_custom_ids(store: SnapshotStore) -> list[str]:
    """The custom fields of the newest snapshot (what --columns is checked against)."""
    newest = store.newest(complete_only=False)
    return list((newest[1].get("custom_fields") or {}) if newest else [])


def _after_fetch(run: Run, opts: ExportOptions, store: SnapshotStore, started: float,
                 fetched: Fetched) -> ExportResult:
    frame = fetched.clients
    if opts.columns:
        missing = [c for c in opts.columns if c not in frame.columns]
        if missing:
            raise ConfigError(
                "--columns names columns this account does not have: " + ", ".join(missing)
                + ". Known columns: " + ", ".join(map(str, frame.columns)))
    got = Collected(export_id=new_export_id(started), started=started, fetched=fetched,
                    warnings=schema_warnings(frame))
    if got.warnings:
        run.say(f"{len(got.warnings)} schema problem(s) in the API's data; the clients are "
                "exported anyway and listed in manifest.json by ClientId")
    if opts.include_deleted:
        got.deleted = deleted_frame(fetched.deleted_records or [], frame, opts.timezone)
    if not opts.include_diagnoses:
        return _finish(run, opts, store, got)

    job = DiagnosesJob(run, frame)
    try:
        got.diagnoses = job.fetch(complete=opts.complete)
    except BudgetExhausted as exc:
        got.diagnoses, got.budget_ran_out = job.result(), True
        result = _finish(run, opts, store, got)
        message = budget_message(
            exc, f"diagnoses of {got.diagnoses.remaining} client(s) still to fetch; the clients "
            "file and the diagnoses fetched so far were written; run the same command again "
            "then to continue")
        raise ExportIncomplete(message, result=result, used=exc.used, limit=exc.limit,
                               frees_at=exc.frees_at) from exc
    return _finish(run, opts, store, got)


def _finish(run: Run, opts: ExportOptions, store: SnapshotStore, got: Collected) -> ExportResult:
    """Store the snapshot and write the files (or, without --out, only the snapshot)."""
    frame, mode, diagnoses = got.fetched.clients, got.fetched.mode, got.diagnoses
    labels = got.fetched.labels or {}
    rows = {"clients": int(len(frame))}
    if got.deleted is not None:
        rows["deleted_clients"] = int(len(got.deleted))
    if diagnoses is not None:
        rows["diagnoses"] = int(len(diagnoses.frame))
    manifest_fields = dict(
        export_id=got.export_id, started=got.started, base_url=run.settings.base_url,
        mode=mode.name, mode_reason=mode.reason, based_on=mode.base_id, status=got.status,
        rows=rows, custom_fields=labels, warnings=got.warnings, watermark=got.started,
        filters=opts.filters.for_manifest(), columns=opts.columns, format=opts.format,
        timezone_name=opts.timezone, formula_guard=opts.formula_guard,
        diagnoses=diagnoses.info if diagnoses is not None else None,
        snapshot=got.export_id if opts.save_snapshot else None,
    )
    snapshot_meta = {
        "watermark": iso_utc(got.started), "watermark_epoch": got.started,
        "complete": opts.complete, "timezone": opts.timezone, "custom_fields": labels,
        "base_url": settings_base(run.settings), "mode": mode.name,
        "schema_version": schema_version(), "filters": opts.filters.for_manifest(),
    }

    def finish(files: list[dict]) -> dict:
        if opts.save_snapshot:
            store.save(got.export_id, frame,
                       {**snapshot_meta, "finished": iso_utc(run.clock.time())})
        manifest = build_manifest(finished=run.clock.time(), requests=run.requests, files=files,
                                  **manifest_fields)
        manifest.update(fetched_over(got.fetched, run))
        return manifest

    diagnoses_frame = diagnoses.frame if diagnoses is not None else None
    written: list[Path] = []
    if opts.out is not None:
        files = ExportFiles(out_dir=opts.out, format=opts.format,
                            tables=tables_for(frame, got.deleted, diagnoses_frame, opts.columns),
                            export_id=got.export_id, formula_guard=opts.formula_guard)
        done = write_export(files, finish)
        manifest, written = done.manifest, done.paths
        run.say(f"wrote {', '.join(p.name for p in written)} to {opts.out}")
    else:
        manifest = finish([])
    if got.fetched.job is not None:
        got.fetched.job.finished()        # the files are in place: the kept pages are done
    return ExportResult(clients=frame[opts.columns] if opts.columns else frame,
                        deleted=got.deleted, diagnoses=diagnoses_frame, manifest=manifest,
                        out=opts.out, files=written, all_columns=frame)


def fetched_over(fetched: Fetched, run: Run) -> dict:
    """The manifest's account of how the clients were fetched: over how many runs and days,
    in how many parts, with how many requests in all (``requests`` is this run's)."""
    resumed = fetched.resumed
    if resumed is None:
        return {"fetched_runs": 1, "fetched_days": 1, "fetched_parts": None,
                "requests_total": int(run.requests), "fetch_started": None, "caught_up": None}
    from .resume import day_of

    days = (day_of(run.clock.time()) - day_of(resumed.started)).days + 1
    return {"fetched_runs": resumed.runs, "fetched_days": days, "fetched_parts": resumed.parts,
            "requests_total": int(resumed.requests_before + run.requests),
            "fetch_started": iso_utc(resumed.started), "caught_up": resumed.caught_up}


def schema_warnings(frame: pd.DataFrame) -> list[dict]:
    """Schema problems of the API's data, by ClientId and check, without values."""
    from etl.schemas.clients import validate_clients

    problems = validate_clients(frame)
    ids = frame["ClientId"] if "ClientId" in frame.columns else None
    out = []
    for problem in problems:
        client_id = None
        row = getattr(problem, "row", None)
        if row is not None and ids is not None:
            index = int(row) - 2  # spreadsheet row, header = 1
            if 0 <= index < len(ids) and not pd.isna(ids.iloc[index]):
                client_id = int(ids.iloc[index])
        out.append({
            "client_id": client_id,
            "column": getattr(problem, "column", None),
            "check": getattr(problem, "check", None),
            "severity": getattr(problem, "severity", "error"),
        })
    return out
