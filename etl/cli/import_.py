"""``intakeq-etl import FILE``: diff against the live account, show the plan, apply only what changed."""
from __future__ import annotations

import contextlib
import signal
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from ..clock import format_duration
from ..errors import EtlError, PathError, StorageError, storage_reason
from ..state.files import first_clash, folder_is_writable, make_private_dirs, refuse_symlink
from . import AFTER_WRITES, options, ui
from .output import exit_status_and_error, print_json_line


@click.command("import", short_help="Import a file: diff, plan, apply only what changed.",
               epilog=options.examples(
                   "intakeq-etl import exports/today/clients.csv --dry-run",
                   "intakeq-etl import exports/today/clients.csv --yes",
                   "intakeq-etl import edited.xlsx --base exports/today --tags replace",
                   "intakeq-etl import old-system.csv --map old-system.map.toml --dry-run",
               ))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Make the plan (reads only), write the plan file, send no write.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Resumable journal  [default: beside FILE, its name without extension + .checkpoint.sqlite]")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row results CSV  [default: beside FILE, .results.csv]")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-change plan CSV; the review workbook and page go beside it, named after it "
                   "(.xlsx, .html)  [default: beside FILE, .plan.csv]")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Validation report CSV  [default: beside FILE, .report.csv]")
@click.option("--no-review", is_flag=True,
              help="Do not write the review workbook and page beside the plan (.plan.xlsx, .plan.html): "
                   "for very large plans.")
@click.option("--base", help="The export FILE came from: an export folder or an export id; "
                             "'none' for a two-way diff against live only  "
                             "[default: the id inside FILE (XLSX, Parquet), else the manifest beside "
                             "FILE, else the snapshot FILE agrees with]")
@click.option("--tags", type=click.Choice(["merge", "replace"]), default="merge", show_default=True,
              help="merge: add the cell's missing tags; replace: also remove tags deleted from the cell.")
@click.option("--blank", type=click.Choice(["keep", "clear"]), default="keep", show_default=True,
              help="What an empty cell means: keep the current value, or clear it.")
@click.option("--prefer", type=click.Choice(["file"]), default=None,
              help="On a conflict (same field changed in the file and in IntakeQ), take the file's value.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows; write invalid ones to a rejects file.")
@click.option("--wait", is_flag=True, help="When the daily budget runs out, sleep until it frees and go on.")
@click.option("--no-wait-for-others", is_flag=True,
              help="When another run of the account holds the budget, or another import of this file is "
                   "running, exit 75 at once having sent nothing (default: wait for it).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (only asked on a terminal).")
