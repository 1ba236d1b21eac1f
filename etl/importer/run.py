"""The import pipeline: read → validate → base → edits → live → plan → apply → results.

The CLI (``etl/cli/import_.py``) is a thin shell over :func:`run_import` (or :func:`prepare`);
a notebook can call them the same way. Nothing is sent before the file has been read
and validated; a dry run sends reads only.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ..codec import damage as DMG
from ..codec.export_id import read_export_id
from ..codec.serials import resolve_date_numbers
from ..errors import Aborted, BudgetExhausted, EtlError, InputError, Interrupted, MappingError, ValidationFailed
from ..hooks import Hooks as BaseHooks
from ..state.lock import checkpoint_lock
from ..state.snapshots import SnapshotStore
from . import applied, checks
from . import diff as D
from . import mapping as M
from .base import Base, find_base, is_no_base, named_export
from .checkpoint import Checkpoint, RowState
from .history import IMPORT, UNDO, History, Journal, RunInfo, is_undone, new_run_id
from .live import fetch_live, live_custom_fields, plan_reads
from .matching import fold
from .options import ImportOptions, Paths, plan_identity
from .outcome import RunOutcome, stopped_after_writes
from .reads import KeptReads, reads_path
from .reports import RowResult

KEEP_ALIVE_SECONDS = 300.0      # a sleeping run refreshes its reservation this often


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
    reused: int = 0                   # requests kept reads saved (reads.ReadThrough)
    reused_from: str | None = None    # whose reads: "the dry run", "earlier runs"
    sources: dict[str, str] = field(default_factory=dict)   # IntakeQ field -> source column (--map)
    unknown_columns: list[str] = field(default_factory=list)   # columns that are no field: never sent
    warnings: list = field(default_factory=list)   # validation warnings said (Problems), for the review

    @property
    def todo(self) -> list[D.RowPlan]:
        return [p for p in self.plans if p.writes and p.row not in self.results]

    def live_line(self) -> str:
        """The plan's ``live data:`` line: how live data was read, and what kept reads saved."""
        saved = f", {self.reused} reused from {self.reused_from or 'an earlier round'}" if self.reused else ""
        return f"live data: {self.strategy} ({self.reads} read(s){saved})"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.plans:
            if p.row not in self.results:
                out[p.action] = out.get(p.action, 0) + 1
        for r in self.results.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out


# --------------------------------------------------------------------------- reading


def read_and_validate(source: Path, opts: ImportOptions, paths: Paths, *, labels: dict | None = None):
    """Read the file through the codec (and ``--map``) and validate it. Raises
    ValidationFailed or MappingError (nothing sent). ``labels``: the account's custom fields
    (FieldId → label) as the newest snapshot knows them, None when unknown.

    Returns (table, frame, warnings, rejected, mapped): ``mapped`` says which source column
    each mapped field came from (``mapping.Mapped``)."""
    from etl.schemas.clients import validate_table

    mapped = read_through_mapping(source, opts, paths, labels)
    table = mapped.table
    table.frame.index = D.by_spreadsheet_row(table)     # each row carries its row number
    mapped.source.frame.index = table.frame.index
    if _foreign(source, opts, table.frame):      # nothing to fall back on: said before the schema's errors
        _refuse_errors(source, _unknown_columns(table.frame.columns, labels, fatal=True), paths,
                       before="nothing was sent")
    problems = M.relabel([p for p in validate_table(table) if p.check != "probable_typo_column"], mapped.sources)
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
        keep = [i for i in frame.index if int(i) not in bad_rows]
        rejects = mapped.source.frame.drop(index=keep)       # the source row as it was, not as mapped
        from .reports import write_rejects

        write_rejects(paths.rejects, rejects, rejected)
        paths.wrote(paths.rejects)
        frame = frame.loc[keep]
    return table, frame, warnings, rejected, mapped


