"""``undo``: take back exactly what one run changed, and nothing staff did since.

The run's journal (:mod:`etl.importer.history`) holds, per row, the before and after
image of every field it saved and every tag it added or removed. Against live:

* a field that still holds the run's after value is set back to its before value;
* a field that holds the before value already needs nothing (undone, or never landed);
* a field that holds anything else — or that a later import (not undone) changed too —
  is a **conflict**: kept, reported with the three values (``prefer_undo`` writes the
  before value anyway);
* a tag the run added is removed, a tag it removed is added back, unless live already
  shows it so, or a later import changed that tag (a conflict);
* a client the run created cannot be deleted through the API: listed (``manual``), nothing
  is sent.

:func:`plan_undo_row` is pure; the rest turns the journal into the same RowPlans an import
applies, so saves (GET-merge-POST, full profiles), the checkpoint, the budget, ``--wait``,
the plan and results files and the history are the import's own (``run.apply_rounds``).
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..clock import api_day_before
from ..codec import normalized
from ..errors import InputError
from ..state.lock import checkpoint_lock
from . import diff as D
from .base import Base
from .checkpoint import Checkpoint
from .history import CREATED, UNDO, History, JournalEntry, Run, RunInfo, change_key, day, new_run_id, tag_of
from .matching import plain
from .options import Paths
from .outcome import RunOutcome
from .reports import RowResult, run_of_results
from .run import Hooks, Prepared, apply_rounds, plan_when_budget_allows, start_run

MANUAL = "manual"            # a client the run created: delete or archive it in IntakeQ by hand
LOOKUPS_AT_MOST = 2          # more clients than this: one listing of clients updated since the run


def resolve_run(account_dir: Path, run: str | Path) -> Run:
    """The run a RUN argument names: a run id, or the path of the run's results file."""
    run_id = str(run)
    path = Path(run)
    if path.is_file():
        try:
            run_id = run_of_results(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: cannot read it as a results file ({exc}); pass the run id "
                             "(intakeq-etl history lists them)") from None
        if run_id is None:
            raise InputError(f"{path}: this results file names no run (no run column: written by an older "
                             "version?); pass the run id (intakeq-etl history lists them)")
    elif path.suffix or "/" in run_id:
        raise InputError(f"{run}: no such results file (RUN is a run id from intakeq-etl history, or the path "
                         "of that import's results file)")
    with History(account_dir) as history:
        found = history.run(run_id)
    if found is None:
        raise InputError(f"no run {run_id} in this account's history (intakeq-etl history lists its runs; "
                         "the history lives in the state dir: another --state-dir or account?)")
    return found


def undo_paths(run: Run, *, checkpoint=None, results=None, plan=None) -> Paths:
    """Where an undo writes by default: beside the run's input file (else the current
    folder), named after it and the run: ``clients.undo-<run>.plan.csv``, ``.results.csv``,
    ``.checkpoint.sqlite``."""
    source = Path(run.file) if run.file else None
    folder = source.parent if source is not None and source.parent.is_dir() else Path.cwd()
    stem = folder / f"{source.stem if source is not None else 'run'}.undo-{run.run_id}"
    return Paths(checkpoint=Path(checkpoint or f"{stem}.checkpoint.sqlite"),
                 results=Path(results or f"{stem}.results.csv"), plan=Path(plan or f"{stem}.plan.csv"),
                 report=Path(f"{stem}.report.csv"), rejects=Path(f"{stem}.rejects.csv"))


def undo_identity(run: Run, prefer_undo: bool = False) -> str:
    """The undo checkpoint's identity: the run it takes back. ``--prefer undo`` is left out
    (like the import's merge options: every run plans afresh)."""
    del prefer_undo
    return hashlib.sha256(f"undo {run.run_id}".encode()).hexdigest()


def undo_import(client, settings, run: str | Path | Run, paths: Paths | None = None, *,
                checkpoint: Checkpoint | None, prefer_undo: bool = False, dry_run: bool = False,
                wait: bool = False, hooks: Hooks | None = None) -> RunOutcome:
    """Take back what the run ``run`` (an id, its results file, or a ``Run``) changed.

    Like :func:`etl.importer.run_import`: the same hooks, checkpoint (open it with
    ``open_checkpoint(paths.checkpoint, undo_identity(run), ...)``), ``wait`` and outcome
    (exit 4 when a field is kept as a conflict), the checkpoint's lock (two undos of one
    run never run at once), and the lock of the run's own checkpoint (never beside a
    resume of that run); the undo is a run of its own in the history, so it can be undone too.
    """
    hooks = hooks or Hooks()
    target = run if isinstance(run, Run) else resolve_run(settings.account_dir, run)
    paths = paths or undo_paths(target)
    if target.undone_by:
        hooks.note(f"run {target.run_id} was undone already (by {target.undone_by}); live is checked again")
    others = getattr(client, "wait_for_others", True)
    with contextlib.ExitStack() as held:
        held.enter_context(checkpoint_lock(paths.checkpoint, clock=client.clock, wait=others))
        if target.checkpoint and Path(target.checkpoint).parent.is_dir():   # the run itself, resumed meanwhile
            held.enter_context(checkpoint_lock(target.checkpoint, clock=client.clock, wait=others))
        this = start_run(checkpoint, RunInfo(new_run_id(), UNDO, target.file, undoes=target.run_id,
                                             checkpoint=str(Path(paths.checkpoint).resolve())),
                         settings.account_dir, dry_run=dry_run, hooks=hooks)
        return apply_rounds(client, settings, paths,
                            lambda: plan_when_budget_allows(
                                client, lambda: prepare_undo(client, settings, target, checkpoint=checkpoint,
                                                             prefer_undo=prefer_undo, echo=hooks.say),
                                wait=wait, hooks=hooks),
                            checkpoint=checkpoint, dry_run=dry_run, wait=wait, hooks=hooks, run=this)


