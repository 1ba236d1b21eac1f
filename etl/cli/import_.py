"""``intakeq-etl import FILE``: diff against the live account, show the plan, apply only what changed."""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from . import AFTER_WRITES
from ..errors import (EXIT_OK, EXIT_ROWS_FAILED, BudgetExhausted, CheckpointMismatch, EtlError,
                      Interrupted, StoppedAfterWrites, format_epoch)


@click.command("import", short_help="Import a file: diff, plan, apply only what changed.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Make the plan (reads only), write the plan file, send no write.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Resumable journal  [default: beside FILE, its name without extension + .checkpoint.sqlite]")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row results CSV  [default: beside FILE, .results.csv]")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-change plan CSV  [default: beside FILE, .plan.csv]")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Validation report CSV  [default: beside FILE, .report.csv]")
@click.option("--base", help="The export FILE came from: an export folder or an export id; "
                             "'none' for a two-way diff against live only  "
                             "[default: the manifest beside FILE, else the newest snapshot]")
@click.option("--tags", type=click.Choice(["merge", "replace"]), default="merge", show_default=True,
              help="merge: add the cell's missing tags; replace: also remove tags deleted from the cell.")
@click.option("--blank", type=click.Choice(["keep", "clear"]), default="keep", show_default=True,
              help="What an empty cell means: keep the current value, or clear it.")
@click.option("--prefer", type=click.Choice(["file"]), default=None,
              help="On a conflict (same field changed in the file and in IntakeQ), take the file's value.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows; write invalid ones to a rejects file.")
@click.option("--wait", is_flag=True, help="When the daily budget runs out, sleep until it frees and go on.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (only asked on a terminal).")
@click.option("--restart", is_flag=True, help="Discard the checkpoint and start over.")
@click.option("--timezone", default=None,
              help="The practice's timezone, for dates of birth  [default: the export's, else UTC]")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "xlsx"]),
              help="Input format  [default: from the extension]")
@click.option("--encoding", help="CSV text encoding  [default: utf-8, BOM accepted]")
@click.option("--date-format", help="strftime format of date cells, e.g. %d/%m/%Y")
@click.option("--no-formula-guard", is_flag=True, help="Keep a leading ' on cells (the file was exported without the guard).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def import_(ctx, file, dry_run, checkpoint, results, plan_path, report, base, tags, blank, prefer,
            skip_invalid, wait, yes, restart, timezone, fmt, encoding, date_format, no_formula_guard, quiet):
    """Import FILE (CSV, Parquet or XLSX) into IntakeQ.

    The file is read and validated first (nothing is sent if it is invalid), compared
    with the export it came from (the base) to find the admin's edits, and with live
    IntakeQ data to keep what staff changed meanwhile. Only clients and tags that really
    change are written, at the API's pace, journalled in a checkpoint so that running
    the same command again resumes safely.

    The checkpoint file is created at the first write: a run that sent nothing (an
    invalid file, a bad option, a dry run) leaves nothing that blocks the next one.

    Exit codes: 0 all rows succeeded or unchanged; 1 an error, and nothing was
    written; 4 finished with failed, conflict or pending rows, or an error stopped
    the run after its first write (the results file says where: run the same command
    again); 75 the daily budget ran out (run again later, or use --wait); 130 interrupted.
    """
    from .. import importer as I

    app = ctx.obj
    opts = I.ImportOptions(tags=tags, blank=blank, prefer_file=prefer == "file", skip_invalid=skip_invalid,
                           base=base, timezone=timezone, format=fmt, encoding=encoding,
                           date_format=date_format, formula_guard=not no_formula_guard)
    paths = I.Paths.beside(file, checkpoint=checkpoint, results=results, plan=plan_path, report=report)
    settings = app.settings()
    settings.require_key()
    cp = _open_checkpoint(paths.checkpoint, I.plan_identity(file, opts), restart, dry_run)
    try:
        hooks = _CliHooks(paths, settings, quiet=quiet, ask=sys.stdin.isatty() and not yes)
        with _stop_on_sigint() as stop:
            hooks.should_stop = stop
            run = I.run_import(app.client(), settings, file, opts, paths, checkpoint=cp, dry_run=dry_run,
                               wait=wait, hooks=hooks)
    except EtlError as exc:
        if not _wrote(cp) or isinstance(exc, (BudgetExhausted, Interrupted)):
            raise
        # E.g. planning again after a --wait: the results file holds the rounds before it.
        raise _stopped_after_writes(exc, paths) from exc
    except Exception:
        if _wrote(cp):
            ctx.meta[AFTER_WRITES] = True       # a bug: the group logs it, and exits 4, not 1
        raise
    finally:
        if cp is not None:
            cp.close()
    if dry_run:
        click.echo("dry run: no write was sent", err=True)
        return
    if not run.applied:
        click.echo("nothing to write: IntakeQ already matches the file", err=True)
    _print_summary(run.results.values(), paths)
    if run.stopped_by is not None:
        raise _stop_error(run.stopped_by, run.results, paths)
    ctx.exit(_exit_code(run.results.values()))