def read_through_mapping(source: Path, opts: ImportOptions, paths: Paths, labels: dict | None) -> M.Mapped:
    """The file read by the codec through ``--map`` (and ``--ignore-column``, label headers);
    a mapping that cannot be used stops here, its cell problems in the report."""
    try:
        mapping = M.load_mapping(opts.mapping) if opts.mapping else None
        return M.read_mapped(source, mapping, labels=labels, ignore=opts.ignore_columns, format=opts.format,
                             encoding=opts.encoding, date_format=opts.date_format,
                             formula_guard=opts.formula_guard, tz=opts.timezone, sheet=opts.sheet)
    except MappingError as exc:
        if exc.problems:
            from .reports import write_report

            write_report(exc.problems, paths.report)
            paths.wrote(paths.report)
            raise MappingError(f"{exc.message}\nFull report: {paths.report}", exc.problems) from None
        raise


def _foreign(source: Path, opts: ImportOptions, frame: pd.DataFrame) -> bool:
    """A file whose unknown columns are an error before anything else is checked: ``--base
    none``, or new rows in a file that names no export (another system's file). A file from
    an export is checked once its base is known: the export's own columns are known then."""
    if is_no_base(opts.base):
        return True
    return M.has_new_rows(frame) and \
        named_export(source, opts.base, inside=read_export_id(source, opts.format))[0] is None


def _unknown_columns(columns, labels, *, fatal: bool, exported=()) -> list:
    found = M.unknown_columns_problem(columns, labels, fatal=fatal, exported=exported)
    return [found] if found is not None else []


def _describe(p) -> str:
    if p.row is None and p.column:      # a whole column: its name says where
        return f"{p.column}: {p.message}"
    where = ", ".join(x for x in (f"row {p.row}" if p.row else "", f"column {p.column}" if p.column else "") if x)
    return f"{where}: {p.message}" if where else p.message



# --------------------------------------------------------------------------- prepare


