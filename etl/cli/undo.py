"""``intakeq-etl undo RUN``: take back exactly what one import (or undo) changed."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import EtlError
from . import options, ui
from .import_ import _count_statuses, _report_run, check_side_files, run_guarded
from .output import exit_status_and_error, print_json_line


@click.command("undo", short_help="Take back what one import changed, keeping what staff did since.",
               epilog=options.examples(
                   "intakeq-etl undo 20261201T211530-3f9a --dry-run",
                   "intakeq-etl undo exports/today/clients.results.csv --yes",
                   "intakeq-etl undo 20261201T211530-3f9a --prefer undo --wait --yes",
               ))
@click.argument("run")
@click.option("--dry-run", is_flag=True, help="Make the plan (reads only), write the plan file, send no write.")
@click.option("--prefer", type=click.Choice(["undo"]), default=None,
              help="On a conflict (the field changed in IntakeQ since the run), write the value from "
                   "before the run anyway.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Resumable journal  [default: beside the run's input file, <name>.undo-RUN.checkpoint.sqlite]")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row results CSV  [default: beside the run's input file, <name>.undo-RUN.results.csv]")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-change plan CSV  [default: beside the run's input file, <name>.undo-RUN.plan.csv]")
@click.option("--wait", is_flag=True, help="When the daily budget runs out, sleep until it frees and go on.")
@click.option("--no-wait-for-others", is_flag=True,
              help="When another run of the account holds the budget, or another undo of this run is "
                   "running, exit 75 at once having sent nothing (default: wait for it).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (only asked on a terminal).")
@options.quiet()
@options.as_json(help="Print one machine-readable summary line on stdout (messages stay on stderr).")
@click.pass_context
def undo(ctx, run, dry_run, prefer, checkpoint, results, plan_path, wait, no_wait_for_others, yes, quiet, as_json):
    """Take back what the import RUN changed (RUN: a run id from `intakeq-etl history`,
    or the path of that import's results file).

    Each field the run saved is set back to its value before the run if IntakeQ still
    holds what the run wrote; a field changed since (by staff, or a later import) is kept
    and reported as a conflict (exit 4; --prefer undo writes it anyway). Tags it added are
    removed and tags it removed added back. Clients it created cannot be deleted through
    the API: they are listed, to delete or archive in IntakeQ by hand.

    The undo is an import in every other way: full-profile saves, plan file, confirmation,
    checkpoint (run the same command again to resume), --wait, results file, and a run id
    of its own (an undo can be undone).

    Exit codes: 0 everything taken back (or already back); 1 an error, nothing written; 4
    fields kept as conflicts, rows failed or pending, or an error stopped it after its first
    write; 75 the daily budget ran out (run again later, or --wait); 130 interrupted.
    """
    from ..importer import undo as U

    app = ctx.obj
    if quiet:
        ui.hush_notes()
    target = None
    outcome = None
    paths = None
    try:
        settings = app.settings()
        settings.require_key()
        target = U.resolve_run(settings.account_dir, run)
        paths = U.undo_paths(target, checkpoint=checkpoint, results=results, plan=plan_path)
        check_side_files(Path(target.file) if target.file else paths.results.with_suffix(".input"), paths)
        asked_results = paths.results
        outcome = run_guarded(
            ctx, paths, U.undo_identity(target),
            lambda client, settings, cp, hooks: U.undo_import(client, settings, target, paths, checkpoint=cp,
                                                               prefer_undo=prefer == "undo", dry_run=dry_run,
                                                               wait=wait, hooks=hooks),
            dry_run=dry_run, restart=False, quiet=quiet, ask=sys.stdin.isatty() and not yes,
            wait_for_others=not no_wait_for_others, fresh_when_finished=True)
        if not dry_run:
            line = U.manual_line(outcome.results.values())
            if line is not None:
                ui.say(line)
        code = _report_run(outcome, paths, dry_run, moved=paths.results != asked_results,
                           closing=U.nothing_to_undo(outcome.results.values(), target.run_id))
    except (EtlError, KeyboardInterrupt) as exc:
        if as_json:
            print_json_line(_json_summary(target, paths, outcome, app, dry_run=dry_run, error=exc))
        raise
    if as_json:
        print_json_line(_json_summary(target, paths, outcome, app, dry_run=dry_run, status=code))
    ctx.exit(code)


def _json_summary(target, paths, outcome, app, *, dry_run: bool, status: int | None = None,
                  error: BaseException | None = None) -> dict:
    """The one-line --json summary (counts only: no client data, no key)."""
    message = None
    if error is not None:
        status, message = exit_status_and_error(error)
    prepared = outcome.prepared if outcome is not None else None
    return {
        "run": outcome.run_id if outcome is not None else None,
        "undoes": target.run_id if target is not None else None,
        "dry_run": dry_run,
        "plan": prepared.counts() if prepared is not None else None,
        "results": _count_statuses(outcome.results.values()) if outcome is not None and not dry_run else None,
        "requests": app.requests_sent,
        "files": [str(p) for p in paths.written] if paths is not None else [],
        "exit_status": status,
        "error": message,
    }