def prepare_undo(client, settings, target: Run, *, checkpoint: Checkpoint | None, prefer_undo: bool = False,
                 echo: Callable[[str], None] = lambda message: None) -> Prepared:
    """The undo's plan (reads only): one RowPlan per row of the run."""
    with History(settings.account_dir) as history:
        entries = history.journal(target.run_id)
        later = history.touched_later(target)
    tz = target.timezone or "UTC"
    by_row: dict[int, list[JournalEntry]] = defaultdict(list)
    for e in entries:
        by_row[e.row].append(e)
    echo(f"undo: run {target.run_id} ({target.kind} of {Path(target.file).name if target.file else '?'}, "
         f"{day(target.started)}): {len(by_row)} row(s) in its journal")
    # Every row is planned against live, also on a resume: what an interrupted attempt set
    # back is then as before the run (nothing to send), and keeps its checkpoint status.
    states = checkpoint.all() if checkpoint is not None else {}
    settled: dict[int, RowResult] = {}
    plans: list[D.RowPlan] = []
    for row, items in sorted(by_row.items()):
        created = next((e for e in items if e.field == CREATED), None)
        if created is not None:
            plan = created_client_plan(row, created, target)
            plans.append(plan)
            settled[row] = RowResult(row, plan.client_id, MANUAL, (), plan.message)
    reads_before = client.requests_sent
    live, how = read_live(client, sorted({items[0].client_id for row, items in by_row.items()
                                          if row not in settled and items[0].client_id is not None}),
                          since=target.started)
    frame = _typed(live, tz)
    for row, items in sorted(by_row.items()):
        if row in settled:            # a client the run created
            continue
        cid = items[0].client_id
        if cid not in live:
            plans.append(D.RowPlan(row, cid, D.FAILED, message=f"ClientId {cid} was not found in IntakeQ"))
            continue
        plan = plan_undo_row(row, cid, items, live[cid], frame.loc[cid], later=later,
                             prefer_undo=prefer_undo, tz=tz, run_id=target.run_id)
        done = states.get(row)
        if plan.action == D.UNCHANGED and done is not None and done.status == "updated":
            settled[row] = RowResult(row, cid, "updated", done.fields, "")    # by this undo, before a stop
        plans.append(plan)
    for p in plans:
        if p.action in (D.CONFLICT, D.FAILED, D.UNCHANGED):
            settled.setdefault(p.row, RowResult(p.row, p.client_id, p.action, (), p.message))
    plans.sort(key=lambda p: p.row)
    base = Base(None, None, f"undo of run {target.run_id}")
    return Prepared(Path(target.file or target.run_id), plans, settled, base, how,
                    client.requests_sent - reads_before, n_rows=len(by_row), timezone=tz)


def created_client_plan(row: int, created: JournalEntry, target: Run) -> D.RowPlan:
    """A client the run created: listed, never sent (the API cannot delete a client)."""
    names = created.after or {}
    name = " ".join(str(n) for n in (names.get("FirstName"), names.get("LastName")) if n) or "(no name)"
    if created.client_id is None:
        message = (f"{name}: run {target.run_id} was stopped while creating this client; if IntakeQ has "
                   "it, delete or archive it in IntakeQ by hand")
    else:
        message = f"{name}: created by run {target.run_id}; delete or archive in IntakeQ by hand"
    return D.RowPlan(row, created.client_id, MANUAL, message=message)