def prepare(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
            checkpoint: Checkpoint | None, echo: Callable[[str], None] | None = None,
            show_values: bool = False, kept_reads: KeptReads | None = None) -> Prepared:
    """Everything up to the plan: reads only (no write is sent). ``echo`` hears its
    one-line messages (how the file was read, the base, warnings); silent by default:
    the library never prints.

    With ``kept_reads``, live data is read through the kept reads of earlier runs (refreshed
    by one ``dateUpdatedStart`` listing), and what is read is kept for the next run.
    """
    echo = echo or Hooks().say
    source = Path(source)
    store = SnapshotStore(settings)
    table, frame, warnings, rejected, mapped = read_and_validate(source, opts, paths,
                                                                 labels=M.newest_labels([store]))
    base = find_base(source, opts.base, store, table.frame,   # local files: no request
                     inside=read_export_id(source, opts.format))
    opts = dataclasses.replace(opts, timezone=opts.timezone or base.timezone or "UTC")
    if table.sheet is not None:
        echo(f"sheet: {table.sheet}")
    for note in table.notes:
        echo("note: " + note)
    echo(base.how)
    # A column no IntakeQ field: an error without a base (nothing else would say its data was
    # not imported), else a helper column of an edited export, named in one loud warning.
    exported = base.frame.columns if base.frame is not None else ()
    unknown = _unknown_columns(frame.columns, base.custom_fields, exported=exported,
                               fatal=base.frame is None or M.has_new_rows(frame))
    read_only = M.read_only_problem(frame)        # a value in a new row's read-only cell: never sent
    _refuse_errors(source, unknown + ([read_only] if read_only is not None else []), paths,
                   before="nothing was sent")
    for p in unknown:
        echo(f"warning: {p.message}")
    _refuse_errors(source, checks.custom_field_problems(frame.columns, base.custom_fields), paths,
                   before="nothing was sent")
    frame, date_problems = resolve_date_numbers(frame, table.date_numbers, base.frame)
    # The file's cells are compared as they were read: slash dates in the file's order.
    diff_options = dataclasses.replace(opts.diff_options(), date_order=table.date_order or D.MONTH_FIRST)

    settled: dict[int, RowResult] = {}
    for row, reasons in rejected.items():
        settled[row] = RowResult(row, None, "skipped", (), "invalid: " + "; ".join(reasons))
    states = checkpoint.all() if checkpoint is not None else {}
    if states:          # _resume_creates writes ClientIds into it: not into the table's frame
        frame = frame.copy()
    reads_before = client.requests_sent
    _resume_creates(client, frame, states, checkpoint)
    for row, st in states.items():
        if st.final:
            settled[row] = RowResult(row, st.client_id, st.status, st.fields, st.error or "")
    # (every row, the usual case: the frame itself, not a copy of it)
    planning = frame.loc[[i for i in frame.index if int(i) not in settled]] if settled else frame

    written = D.written_since(applied.written(settings.account_dir), base.taken_at)
    edits = D.find_edits(planning, base.frame, diff_options, written=written, unknown=table.unknown)
    # The edits hold what the rest needs of the file: its frames go before the live reads.
    columns, n_rows, sources = list(frame.columns), len(table.frame), mapped.sources
    del table, frame, planning, mapped
    problems = date_problems + checks.edit_problems(edits)
    _refuse_errors(source, problems, paths, before="nothing was sent")      # before any request
    warnings = checks.drop_explained(warnings, problems) + _without_damage(problems)
    for line in checks.warning_lines(warnings):
        echo("warning: " + line)
    reader = kept_reads.reader(client) if kept_reads is not None else client
    reads = plan_reads(reader, edits, base)
    if reads.cost:      # other runs see the reads this plan needs as used, not just one request
        _reserve(client, reads.cost)
    live = fetch_live(reader, edits, base, reads=reads)
    if base.custom_fields is None:   # no base: the account's fields are known from live, before any write
        _refuse_errors(source, checks.custom_field_problems(columns, live_custom_fields(live)), paths,
                       before="nothing was written")
    plans = D.plan_rows(edits, live.records, diff_options, universe=live.universe,
                        created_before=applied.created_names(settings.account_dir),
                        created_here=applied.created_names(settings.account_dir, source), written=written)
    # Matches found in live, and damage found against live (no base): before any write.
    _refuse_errors(source, checks.same_client_problems(plans) + checks.damage_problems(plans)
                   + checks.scientific_notation_problems(plans), paths, before="nothing was written")
    for line in DMG.summary_lines([d for p in plans for d in p.damage], examples=1 if show_values else 0):
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
                    known_by_row, n_rows=n_rows, timezone=opts.timezone,
                    reused=getattr(reader, "reused", 0), reused_from=kept_reads.reused_from if kept_reads else None,
                    sources=sources, unknown_columns=M.unknown_columns(columns, exported),
                    warnings=warnings)


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
    from .apply import find_created

    if not states:
        return 0
    if "ClientId" not in frame.columns:     # a file of new clients only: the creates still count
        frame.insert(0, "ClientId", pd.array([pd.NA] * len(frame), dtype="Int64"))
    adopted = 0
    for index in frame.index:
        row = int(index)
        st = states.get(row)
        if st is None or not pd.isna(frame.at[index, "ClientId"]):
            continue
        client_id = st.client_id
        if st.create_unverified:
            first = fold(frame.at[index, "FirstName"]) if "FirstName" in frame.columns else ""
            last = fold(frame.at[index, "LastName"]) if "LastName" in frame.columns else ""
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
             if fold(r.get("FirstName")) == first and fold(r.get("LastName")) == last}
    if base.frame is not None and {"FirstName", "LastName"} <= set(base.frame.columns):
        f = base.frame
        same = (f["FirstName"].astype("string").str.strip().str.casefold() == first) & \
               (f["LastName"].astype("string").str.strip().str.casefold() == last)
        known |= {int(c) for c in f.loc[same.fillna(False), "ClientId"].dropna()}
    return known


def requests_of(plan: D.RowPlan) -> int:
    """The writes a row's plan sends: its save (if any) and one call per tag added or removed."""
    return (plan.body is not None) + len(plan.tag_adds) + len(plan.tag_removes)


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


class Hooks(BaseHooks):
    """How an import talks to its caller: the library's :class:`etl.hooks.Hooks` (``say``,
    ``note``, ``progress``, ``should_stop``, asked before each row) and what only an
    import (or an undo) has: its run id, the plan, the confirmation, each row done. Silent,
    and says yes."""

    # Example cell values in messages (damage lines): client data, so only for a person at
    # a terminal, never for a scheduler's log.
    show_values = False

    def started(self, run_id: str) -> None: ...
    def planned(self, prepared: Prepared, estimate: dict) -> None: ...
    def confirm(self, estimate: dict) -> bool: return True
    def row_done(self, plan: D.RowPlan) -> None: ...


