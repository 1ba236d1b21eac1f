"""``intakeq-etl history``: the account's imports and undos, newest first. Sends no request."""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import options

COUNT_ORDER = ("created", "updated", "tagged", "conflict", "failed", "pending", "manual")


@click.command("history", epilog=options.examples(
    "intakeq-etl history",
    "intakeq-etl history --json",
    "intakeq-etl --sandbox history",
))
@options.as_json(help="Print the runs as one JSON array.")
@click.pass_obj
def history(app, as_json: bool):
    """List this account's imports and undos, newest first: run id, kind (and the run an
    undo took back), when, input file, counts (created/updated/tagged/failed/pending), and
    whether the run was undone.

    Reads the history in the state dir only (no API call). A run id is what
    `intakeq-etl undo RUN` takes.
    """
    from ..importer.history import History, day

    settings = app.settings()
    settings.require_key()
    with History(settings.account_dir) as store:
        runs = store.runs()
    if as_json:
        click.echo(json.dumps([r.as_json() for r in runs], indent=2))
        return
    if not runs:
        click.echo("no imports yet in this account's history")
        return
    click.echo(f"{'run':<22} {'kind':<30} {'started':<21} {'file':<24} counts")
    for r in runs:
        kind = f"undo of {r.undoes}" if r.kind == "undo" else r.kind
        counts = ", ".join(f"{r.counts[k]} {k}" for k in COUNT_ORDER if r.counts.get(k)) or "nothing written"
        undone = f"; undone by {r.undone_by}" if r.undone_by else ""
        name = Path(r.file).name if r.file else ""
        click.echo(f"{r.run_id:<22} {kind:<30} {day(r.started):<21} {name:<24} {counts}{undone}")
