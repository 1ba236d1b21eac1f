"""The import pipeline: read → validate → base → edits → live → plan → apply → results.

The CLI (``etl/cli/import_.py``) is a thin shell over :func:`prepare` and :func:`apply`;
a notebook can call them the same way. Nothing is sent before the file has been read
and validated; a dry run sends reads only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from . import applied, checks
from . import diff as D
from .codec import damage as DMG
from .checkpoint import Checkpoint, RowState
from .errors import BudgetExhausted, ConfigError, EtlError, Interrupted, ValidationFailed
from .reports import RowResult

PAGE = 100


class Aborted(EtlError):
    """The user declined the confirmation."""


@dataclass
class ImportOptions:
    tags: str = D.TAGS_MERGE
    blank: str = D.BLANK_KEEP
    prefer_file: bool = False
    skip_invalid: bool = False
    base: str | None = None          # export dir or export id
    timezone: str | None = None      # None: the base export's timezone, else UTC
    format: str | None = None
    encoding: str | None = None
    date_format: str | None = None
    formula_guard: bool = True

    def diff_options(self) -> D.Options:
        return D.Options(blank=self.blank, tags=self.tags, prefer_file=self.prefer_file,
                         tz=self.timezone)

    def identity_fields(self) -> dict:
        """Options that change how the file reads: with the file's bytes, the checkpoint's identity.

        The timezone is not one of them: dates are read as calendar dates whatever the
        zone, and it only shapes what is sent, which every run plans afresh.

        Merge options (--tags, --blank, --prefer) are left out on purpose: every run plans
        afresh against live, so rows already done stay done and the rest follow the new
        options (re-running with --prefer file after conflicts just works).
        """
        return {"skip_invalid": self.skip_invalid, "format": self.format,
                "encoding": self.encoding, "date_format": self.date_format,
                "formula_guard": self.formula_guard}


@dataclass
class Paths:
    """Where an import writes; by default next to the input file."""

    checkpoint: Path
    results: Path
    plan: Path
    report: Path
    rejects: Path
    written: list[Path] = field(default_factory=list)   # what this run wrote, in order (--json lists it)

    def wrote(self, path: Path) -> None:
        if path not in self.written:
            self.written.append(path)

    @classmethod
    def beside(cls, source: Path, checkpoint=None, results=None, plan=None, report=None, rejects=None):
        stem = source.parent / source.stem
        return cls(checkpoint=Path(checkpoint or f"{stem}.checkpoint.sqlite"),
                   results=Path(results or f"{stem}.results.csv"),
                   plan=Path(plan or f"{stem}.plan.csv"),
                   report=Path(report or f"{stem}.report.csv"),
                   rejects=Path(rejects or f"{stem}.rejects.csv"))


@dataclass
class Base:
    frame: pd.DataFrame | None
    export_id: str | None
    how: str                           # said to the user
    watermark: datetime | None = None
    complete: bool = False             # an unfiltered export: every client of the account is in it
    timezone: str | None = None        # the export's --timezone (its dates of birth are in it)

    @property
    def taken_at(self) -> float | None:
        """When the export started (epoch seconds): imports after it wrote what it lacks."""
        return self.watermark.timestamp() if self.watermark else None


@dataclass
class Prepared:
    source: Path
    plans: list[D.RowPlan]
    results: dict[int, RowResult]      # rows already settled: done in the checkpoint, invalid, conflicts
    base: Base
    strategy: str
    reads: int
    known_by_row: dict[int, set[int]] = field(default_factory=dict)
    n_rows: int = 0
    timezone: str = "UTC"

    @property
    def todo(self) -> list[D.RowPlan]:
        return [p for p in self.plans if p.writes and p.row not in self.results]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.plans:
            if p.row not in self.results:
                out[p.action] = out.get(p.action, 0) + 1
        for r in self.results.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out


# --------------------------------------------------------------------------- reading


def read_and_validate(source: Path, opts: ImportOptions, paths: Paths):
    """Read the file through the codec and validate it. Raises ValidationFailed (nothing sent)."""
    from .codec import read_table
    from schemas.clients import validate_table

    table = read_table(source, format=opts.format, encoding=opts.encoding, date_format=opts.date_format,
                       formula_guard=opts.formula_guard, tz=opts.timezone)
    # From here on a row's index + 2 is its spreadsheet row (blank rows are skipped by the codec).
    table.frame.index = pd.Index([int(r) - 2 for r in table.row_numbers])
    problems = validate_table(table)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    frame = table.frame
    rejected: dict[int, list[str]] = {}
    if errors:
        from .reports import write_report

        write_report(problems, paths.report)
        paths.wrote(paths.report)
        if not opts.skip_invalid:
            raise ValidationFailed(
                f"{source}: {len(errors)} validation error(s); nothing was sent. "
                f"Full report: {paths.report}. First: {_describe(errors[0])}", errors)
        bad_rows = {p.row for p in errors if p.row is not None}
        if any(p.row is None for p in errors):
            raise ValidationFailed(f"{source}: {_describe(next(p for p in errors if p.row is None))}; "
                                   "nothing was sent", errors)
        for p in errors:
            value = f" ({p.value!r})" if p.value not in (None, "") else ""
            rejected.setdefault(p.row, []).append(f"{p.column}{value}: {p.message}" if p.column else p.message)
        keep = [i for i in frame.index if int(i) + 2 not in bad_rows]
        rejects = frame.drop(index=keep)
        from .reports import write_rejects

        write_rejects(paths.rejects, rejects, rejected)
        paths.wrote(paths.rejects)
        frame = frame.loc[keep]
    return table, frame, warnings, rejected


def _describe(p) -> str:
    where = ", ".join(x for x in (f"row {p.row}" if p.row else "", f"column {p.column}" if p.column else "") if x)
    return f"{where}: {p.message}" if where else p.message


def plan_identity(source: Path, opts: ImportOptions) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(opts.identity_fields(), sort_keys=True).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- base


def find_base(source: Path, opts: ImportOptions, settings, frame: pd.DataFrame | None = None) -> Base:
    """The export this file came from: --base, the manifest beside it, else the snapshot
    its content agrees with. Never a stale stand-in: a named export whose snapshot is gone
    stops the import (exit 1) before any request. Local files only.

    ``frame`` is the file as read (for the content match and the ClientId check).
    """
    from .snapshots import SnapshotStore

    store = SnapshotStore(settings)
    if is_no_base(opts.base):
        return Base(None, None, "no base (--base none): comparing with live only (two-way); IntakeQ "
                                "edits made since the file was produced would be overwritten for the "
                                "columns it carries")
    wanted, how = named_export(source, opts.base)
    if wanted is None:
        return _base_by_content(source, store, frame)
    _refuse_without_client_id(source, frame, f"it came from export {wanted} ({how})")
    if store.exists(wanted):
        frame, meta = store.load(wanted)
        return _base(frame, wanted, f"base: export {wanted} (from {how})", meta)
    raise ConfigError(
        f"{source}: the snapshot of export {wanted} (named by {how}) is gone from the state dir "
        f"(snapshots are kept {store.keep_days:g} days, INTAKEQ_SNAPSHOT_DAYS); nothing was sent. Pass "
        "--base with the id of a newer export only if the file was edited from it, or --base none for a "
        "two-way import that writes every difference from IntakeQ (staff changes since the export in the "
        "file's columns would be overwritten)")


def _base_by_content(source: Path, store, frame: pd.DataFrame | None) -> Base:
    """A file with no manifest beside it (moved, renamed, mailed): the snapshot it agrees
    with on the most cells (ties: the older one); none agreeing well stops the import."""
    ids = _file_client_ids(frame)
    snapshots = store.list()
    if not snapshots:
        return Base(None, None, "no base: no export snapshot in this state dir; comparing with live only "
                                "(two-way); IntakeQ edits made since the file was produced would be "
                                "overwritten for the columns it carries")
    if not ids:   # only new rows: the base serves to match them with clients, the newest is best
        export_id = next((e for e, meta in snapshots if meta.get("complete")), snapshots[0][0])
        base_frame, meta = store.load(export_id)
        return _base(base_frame, export_id, f"base: export {export_id}, the account's newest snapshot "
                                            "(the file has no ClientId: only new rows)", meta)
    best = None
    for export_id, _ in snapshots:          # newest first: ">=" leaves ties to the older one
        base_frame, meta = store.load(export_id)
        score = content_agreement(frame, base_frame)
        if score is not None and (best is None or score >= best[0]):
            best = (score, export_id, base_frame, meta)
    if best is None or best[0] < MATCH_THRESHOLD:
        raise ConfigError(
            f"{source}: no manifest.json beside the file, and it agrees with no export snapshot in this state "
            "dir (it was not exported from this account, or its export's snapshot is gone); nothing was "
            "sent. Pass --base with the export folder or id it came from, or --base none for a two-way "
            "import that writes every difference from IntakeQ")
    score, export_id, base_frame, meta = best
    return _base(base_frame, export_id, f"base: export {export_id} (no manifest beside the file: the "
                                        f"snapshot it agrees with best, on {score:.0%} of its cells)", meta)


MATCH_THRESHOLD = 0.8        # share of a file's cells that must equal a snapshot's to take it as base
MATCH_SAMPLE = 2000          # rows compared per snapshot


def content_agreement(frame: pd.DataFrame, base: pd.DataFrame) -> float | None:
    """The share of the file's non-empty writable cells (on up to MATCH_SAMPLE clients both
    hold) equal to the snapshot's, compared normalised; None when they share no client."""
    from .codec import normalized_frame

    if "ClientId" not in base.columns:
        return None
    file_ids = pd.to_numeric(frame["ClientId"], errors="coerce")
    common = file_ids.isin(base["ClientId"].astype("Int64")).to_numpy()
    columns = [c for c in D.compared_columns(frame.columns) if c in base.columns]
    if not common.any() or not columns:
        return None
    mine = frame.loc[common].head(MATCH_SAMPLE)
    theirs = base.set_index(base["ClientId"].astype("int64")).reindex(mine["ClientId"].astype("int64"))
    a = normalized_frame(mine[columns].reset_index(drop=True), columns).to_numpy(dtype=object)
    b = normalized_frame(theirs[columns].reset_index(drop=True), columns).to_numpy(dtype=object)
    present = pd.notna(a) | pd.notna(b)
    return float((present & (a == b)).sum() / max(1, present.sum()))