def run_import(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
               checkpoint: Checkpoint | None, dry_run: bool = False, wait: bool = False,
               hooks: Hooks | None = None) -> RunOutcome:
    """Plan, then apply; with ``wait``, sleep whenever the daily budget runs out and go on.

    Each round plans afresh against live (rows the checkpoint holds as done are skipped),
    so after a wait of hours nothing stale is sent: a save always carries the live
    profile of that moment, and a client created before the wait is never created again.

    Two imports of one file (one checkpoint) never run at once: this holds the file's
    lock (:func:`~etl.state.lock.checkpoint_lock`) and waits for another holder, or, when
    the client was made with ``wait_for_others=False``, raises ``Busy`` (exit 75).

    A stop request (Ctrl-C on the client's clock) ends the run within a second, whether
    it came while planning, applying or sleeping: the outcome of the last round that
    wrote is returned with ``stopped_by`` set (its results file is written); before any
    write it raises ``Interrupted``. Another ``EtlError`` after the first write (planning
    again after a wait) is raised as ``StoppedAfterWrites`` (exit 4: the results file holds
    the rounds before it), since exit 1 says that nothing was written.
    """
    hooks = hooks or Hooks()
    with checkpoint_lock(paths.checkpoint, clock=client.clock,
                         wait=getattr(client, "wait_for_others", True)):
        return _run_import_locked(client, settings, source, opts, paths, checkpoint=checkpoint,
                                  dry_run=dry_run, wait=wait, hooks=hooks)


def _run_import_locked(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
                       checkpoint: Checkpoint | None, dry_run: bool, wait: bool, hooks: Hooks) -> RunOutcome:
    """:func:`run_import` under the file's lock (the CLI takes it earlier, before it opens
    the checkpoint; taking it again in the same thread is a no-op)."""
    run = start_run(checkpoint, RunInfo(new_run_id(), IMPORT, str(Path(source).resolve()),
                                        checkpoint=str(Path(paths.checkpoint).resolve())),
                    settings.account_dir, dry_run=dry_run, hooks=hooks)
    kept = open_kept_reads(client, settings, source, opts, paths, dry_run=dry_run, note=hooks.note)
    try:
        outcome = apply_rounds(
            client, settings, paths,
            lambda: _prepare_when_budget_allows(client, settings, source, opts, paths, checkpoint=checkpoint,
                                                wait=wait, hooks=hooks, kept=kept),
            checkpoint=checkpoint, dry_run=dry_run, wait=wait, hooks=hooks, run=run, opts=opts)
    finally:
        kept.close()
    if not dry_run and outcome.stopped_by is None and outcome.exit_status() == 0:
        kept.discard()         # every row done: the reads would only go stale
    return outcome


def start_run(checkpoint: Checkpoint | None, run: RunInfo, account_dir: Path, *, dry_run: bool,
              hooks: Hooks) -> RunInfo:
    """The run's id: the one its checkpoint keeps (a resume goes on with the same run),
    else ``run``'s new one, kept in the checkpoint from its first write. Said at the start.

    An import run undone since is not continued (its unfinished rows would apply part of a
    file someone took back): an ``InputError`` (exit 1), nothing sent; a dry run says so."""
    if checkpoint is not None and checkpoint.run_id:
        run = dataclasses.replace(run, run_id=checkpoint.run_id)
        if is_undone(account_dir, run.run_id):
            why = (f"run {run.run_id} of this checkpoint was undone: neither its rows nor its unfinished "
                   "ones are sent again; to import the file again as a new run, add --restart (or put "
                   "the run back in effect by undoing the undo: intakeq-etl history)")
            if dry_run or run.kind != IMPORT:
                hooks.note(why)
            else:
                raise InputError(why + "; nothing was sent")
    elif checkpoint is not None and not dry_run:
        if run.kind == UNDO:      # an undo killed after its last write: its checkpoint is finished,
            with History(account_dir) as history:       # its run is not; the re-run goes on with it
                killed = history.unfinished(UNDO, run.checkpoint)
            if killed is not None:
                run = dataclasses.replace(run, run_id=killed)
        checkpoint.keep_run(run.run_id)
    if not dry_run:
        hooks.started(run.run_id)
    return run