class _CliHooks:
    """The import's voice on the terminal: messages on stderr, a tqdm bar, the prompt."""

    def __init__(self, paths, settings, *, quiet: bool, ask: bool):
        self.paths, self.settings, self.quiet, self.ask = paths, settings, quiet, ask
        self.should_stop = lambda: False

    def say(self, message: str) -> None:
        click.echo(message, err=True)

    def planned(self, prepared, est: dict) -> None:
        _print_plan(prepared, est, self.paths, self.settings)

    def confirm(self, est: dict) -> bool:
        return not self.ask or click.confirm(f"Send {est['writes']} write(s) to IntakeQ?", err=True)

    def row_done(self, plan) -> None:
        pass

    def progress(self, total: int):
        return _progress(total, self.quiet)


def _wrote(cp) -> bool:
    """Has this run sent a write? The checkpoint marks each operation before its request."""
    return cp is not None and cp.operations_begun > 0


def _open_checkpoint(path: Path, identity: str, restart: bool, dry_run: bool):
    """The checkpoint, read for resuming; its file is only created (or replaced) by a first write."""
    from ..checkpoint import Checkpoint

    if not dry_run:
        return Checkpoint(path, identity, restart=restart)
    try:
        return Checkpoint(path, identity)     # a dry run shows the resumed plan, even with --restart
    except CheckpointMismatch:
        click.echo(f"note: the checkpoint {path} belongs to another file or options; ignored by the dry run",
                   err=True)
        return None


def _print_plan(prepared, est: dict, paths, settings) -> None:
    counts = prepared.counts()
    order = ["create", "update", "unchanged", "conflict", "failed", "skipped", "created", "updated", "pending"]
    shown = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    click.echo(f"live data: {prepared.strategy} ({prepared.reads} read(s))", err=True)
    click.echo(f"plan: {prepared.n_rows} row(s): {shown or 'nothing'}", err=True)
    days = est["days"]
    budget = ("no daily budget" if settings.max_per_day == 0
              else f"{est['remaining_today']} of {settings.max_per_day} left today")
    click.echo(
        f"requests: {est['reads']} read(s) done, {est['saves']} client save(s) + {est['tag_calls']} tag call(s) "
        f"to send; about {_duration(est['seconds'])} at {settings.max_per_minute}/min; {budget}; "
        f"{days} day(s) of budget", err=True)
    click.echo(f"plan file: {paths.plan}", err=True)


def _print_summary(results, paths) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    click.echo("result: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), err=True)
    click.echo(f"results file: {paths.results}", err=True)


def _exit_code(results) -> int:
    bad = {"failed", "conflict", "pending"}
    return EXIT_ROWS_FAILED if any(r.status in bad for r in results) else EXIT_OK


def _stop_error(reason: EtlError, results, paths) -> EtlError:
    left = sum(1 for r in results.values() if r.status == "pending")
    done = sum(1 for r in results.values() if r.status in ("created", "updated"))
    if isinstance(reason, BudgetExhausted):
        when = f" at {format_epoch(reason.frees_at)}" if reason.frees_at else " later"
        return BudgetExhausted(
            f"stopped: the daily request budget is used up. {done} row(s) written, {left} left; "
            f"the budget frees up{when}: run the same command again then (or add --wait)",
            used=reason.used, limit=reason.limit, frees_at=reason.frees_at)
    if isinstance(reason, Interrupted):
        return Interrupted(f"interrupted: {done} row(s) written, {left} left; run the same command again to resume")
    return _stopped_after_writes(reason, paths, f"{done} row(s) written, {left} left; ")


def _stopped_after_writes(reason: EtlError, paths, progress: str = "") -> StoppedAfterWrites:
    """Exit 4, not 1: exit 1 tells the user that nothing was written."""
    return StoppedAfterWrites(f"stopped after the first write: {reason.message}; {progress}"
                              f"results file: {paths.results}; run the same command again to resume")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@contextmanager
def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="client", desc="import", disable=quiet or not sys.stderr.isatty(),
               file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


@contextmanager
def _stop_on_sigint():
    """First Ctrl-C: stop after the request in flight. A second one interrupts at once."""
    flag = {"stop": False}
    previous = None

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        click.echo("\nstopping after the request in flight (Ctrl-C again to abort now)", err=True)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. some test runners)
        previous = None
    try:
        yield lambda: flag["stop"]
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