def _file_client_ids(frame: pd.DataFrame | None) -> bool:
    return frame is not None and "ClientId" in frame.columns and bool(frame["ClientId"].notna().any())


def _refuse_without_client_id(source: Path, frame: pd.DataFrame | None, why: str) -> None:
    """A file from an export needs its ClientId column: without it every row would be new."""
    if frame is None or "ClientId" in frame.columns:
        return
    renamed = [c for c in frame.columns if re.sub(r"[^a-z]", "", str(c).lower()) in ("clientid", "id")]
    hint = f" The column {renamed[0]!r} looks like it: rename it back to ClientId." if renamed else ""
    raise ValidationFailed(f"{source}: the file has no ClientId column, but {why}: without it every row "
                           f"would be created as a new client; nothing was sent.{hint}")


def is_no_base(base: str | None) -> bool:
    return bool(base) and base.lower() == "none"


def named_export(source: Path, base: str | None) -> tuple[str | None, str]:
    """The export id a file names — ``--base`` (an export folder or id), else the manifest
    beside the file — and how it was found. Local files only."""
    if not base:
        return _manifest_export_id(Path(source).parent / "manifest.json"), "the manifest beside the file"
    candidate = Path(base)
    if not candidate.is_dir():
        return base, f"--base {base}"
    wanted = _manifest_export_id(candidate / "manifest.json")
    if wanted is None:
        raise ConfigError(f"--base {base}: no manifest.json with an export id there")
    return wanted, f"--base {base}"