def apply_rounds(client, settings, paths: Paths, prepare_round: Callable[[], Prepared], *,
                 checkpoint: Checkpoint | None, dry_run: bool, wait: bool, hooks: Hooks,
                 run: RunInfo, opts: ImportOptions | None = None) -> RunOutcome:
    """Hold the budget, then plan (``prepare_round``) and apply, in rounds with ``wait``: the
    part an import and an undo share. An ``EtlError`` after the first write is
    ``StoppedAfterWrites`` (exit 4)."""
    try:
        with _hold_budget_waiting(client, wait=wait, hooks=hooks):   # before the first request
            return _rounds(client, settings, paths, prepare_round, checkpoint=checkpoint,
                           dry_run=dry_run, wait=wait, hooks=hooks, run=run, opts=opts)
    except (BudgetExhausted, Interrupted):
        raise
    except EtlError as exc:
        if checkpoint is None or not checkpoint.operations_begun:
            raise
        raise stopped_after_writes(exc, paths) from exc


def open_kept_reads(client, settings, source: Path, opts: ImportOptions, paths: Paths, *, dry_run: bool,
                    note: Callable[[str], None] = lambda message: None) -> KeptReads:
    """The reads kept beside the checkpoint for this account and plan identity (see ``reads``)."""
    kept = KeptReads(reads_path(paths.checkpoint), account=settings.account_id,
                     identity=plan_identity(source, opts), options=dataclasses.asdict(opts),
                     dry_run=dry_run, clock=client.clock)
    if kept.why_not is not None:
        note(f"the reads kept in {kept.path} are not used ({kept.why_not}); live data is read afresh")
    return kept


def _hold_budget_waiting(client, *, wait: bool, hooks: Hooks):
    """:func:`_hold_budget`; with ``--wait``, a budget already used up (by the local count or
    by IntakeQ's word) is slept through like a stop later in the run, not an exit 75."""
    while True:
        try:
            return _hold_budget(client)
        except BudgetExhausted as exc:
            if not wait or exc.frees_at is None:
                raise
            _sleep_until(client, exc.frees_at, hooks)


def _hold_budget(client):
    """Reserve budget in the ledger before the first request: waits for (or, told not to,
    stops before) other runs that hold what is left; stops at once while IntakeQ says the
    day is gone. The plan is not known yet, so one request is reserved; once the file is
    read, the reservation becomes the reads planning needs, then the plan's writes
    (:func:`_reserve`). An import keeps its
    progress in its checkpoint, so one that today's budget cannot finish starts anyway."""
    hold = getattr(client, "hold_budget", None)
    if hold is None:          # a stand-in client without a ledger
        return contextlib.nullcontext()
    return hold(1, what="import", keeps_progress=True)


def _reserve(client, requests: int) -> None:
    """This run's reservation becomes ``requests`` more (a plan's reads, then its writes)."""
    ledger = getattr(client, "ledger", None)
    if ledger is not None and hasattr(ledger, "reserve_more"):
        ledger.reserve_more(requests)


def _rounds(client, settings, paths: Paths, prepare_round: Callable[[], Prepared], *,
            checkpoint: Checkpoint | None, dry_run: bool, wait: bool, hooks: Hooks, run: RunInfo,
            opts: ImportOptions | None = None) -> RunOutcome:
    """Plan and apply, once, or with ``wait`` again after each budget stop."""
    last: RunOutcome | None = None          # the latest round, stopped by the budget (--wait)
    while True:
        try:
            if last is not None:
                _sleep_until(client, last.stopped_by.frees_at, hooks)
            prepared = prepare_round()
            outcome = _plan_and_apply(client, settings, prepared, paths, checkpoint=checkpoint,
                                      dry_run=dry_run, ask=last is None, hooks=hooks, run=run, opts=opts)
        except Interrupted as stop:
            if last is None:
                raise Interrupted("interrupted (Ctrl-C) before the first write: nothing was "
                                  "written; run the same command again to start") from None
            return dataclasses.replace(last, stopped_by=stop)
        if not (wait and _stopped_by_budget_that_frees(outcome)):
            return outcome
        last = outcome