def plan_undo_row(row: int, client_id: int, entries: list[JournalEntry], live_record: dict,
                  live_row: pd.Series, *, later: set[tuple[int, str]] = frozenset(), prefer_undo: bool = False,
                  tz: str = "UTC", run_id: str = "") -> D.RowPlan:
    """One row of the run against live: what to set back, what to keep (pure)."""
    changes: list[D.Change] = []
    conflicts: list[D.Conflict] = []
    adds: list[str] = []
    removes: list[str] = []
    live_tags = set(live_record.get("Tags") or [])
    names_set_back = {"FirstName", "LastName"} & {e.field for e in entries}
    for e in entries:
        if e.field == "Name" and names_set_back:
            continue                       # it follows FirstName/LastName (below), as in the import
        touched_later = (client_id, change_key(e.field)) in later
        tag = tag_of(e.field)
        if tag is not None:
            added = e.field.startswith("Tags+")
            if (tag in live_tags) != added:
                continue                   # as before the run already
            if touched_later and not prefer_undo:
                conflicts.append(D.Conflict("Tags", "added" if added else "removed", tag,
                                            "present" if added else "absent",
                                            note=_later_note(f"tag {tag}", run_id)))
                continue
            (removes if added else adds).append(tag)
            continue
        current = plain(live_row[e.field]) if e.field in live_row.index else None
        if _same(e.field, current, e.before):
            continue                       # as before the run already
        if not prefer_undo and (touched_later or not _same(e.field, current, e.after)):
            conflicts.append(D.Conflict(e.field, e.after, e.before, current,
                                        note=_later_note(e.field, run_id) if touched_later and
                                        _same(e.field, current, e.after) else CONFLICT_NOTE))
            continue
        changes.append(D.Change(e.field, current, e.before))
    _name_follows(changes, live_row)
    plan = D.RowPlan(row, client_id, D.UPDATE, changes=changes, conflicts=conflicts, tag_adds=sorted(adds),
                     tag_removes=sorted(removes))
    if changes:
        plan.body = D.merged_body(live_record, changes, tz)
    if conflicts:
        plan.message = "kept (changed in IntakeQ since the run): " + "; ".join(
            f"{c.field}: IntakeQ {_shown(c.live)!r}, the run wrote {_shown(c.base)!r}, before it "
            f"{_shown(c.file)!r}" for c in conflicts) + "; --prefer undo sets them back anyway"
        if not plan.writes:
            plan.action = D.CONFLICT
    elif not plan.writes:
        plan.action = D.UNCHANGED
        plan.message = "as before the run already"
    return plan


def _name_follows(changes: list[D.Change], live_row: pd.Series) -> None:
    """Name set back with FirstName/LastName from what they will hold (a staff edit of the
    other part kept), never a conflict of its own."""
    names = {c.field: c.new for c in changes}
    if not ({"FirstName", "LastName"} & names.keys()):
        return
    def part(field):
        return names[field] if field in names else plain(live_row[field]) if field in live_row.index else None
    name = " ".join(str(p) for p in (part("FirstName"), part("LastName")) if p)
    current = plain(live_row["Name"]) if "Name" in live_row.index else None
    if name and not _same("Name", current, name):
        changes.append(D.Change("Name", current, name, derived=True))


CONFLICT_NOTE = ("conflict: changed in IntakeQ since the run (old = IntakeQ now, new = before the run, "
                 "base = what the run wrote): kept; --prefer undo writes new")


def _later_note(what: str, run_id: str) -> str:
    return (f"conflict: a later import changed {what} too: kept (undo that import first, "
            f"or --prefer undo sets back the value before run {run_id})")


def _same(col: str, a, b) -> bool:
    return normalized(col, a) == normalized(col, b)


def _shown(v) -> Any:
    return "" if v is None else v


def _typed(live: dict[int, dict], tz: str) -> pd.DataFrame:
    from ..codec import clients_to_frame

    if not live:
        return pd.DataFrame()
    frame = clients_to_frame(list(live.values()), tz=tz)
    return frame.set_index(frame["ClientId"].astype("int64"), drop=False)


def read_live(client, ids: list[int], *, since: float) -> tuple[dict[int, dict], str]:
    """The live profiles of ``ids``, at the lowest cost: a look-up each for a few; else the
    listing of clients updated since the run started (every client it saved is in it),
    page by page until all are found, then a look-up each for the rest (a tag call may
    not count as an update)."""
    if not ids:
        return {}, "no live data needed"
    found: dict[int, dict] = {}
    wanted = set(ids)
    pages = 0
    if len(ids) > LOOKUPS_AT_MOST:
        for page in client.iter_pages(date_updated_start=api_day_before(since)):
            pages += 1
            found.update({int(r["ClientId"]): r for r in page if int(r["ClientId"]) in wanted})
            # stop when paging on costs more than a look-up for each client still missing
            if wanted <= found.keys() or pages + len(wanted - found.keys()) >= len(ids):
                break
    missing = sorted(wanted - found.keys())
    for cid in missing:
        record = client.get_client(cid)
        if record is not None:
            found[int(record["ClientId"])] = record
    how = (f"{pages} page(s) of clients updated since the run + " if pages else "") + \
        f"{len(missing)} per-client look-up(s)"
    return found, how


def nothing_to_undo(results, run_id: str) -> str:
    """The closing line of an undo that had nothing to send."""
    conflicts = sum(1 for r in results if r.status == "conflict")
    if conflicts:
        return f"nothing to write; {conflicts} row(s) keep values changed since run {run_id} (see the plan file)"
    return f"nothing to write: IntakeQ holds the values from before run {run_id}"


def manual_line(results) -> str | None:
    """What is left to do by hand: the clients the run created."""
    n = sum(1 for r in results if r.status == MANUAL)
    if not n:
        return None
    return (f"{n} client(s) the run created cannot be deleted through the API: delete or archive them "
            "in IntakeQ by hand (listed, with ClientId and name, in the results file)")