def _base(frame, export_id: str, how: str, meta: dict) -> Base:
    meta = meta or {}
    return Base(frame, export_id, how, _watermark(meta), complete=bool(meta.get("complete")),
                timezone=meta.get("timezone"))


def _manifest_export_id(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("export_id")
    except (OSError, ValueError, AttributeError):
        return None


def _watermark(meta: dict) -> datetime | None:
    raw = (meta or {}).get("watermark") or (meta or {}).get("started")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- live


@dataclass
class Live:
    records: dict[int, dict]
    universe: list[dict]               # live clients known for matching new rows
    strategy: str


def fetch_live(client, edits: list[D.RowEdit], base: Base, extra_ids=()) -> Live:
    """Live data at the lowest cost, for the rows that need it.

    With a base: per-client look-ups when they cost no more than a full pull, plus one
    query for clients created since the base (to match new rows); else a full pull.
    Without a base: a full pull.
    """
    need = [e for e in edits if e.needs_live]
    ids = sorted({e.client_id for e in need if e.client_id is not None} | set(extra_ids))
    has_new = any(e.client_id is None for e in need)
    if not need and not ids:
        return Live({}, [], "no live data needed")
    # New rows are matched against every client (IntakeQ would match a create to one we do
    # not know and replace its whole profile), so a filtered base cannot serve them.
    if base.frame is not None and (base.complete or not has_new):
        full_cost = len(base.frame) // PAGE + 1
        if len(ids) <= full_cost:
            records = {}
            for cid in ids:
                found = client.get_client(cid)
                if found is not None:
                    records[int(found["ClientId"])] = found
            universe = list(records.values())
            how = f"{len(ids)} per-client look-up(s)"
            if has_new:
                since = (base.watermark or datetime.now(timezone.utc)).date() - timedelta(days=1)
                created = list(client.iter_clients(date_created_start=since))
                universe += created
                records.update({int(r["ClientId"]): r for r in created})   # full profiles too
                how += f" + clients created since {since.isoformat()}"
            return Live(records, universe, how)
    everyone = list(client.iter_clients())
    records = {int(r["ClientId"]): r for r in everyone}
    why = ("no base" if base.frame is None else "new rows, and the base export was filtered"
           if has_new and not base.complete else "many rows changed")
    return Live(records, everyone, f"full pull of all clients ({why})")


# --------------------------------------------------------------------------- prepare


def prepare(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
            checkpoint: Checkpoint | None, echo: Callable[[str], None] = print) -> Prepared:
    """Everything up to the plan: reads only (no write is sent)."""
    source = Path(source)
    table, frame, warnings, rejected = read_and_validate(source, opts, paths)
    base = find_base(source, opts, settings, table.frame)          # local files only: no request
    opts = dataclasses.replace(opts, timezone=opts.timezone or base.timezone or "UTC")
    for note in table.notes:
        echo("note: " + note)
    echo(base.how)
    # The file's cells are compared as they were read: slash dates in the file's order.
    diff_options = dataclasses.replace(opts.diff_options(), date_order=table.date_order or D.MONTH_FIRST)

    settled: dict[int, RowResult] = {}
    for row, reasons in rejected.items():
        settled[row] = RowResult(row, None, "skipped", (), "invalid: " + "; ".join(reasons))
    states = checkpoint.all() if checkpoint is not None else {}
    frame = frame.copy()
    reads_before = client.requests_sent
    _resume_creates(client, frame, states, checkpoint)
    for row, st in states.items():
        if st.final:
            settled[row] = RowResult(row, st.client_id, st.status, st.fields, st.error or "")
    planning = frame.loc[[i for i in frame.index if int(i) + 2 not in settled]]

    written = D.written_since(applied.written(settings.account_dir), base.taken_at)
    edits = D.find_edits(planning, base.frame, diff_options, written=written)
    problems = checks.edit_problems(edits)
    _refuse_errors(source, problems, paths, before="nothing was sent")      # before any request
    for line in checks.warning_lines(warnings + _without_damage(problems)):
        echo("warning: " + line)
    live = fetch_live(client, edits, base)
    plans = D.plan_rows(edits, live.records, diff_options, universe=live.universe,
                        created_before=applied.created_names(settings.account_dir), written=written)
    # Matches found in live, and damage found against live (no base): before any write.
    _refuse_errors(source, checks.same_client_problems(plans) + checks.damage_problems(plans)
                   + checks.scientific_notation_problems(plans), paths, before="nothing was written")
    for line in DMG.summary_lines([d for p in plans for d in p.damage]):
        echo(line)
    kept = sum(len(p.kept) for p in plans)
    if kept:
        echo(f"kept: {kept} cell(s) the file holds as exported, changed in IntakeQ by an earlier import; "
             "they stay as that import left them (--prefer file sets them back; see the plan file)")
    known_by_row = {p.row: _known_ids(p, live.universe, base) for p in plans if p.action == D.CREATE}
    for p in plans:
        if p.action in (D.CONFLICT, D.FAILED, D.UNCHANGED):
            settled.setdefault(p.row, RowResult(p.row, p.client_id, "conflict" if p.action == D.CONFLICT
                                                else p.action, (), p.message))
    return Prepared(source, plans, settled, base, live.strategy, client.requests_sent - reads_before,
                    known_by_row, n_rows=len(table.frame), timezone=opts.timezone)


def _refuse_errors(source: Path, problems, paths: Paths, *, before: str) -> None:
    """Stop on the checks' errors (the validation report lists them all)."""
    from .reports import write_report

    errors = checks.errors_of(problems)
    if errors:
        write_report(problems, paths.report)
        more = f" (and {len(errors) - 1} more: {paths.report})" if len(errors) > 1 else ""
        raise ValidationFailed(f"{source}: {_describe(errors[0])}{more}; {before}", errors)


def _without_damage(problems):
    """Damage is said per column with an example (``damage.summary_lines``), not per check."""
    return [p for p in problems if p.check not in checks.DAMAGE_CHECKS.values()]


def _resume_creates(client, frame: pd.DataFrame, states: dict[int, RowState], checkpoint) -> int:
    """Give rows whose create already happened their ClientId; find creates whose answer was lost."""
    from .load import find_created

    if "ClientId" not in frame.columns or not states:
        return 0
    adopted = 0
    for index in frame.index:
        row = int(index) + 2
        st = states.get(row)
        if st is None or not pd.isna(frame.at[index, "ClientId"]):
            continue
        client_id = st.client_id
        if st.create_unverified:
            first = _fold(frame.at[index, "FirstName"]) if "FirstName" in frame.columns else ""
            last = _fold(frame.at[index, "LastName"]) if "LastName" in frame.columns else ""
            client_id = find_created(client, (first, last), set(st.known_ids))
            if client_id is not None:
                checkpoint.set_client(row, client_id)
        if client_id is not None:
            frame.at[index, "ClientId"] = client_id
            adopted += 1
    return adopted


def _known_ids(plan: D.RowPlan, universe: list[dict], base: Base) -> set[int]:
    first, last = plan.name_key or ("", "")
    known = {int(r["ClientId"]) for r in universe
             if _fold(r.get("FirstName")) == first and _fold(r.get("LastName")) == last}
    if base.frame is not None and {"FirstName", "LastName"} <= set(base.frame.columns):
        f = base.frame
        same = (f["FirstName"].astype("string").str.strip().str.casefold() == first) & \
               (f["LastName"].astype("string").str.strip().str.casefold() == last)
        known |= {int(c) for c in f.loc[same.fillna(False), "ClientId"].dropna()}
    return known


def _fold(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return str(v).strip().casefold()


def estimate(prepared: Prepared, client, settings) -> dict:
    """The request estimate: reads so far, writes to send, time and days they need."""
    todo = prepared.todo
    saves = sum(1 for p in todo if p.body is not None)
    tags = sum(len(p.tag_adds) + len(p.tag_removes) for p in todo)
    writes = saves + tags
    usage = client.ledger.usage()
    remaining = usage.remaining
    return {
        "reads": prepared.reads, "saves": saves, "tag_calls": tags, "writes": writes,
        "seconds": client.estimate_seconds(writes),
        "remaining_today": remaining,
        "days": D.days_needed(writes, remaining, settings.max_per_day),
    }


# --------------------------------------------------------------------------- run


@dataclass
class RunOutcome:
    prepared: Prepared
    results: dict[int, RowResult]
    stopped_by: Exception | None = None     # BudgetExhausted, Interrupted, or the EtlError that stopped it
    applied: bool = False                   # False: dry run, or nothing to write


class Hooks:
    """How a run talks to its caller (the CLI prints; a notebook may ignore)."""

    def say(self, message: str) -> None: ...
    def planned(self, prepared: Prepared, estimate: dict) -> None: ...
    def confirm(self, estimate: dict) -> bool: return True
    def row_done(self, plan: D.RowPlan) -> None: ...
    def should_stop(self) -> bool: return False
    def progress(self, total: int): return contextlib.nullcontext()


def run_import(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
               checkpoint: Checkpoint | None, dry_run: bool = False, wait: bool = False,
               hooks: Hooks | None = None) -> RunOutcome:
    """Plan, then apply; with ``wait``, sleep whenever the daily budget runs out and go on.

    Each round plans afresh against live (rows the checkpoint holds as done are skipped),
    so after a wait of hours nothing stale is sent: a save always carries the live
    profile of that moment, and a client created before the wait is never created again.

    A stop request (Ctrl-C on the client's clock) ends the run within a second, whether
    it came while planning, applying or sleeping: the outcome of the last round that
    wrote is returned with ``stopped_by`` set (its results file is written); before any
    write it raises ``Interrupted``.
    """
    hooks = hooks or Hooks()
    last: RunOutcome | None = None          # the latest round, stopped by the budget (--wait)
    while True:
        try:
            if last is not None:
                _sleep_until(client.clock, last.stopped_by.frees_at, hooks)
            prepared = _prepare_when_budget_allows(client, settings, source, opts, paths,
                                                   checkpoint=checkpoint, wait=wait, hooks=hooks)
            outcome = _plan_and_apply(client, settings, prepared, paths, checkpoint=checkpoint,
                                      dry_run=dry_run, ask=last is None, hooks=hooks)
        except Interrupted as stop:
            if last is None:
                raise Interrupted("interrupted (Ctrl-C) before the first write: nothing was "
                                  "written; run the same command again to start") from None
            return dataclasses.replace(last, stopped_by=stop)
        if not (wait and _stopped_by_budget_that_frees(outcome)):
            return outcome
        last = outcome


def _prepare_when_budget_allows(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
                                checkpoint, wait: bool, hooks: Hooks) -> Prepared:
    """``prepare``; with ``wait``, a budget used up while planning is slept through."""
    while True:
        try:
            return prepare(client, settings, source, opts, paths, checkpoint=checkpoint, echo=hooks.say)
        except BudgetExhausted as exc:
            if not wait or exc.frees_at is None:
                raise
            _sleep_until(client.clock, exc.frees_at, hooks)


def _plan_and_apply(client, settings, prepared: Prepared, paths: Paths, *, checkpoint, dry_run: bool,
                    ask: bool, hooks: Hooks) -> RunOutcome:
    """Write the plan, then (unless a dry run or nothing to do) send it and write the results."""
    from .applied import record as record_applied
    from .load import apply_plan
    from .reports import write_plan, write_results_or_elsewhere

    write_plan(paths.plan, prepared.plans)
    paths.wrote(paths.plan)
    est = estimate(prepared, client, settings)
    hooks.planned(prepared, est)
    todo = prepared.todo
    if dry_run or not todo:
        if not dry_run:
            paths.wrote(write_results_or_elsewhere(paths, prepared.results.values(), settings.account_dir,
                                                   hooks.say))
        return RunOutcome(prepared, dict(prepared.results))
    if ask and not hooks.confirm(est):
        raise Aborted("nothing was sent")
    with hooks.progress(len(todo)) as bar:
        def row_done(plan):
            hooks.row_done(plan)
            if bar is not None:
                bar.update(1)

        outcome = apply_plan(
            client, todo, checkpoint, tz=prepared.timezone, clock=client.clock,
            should_stop=lambda: hooks.should_stop() or client.clock.stop_requested(),
            on_created=lambda plan: applied.record_created(settings.account_dir, plan.client_id,
                                                           *plan.name_key),
            on_row=row_done, known_ids=lambda plan: prepared.known_by_row.get(plan.row, set()),
            on_saved=lambda plan: record_applied(settings.account_dir, prepared.base.export_id,
                                                 plan.client_id, plan.changes))
    results = dict(prepared.results)
    results.update(outcome.results)
    for plan in todo:
        results.setdefault(plan.row, RowResult(plan.row, plan.client_id, "pending", (),
                                               "not sent yet: run the same command again"))
    paths.wrote(write_results_or_elsewhere(paths, results.values(), settings.account_dir, hooks.say))
    return RunOutcome(prepared, results, outcome.stopped_by, applied=True)


def _stopped_by_budget_that_frees(outcome: RunOutcome) -> bool:
    stop = outcome.stopped_by
    return isinstance(stop, BudgetExhausted) and stop.frees_at is not None


def _sleep_until(clock, epoch: float, hooks: Hooks) -> None:
    """Sleep through the clock: a Ctrl-C cuts it short (``Interrupted``) within a second."""
    from .errors import format_epoch

    hooks.say(f"daily budget used up; waiting until {format_epoch(epoch)} (--wait; Ctrl-C stops)")
    clock.sleep(max(1.0, epoch - clock.time() + 1.0))