def _prepare_when_budget_allows(client, settings, source: Path, opts: ImportOptions, paths: Paths, *,
                                checkpoint, wait: bool, hooks: Hooks, kept: KeptReads | None = None) -> Prepared:
    """``prepare``; with ``wait``, a budget used up while planning is slept through (what
    was read is kept: the next round reads only what is missing)."""
    def say_what_is_kept():
        if kept is not None and kept.kept_ids():
            hooks.note(f"{len(kept.kept_ids())} client read(s) kept in {kept.path}: the next "
                       f"{'round' if wait else 'run'} reads only what is missing, then plans")

    return plan_when_budget_allows(
        client, lambda: prepare(client, settings, source, opts, paths, checkpoint=checkpoint, echo=hooks.say,
                                show_values=hooks.show_values, kept_reads=kept),
        wait=wait, hooks=hooks, on_stop=say_what_is_kept)


def plan_when_budget_allows(client, plan: Callable[[], Prepared], *, wait: bool, hooks: Hooks,
                            on_stop: Callable[[], None] = lambda: None) -> Prepared:
    """``plan()``; a budget used up while planning stops it (``on_stop`` hears it first),
    or, with ``wait``, is slept through and planning starts again."""
    while True:
        try:
            return plan()
        except BudgetExhausted as exc:
            on_stop()
            if not wait or exc.frees_at is None:
                raise
            _sleep_until(client, exc.frees_at, hooks)


def _plan_and_apply(client, settings, prepared: Prepared, paths: Paths, *, checkpoint, dry_run: bool,
                    ask: bool, hooks: Hooks, run: RunInfo, opts: ImportOptions | None = None) -> RunOutcome:
    """Write the plan and its review files, then (unless a dry run or nothing to do) send it
    and write the results.

    Each row's before and after images go to the account's history (``history.Journal``)
    before its first request."""
    from .applied import record as record_applied
    from .apply import ApplyOutcome, apply_plan
    from .reports import write_plan, write_results_or_elsewhere
    from .review import write_review

    write_plan(paths.plan, prepared.plans, sources=prepared.sources, unknown_columns=prepared.unknown_columns)
    paths.wrote(paths.plan)
    est = estimate(prepared, client, settings)
    write_review(paths, prepared.plans, review_summary(prepared, est, settings, opts, dry_run=dry_run,
                                                       command=run.kind))
    if not dry_run:
        _reserve(client, est["writes"])      # other runs now see the plan's need as used
    hooks.planned(prepared, est)
    todo = prepared.todo
    if dry_run:
        return RunOutcome(prepared, dict(prepared.results), dry_run=True)
    if not todo and run.kind == UNDO and is_undone(settings.account_dir, run.undoes) and paths.results.exists():
        # the run was undone already and nothing is left to write: the results file stays the
        # one of the undo that did it (this attempt is no run of the history)
        hooks.say(f"{paths.results} keeps the results of the undo that took run {run.undoes} back")
        return RunOutcome(prepared, dict(prepared.results))
    if not todo:
        paths.wrote(write_results_or_elsewhere(paths, prepared.results.values(), settings.account_dir,
                                               hooks.say, run=run.run_id, sources=prepared.sources))
        if run.kind == UNDO and not is_undone(settings.account_dir, run.undoes):
            # nothing left to take back (a killed run's writes never landed, staff set it all
            # back): the run is undone, and this undo on record
            Journal(settings.account_dir, run, timezone=prepared.timezone).finish(prepared.results.values())
        return RunOutcome(prepared, dict(prepared.results), run_id=run.run_id)
    if ask and not hooks.confirm(est):
        raise Aborted("nothing was sent")
    outcome = ApplyOutcome()
    if checkpoint is not None:
        checkpoint.hold_run()      # the checkpoint names the run before its journal does
    journal = Journal(settings.account_dir, run, timezone=prepared.timezone)
    applied_as = prepared.base.export_id if run.kind == IMPORT else f"{run.kind}:{run.run_id}"

    def created(plan):
        journal.created(plan)
        applied.record_created(settings.account_dir, plan.client_id, *plan.name_key, source=prepared.source)

    def saved(plan):
        journal.saved(plan)
        record_applied(settings.account_dir, applied_as, plan.client_id, plan.changes)

    try:
        with hooks.progress(len(todo), desc=run.kind, unit="client") as bar:
            left = {plan.row: requests_of(plan) for plan in todo}
            bar.update(0, remaining=est["writes"])

            def row_done(plan):
                journal.row_done(plan, outcome.results.get(plan.row))
                hooks.row_done(plan)
                if plan.row in outcome.results:       # not the row a stop left unsent
                    left.pop(plan.row, None)
                    bar.update(1, remaining=sum(left.values()))

            apply_plan(
                client, todo, checkpoint, tz=prepared.timezone, clock=client.clock, outcome=outcome,
                should_stop=lambda: hooks.should_stop() or client.clock.stop_requested(),
                on_created=created, on_sending=journal.sending,
                on_row=row_done, known_ids=lambda plan: prepared.known_by_row.get(plan.row, set()),
                on_saved=saved)
    finally:     # even when the disk or a bug stops it: the rows written are on record
        results = dict(prepared.results)
        results.update(outcome.results)
        for plan in todo:
            results.setdefault(plan.row, RowResult(plan.row, outcome.with_client(plan).client_id, "pending", (),
                                                   "not sent yet: run the same command again"))
        try:
            paths.wrote(write_results_or_elsewhere(paths, results.values(), settings.account_dir, hooks.say,
                                                   run=run.run_id, sources=prepared.sources))
        finally:
            journal.finish(results.values())
    return RunOutcome(prepared, results, outcome.stopped_by, applied=True, run_id=run.run_id)