@click.option("--restart", is_flag=True, help="Discard the checkpoint and start over.")
@options.timezone(help="The practice's timezone, for dates of birth  [default: the export's, else UTC]")
@options.file_format(help="Input format  [default: from the extension]")
@options.encoding(help="CSV text encoding  [default: utf-8, BOM accepted]")
@options.date_format(help="strftime format of date cells, e.g. %d/%m/%Y")
@options.sheet()
@options.mapping()
@options.ignore_column()
@options.no_formula_guard(help="Keep a leading ' on cells (the file was exported without the guard).")
@options.quiet()
@options.as_json(help="Print one machine-readable summary line on stdout (messages stay on stderr).")
@click.pass_context
def import_(ctx, file, dry_run, checkpoint, results, plan_path, report, no_review, base, tags, blank, prefer,
            skip_invalid, wait, no_wait_for_others, yes, restart, timezone, fmt, encoding, date_format, sheet,
            mapping, ignore_columns, no_formula_guard, quiet, as_json):
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
    again); 75 the daily budget ran out (run again later, or use --wait), or, with
    --no-wait-for-others, another run holds it or another import of FILE is running; 130
    interrupted (the first Ctrl-C stops within a second, even during a wait, after the
    request in flight; the results file is written).
    """
    from .. import importer as I

    app = ctx.obj
    if quiet:
        ui.hush_notes()
    opts = I.ImportOptions(tags=tags, blank=blank, prefer_file=prefer == "file", skip_invalid=skip_invalid,
                           base=base, timezone=timezone, format=fmt, encoding=encoding,
                           date_format=date_format, formula_guard=not no_formula_guard, sheet=sheet,
                           mapping=mapping, ignore_columns=tuple(ignore_columns))
    paths = I.Paths.beside(file, checkpoint=checkpoint, results=results, plan=plan_path, report=report,
                           review=not no_review)
    check_side_files(file, paths, mapping=mapping)      # before anything is written or sent
    asked_results = paths.results
    run = None
    try:
        run = _run(ctx, file, opts, paths, dry_run=dry_run, restart=restart, wait=wait,
                   quiet=quiet, ask=sys.stdin.isatty() and not yes, wait_for_others=not no_wait_for_others)
        # Results written elsewhere (a full disk beside the input): a script would miss them.
        code = _report_run(run, paths, dry_run, moved=paths.results != asked_results)
    except (EtlError, KeyboardInterrupt) as exc:   # a scheduler's log gets its line either way
        if as_json:
            print_json_line(_json_summary(file, paths, run, app, dry_run=dry_run, error=exc, mapping=mapping))
        raise
    if as_json:
        print_json_line(_json_summary(file, paths, run, app, dry_run=dry_run, status=code, mapping=mapping))
    ctx.exit(code)


def _run(ctx, file: Path, opts, paths, *, dry_run: bool, restart: bool, wait: bool, quiet: bool, ask: bool,
         wait_for_others: bool = True):
    """The import itself (:func:`run_guarded`)."""
    from .. import importer as I

    return run_guarded(
        ctx, paths, I.plan_identity(file, opts),
        lambda client, settings, cp, hooks: I.run_import(client, settings, file, opts, paths, checkpoint=cp,
                                                         dry_run=dry_run, wait=wait, hooks=hooks),
        dry_run=dry_run, restart=restart, quiet=quiet, ask=ask, wait_for_others=wait_for_others)


def run_guarded(ctx, paths, identity: str, run, *, dry_run: bool, restart: bool, quiet: bool, ask: bool,
                wait_for_others: bool = True, fresh_when_finished: bool = False):
    """``run(client, settings, checkpoint, hooks)`` (an import or an undo), with Ctrl-C turned
    into a stop request on the client's clock, and a failing disk or database turned into
    one line (exit 1 before any write, else 4).

    The checkpoint's lock is held from before the checkpoint is opened until it is closed:
    a second run with the same checkpoint waits for this one (or refuses), never writes beside it."""
    from .. import importer as I
    from ..state.lock import checkpoint_lock

    app = ctx.obj
    settings = app.settings()
    settings.require_key()
    cp = None
    with contextlib.ExitStack() as held:
        try:
            client = app.client(wait_for_others=wait_for_others,
                                on_wait=ui.wait_countdown(quiet=quiet),
                                on_throttle=ui.throttle_countdown(quiet=quiet))
            held.enter_context(checkpoint_lock(paths.checkpoint, clock=client.clock, wait=wait_for_others))
            hooks = _cli_hooks(paths, settings, client, quiet=quiet, ask=ask)
            cp = I.open_checkpoint(paths.checkpoint, identity, restart=restart, dry_run=dry_run, note=hooks.note,
                                   fresh_when_finished=fresh_when_finished)
            with _stop_on_sigint(client.clock):
                result = run(client, settings, cp, hooks)
        except (OSError, sqlite3.Error) as exc:
            stop = _storage_stop(exc, app)
            if stop is not None:
                raise stop from None
            if _wrote(cp):
                ctx.meta[AFTER_WRITES] = True       # a bug: the group logs it, and exits 4, not 1
            raise
        except EtlError:       # an error after the first write is StoppedAfterWrites (exit 4) already
            raise
        except Exception:
            if _wrote(cp):
                ctx.meta[AFTER_WRITES] = True       # a bug: the group logs it, and exits 4, not 1
            raise
        finally:
            if cp is not None:
                cp.close()
    return result


def _report_run(run, paths, dry_run: bool, *, moved: bool = False, closing: str | None = None) -> int:
    """The closing lines on stderr; the exit code, or the error of a stopped run (75, 130).
    ``closing``: said instead of the import's line when nothing was written."""
    line = run.closing_line()
    if line is not None and closing is not None and not dry_run:
        line = closing
    if line is not None:
        ui.say(line)
    if dry_run:
        return run.exit_status()
    _print_summary(run.results.values(), paths)
    stop = run.stop_error(paths)
    if stop is not None:
        raise stop
    return run.exit_status(results_moved=moved)


def _json_summary(file: Path, paths, run, app, *, dry_run: bool, status: int | None = None,
                  error: BaseException | None = None, mapping: Path | None = None) -> dict:
    """The one-line --json summary (counts only: no client data, no key)."""
    message = None
    if error is not None:
        status, message = exit_status_and_error(error)
    prepared = run.prepared if run is not None else None
    return {
        "file": str(file),
        "mapping": str(mapping) if mapping else None,
        "run": run.run_id if run is not None else None,
        "dry_run": dry_run,
        "base": prepared.base.export_id if prepared is not None else None,
        "plan": prepared.counts() if prepared is not None else None,
        "results": _count_statuses(run.results.values()) if run is not None and not dry_run else None,
        "requests": app.requests_sent,
        "files": [str(p) for p in paths.written],
        "exit_status": status,
        "error": message,
    }


SIDE_FILE_LABELS = {"checkpoint": "--checkpoint", "results": "--results", "plan": "--plan",
                    "report": "--report", "rejects": "the rejects file"}