def review_summary(prepared: Prepared, est: dict, settings, opts: ImportOptions | None, *, dry_run: bool,
                   command: str = "import"):
    """The numbers of the plan block, for the review files (``review.ReviewSummary``)."""
    from .review import ReviewSummary

    return ReviewSummary.from_estimate(
        est, settings, command=command, source=str(prepared.source), dry_run=dry_run,
        counts=prepared.counts(), base=prepared.base.how.removeprefix("base: "),
        options=options_used(opts, prepared.timezone) if opts is not None else {}, problems=prepared.warnings,
        sources=prepared.sources)


def options_used(opts: ImportOptions, timezone: str) -> dict[str, str]:
    """The options that shape a plan, as the command line spells them (the review's summary)."""
    used = {"--tags": opts.tags, "--blank": opts.blank, "--prefer": "file" if opts.prefer_file else "(none)",
            "--timezone": timezone}
    named = {"--base": opts.base, "--format": opts.format, "--encoding": opts.encoding,
             "--date-format": opts.date_format, "--sheet": opts.sheet, "--map": opts.mapping}
    used.update({name: str(value) for name, value in named.items() if value})
    if opts.skip_invalid:
        used["--skip-invalid"] = "on"
    if not opts.formula_guard:
        used["--no-formula-guard"] = "on"
    return used


def _stopped_by_budget_that_frees(outcome: RunOutcome) -> bool:
    stop = outcome.stopped_by
    return isinstance(stop, BudgetExhausted) and stop.frees_at is not None


def _sleep_until(client, epoch: float, hooks: Hooks) -> None:
    """Sleep through the client's clock: a Ctrl-C cuts it short (``Interrupted``) within a
    second. The run's reservation is kept alive meanwhile (a stale one lapses after 15 min
    without a request): when the budget frees, this run goes on with what it reserved."""
    from ..errors import format_epoch

    clock = client.clock
    hooks.say(f"daily budget used up; waiting until {format_epoch(epoch)} (--wait; Ctrl-C stops)")
    end = clock.time() + max(1.0, epoch - clock.time() + 1.0)
    keep_alive = getattr(getattr(client, "ledger", None), "keep_alive", lambda: None)
    while (left := end - clock.time()) > 0:
        clock.sleep(min(left, KEEP_ALIVE_SECONDS))
        keep_alive()