def check_side_files(source: Path, paths, *, mapping: str | None = None) -> None:
    """Refuse side files that would destroy something, before anything is written or sent.

    Seen: ``--results`` naming the edited spreadsheet replaced it with the results. So no
    side file may be the input file or another side file (resolved paths and inodes are
    compared: links and ``..`` do not hide a clash), none may be a symbolic link, and each
    folder must be writable (missing folders are then created 0700).
    """
    named = {SIDE_FILE_LABELS[name]: Path(getattr(paths, name)) for name in SIDE_FILE_LABELS}
    named.update(paths.review_files)
    clash = first_clash({"the input file": source, **named})
    if clash is None and mapping:
        clash = first_clash({"the mapping": Path(mapping), **named})
    if clash is not None:
        first, second, path = clash
        read = {"the input file": "input", "the mapping": "mapping"}
        what = (f"{second} {path} is the {read[first]} file itself: writing it would replace your file"
                if first in read else
                f"{first} and {second} are the same file ({path}): one would overwrite the other")
        raise PathError(f"{what}; choose another path. Nothing was written or sent")
    for label, path in named.items():
        refuse_symlink(path, label)
    for label, path in named.items():
        folder = _nearest_existing(path.parent)
        if not folder_is_writable(folder):
            raise PathError(
                f"cannot write {label} {path}: the folder {folder} is not writable; pass --checkpoint, "
                "--results, --plan and --report in a writable folder. Nothing was written or sent")
    for path in named.values():
        make_private_dirs(path.parent)


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _storage_stop(exc: BaseException, app) -> StorageError | None:
    """The disk or SQLite failed under the import: one line, saying whether writes were
    sent (exit 4: run again to resume) or not (exit 1). None when it is not the disk."""
    reason = storage_reason(exc)
    if reason is None:
        return None
    sent = app.client().writes_sent if app.has_client else 0
    if not sent:
        return StorageError(f"cannot write: {reason}. No write was sent to IntakeQ; free space or "
                            "fix the folder, then run the same command again")
    return StorageError(
        f"stopped: cannot write: {reason}. {sent} write(s) had been sent to IntakeQ; free space or "
        "fix the folder, then run the same command again: the checkpoint resumes, and a row whose "
        "answer was not recorded is checked against IntakeQ, not sent twice", after_writes=True)


def _cli_hooks(paths, settings, client, *, quiet: bool, ask: bool):
    from ..importer import Hooks

    class CliHooks(Hooks):
        """The import's voice on the terminal: messages on stderr, the progress bar, the prompt."""

        show_values = sys.stderr.isatty()      # a person reads it, not a log file

        def say(self, message: str) -> None:
            ui.say(message)

        def note(self, message: str) -> None:
            if not quiet:
                ui.note(message)

        def started(self, run_id: str) -> None:
            ui.say(f"run: {run_id}")

        def planned(self, prepared, est: dict) -> None:
            _print_plan(prepared, est, paths, settings)

        def confirm(self, est: dict) -> bool:
            return not ask or click.confirm(f"Send {est['writes']} write(s) to IntakeQ?", err=True)

        def progress(self, total, *, desc: str, unit: str):
            return ui.progress(total, quiet=quiet, unit=unit, desc=desc, estimate=client.estimate_seconds)

    return CliHooks()


def _wrote(cp) -> bool:
    """Has this run sent a write? The checkpoint marks each operation before its request."""
    return cp is not None and cp.operations_begun > 0


def _print_plan(prepared, est: dict, paths, settings) -> None:
    from ..importer.review import changes_by_field

    counts = prepared.counts()
    order = ["create", "update", "unchanged", "conflict", "failed", "skipped", "created", "updated", "pending",
             "manual"]
    shown = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    ui.say(prepared.live_line())
    ui.say(f"plan: {prepared.n_rows} row(s): {shown or 'nothing'}")
    days = est["days"]
    budget = ("no daily budget" if settings.max_per_day == 0
              else f"{est['remaining_today']} of {settings.max_per_day} left today")
    ui.say(
        f"requests: {est['reads']} read(s) done, {est['saves']} client save(s) + {est['tag_calls']} tag call(s) "
        f"to send; about {format_duration(est['seconds'])} at {settings.max_per_minute}/min; {budget}; "
        f"{days} day(s) of budget")
    ui.say(f"changes by field: {changes_by_field(prepared.plans)}")
    ui.say(f"plan file: {paths.plan}")
    review = [str(path) for path in paths.review_files.values() if path in paths.written]
    if review:
        ui.say(f"review: {' and '.join(review)}")


def _count_statuses(results) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return dict(sorted(counts.items()))


def _print_summary(results, paths) -> None:
    counts = _count_statuses(results)
    ui.say("result: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    ui.say(f"results file: {paths.results}")


@contextmanager
def _stop_on_sigint(clock):
    """First Ctrl-C: a stop request on ``clock``. Every wait goes through the clock and every
    request asks it first, so the run stops within a second, after the request in flight,
    with its results written. A second Ctrl-C interrupts at once."""
    previous = None

    def handler(signum, frame):
        if clock.stop_requested():
            raise KeyboardInterrupt
        clock.request_stop()
        ui.say("\nstopping after the request in flight (Ctrl-C again to abort now)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. some test runners)
        previous = None
    try:
        yield handler
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
