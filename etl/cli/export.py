"""``intakeq-etl export``: parse options, call :func:`etl.export.export_clients`, report."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import EXIT_OK, EtlError, ExportIncomplete
from ..export.hooks import ExportHooks
from . import options, ui
from .output import exit_status_and_error, print_json_line


class _CliHooks(ExportHooks):
    """The export's voice on the terminal: messages on stderr, a tqdm bar at a terminal.
    With --quiet only warnings (and, from the command, errors and the closing line)."""

    def __init__(self, client, *, quiet: bool):
        self.client = client
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet or message.startswith("warning:"):
            ui.say(message)

    def progress(self, total, *, desc, unit):
        return ui.progress(total, quiet=self.quiet, desc=desc, unit=unit,
                           estimate=self.client.estimate_seconds)


def _summary(result=None, *, status: int, error: str | None = None, out=None) -> dict:
    """The one-line --json summary (no client data, no key)."""
    if result is None:
        return {"export_id": None, "mode": None, "rows": None, "requests": None, "files": [],
                "out": str(out) if out else None, "status": "failed", "exit_status": status,
                "error": error}
    manifest = result.manifest
    return {
        "export_id": manifest["export_id"],
        "mode": manifest["mode"],
        "mode_reason": manifest["mode_reason"],
        "rows": manifest["rows"],
        "requests": manifest["requests"],
        "files": [f["name"] for f in manifest["files"]] + (["manifest.json"] if result.out else []),
        "out": str(result.out) if result.out else None,
        "status": manifest["status"],
        "warnings": manifest["warnings_total"],
        "diagnoses": manifest.get("diagnoses"),
        "exit_status": status,
        "error": error,
    }


@click.command("export", epilog=options.examples(
    "intakeq-etl --sandbox export --out exports/today",
    "intakeq-etl export --out exports/nightly --incremental --include-deleted --quiet --json",
    "intakeq-etl export --out exports/xlsx --format xlsx --columns FirstName,LastName,Email",
))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write clients.<ext>, manifest.json (and the others) to; "
                   "created owner-only (0700) when missing; an existing folder keeps its mode.")
@options.file_format(default="csv", help="File format.")
@click.option("--incremental", is_flag=True,
              help="Fetch only what changed since the last export's snapshot (falls back to a "
                   "full export, and says why, when there is none or it is over 9 days old).")
@click.option("--full-refresh", is_flag=True,
              help="With --incremental: do a full export anyway (e.g. weekly).")
@click.option("--include-deleted", is_flag=True,
              help="Also write deleted_clients.<ext> (IntakeQ keeps deleted clients 10 days).")
@click.option("--include-diagnoses", is_flag=True,
              help="Also write diagnoses.<ext>: one request per client, resumed across days "
                   "when the daily budget runs out (exit 75).")
@click.option("--columns", default=None, metavar="A,B,...",
              help="Export only these columns (ClientId is always included).")
@click.option("--search", default=None, help="The API's search filter (name, email or ClientId).")
@click.option("--created-since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              metavar="YYYY-MM-DD", help="Only clients created on or after this date.")
@click.option("--updated-since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              metavar="YYYY-MM-DD", help="Only clients updated on or after this date.")
@click.option("--custom", multiple=True, metavar="FIELD=VALUE",
              help="Custom-field filter (FieldId=value); repeatable.")
@click.option("--external-id", default=None, help="Only the client with this ExternalClientId.")
@options.timezone(default="UTC", help="The practice's timezone, for dates of birth (IANA name).")
@options.no_formula_guard(help="Do not prefix formula-like cells (starting with =, +, -, @, tab, CR or ') "
                               "with ' in CSV/XLSX.")
@click.option("--no-wait-for-others", is_flag=True,
              help="When another run of the account holds the budget this export needs, exit 75 at "
                   "once having sent nothing (default: wait for it, with a note).")
@options.quiet()
@options.as_json(help="Print one machine-readable summary line on stdout.")
@click.pass_context
def export(ctx, out, fmt, incremental, full_refresh, include_deleted, include_diagnoses,
           columns, search, created_since, updated_since, custom, external_id, timezone,
           no_formula_guard, no_wait_for_others, quiet, as_json):
    """Export all clients to CSV, Parquet or XLSX (full or incremental).

    Writes DIR/clients.<ext> and DIR/manifest.json (last) atomically and owner-only,
    and keeps a snapshot in the state dir for the next --incremental run and for
    the import. Exit 0 done; 1 error; 75 the daily budget ran out (nothing partial
    written; run again when the message says; or, with --no-wait-for-others, another
    run of the account holds the budget: nothing was sent).
    """
    from ..export import ExportOptions, export_clients

    app = ctx.obj
    if quiet:
        ui.hush_notes()

    try:
        client = app.client(wait_for_others=not no_wait_for_others,
                            on_wait=ui.wait_countdown(quiet=quiet),
                            on_throttle=ui.throttle_countdown(quiet=quiet))
        hooks = _CliHooks(client, quiet=quiet)
        options = ExportOptions(
            out=out, format=fmt, incremental=incremental, full_refresh=full_refresh,
            include_deleted=include_deleted, include_diagnoses=include_diagnoses,
            columns=columns, search=search, created_since=created_since,
            updated_since=updated_since, custom=list(custom), external_id=external_id,
            timezone=timezone, formula_guard=not no_formula_guard)
        result = export_clients(client, options, hooks=hooks)
    except (EtlError, KeyboardInterrupt) as exc:   # a scheduler's log gets its line either way
        if as_json:
            code, message = exit_status_and_error(exc)
            partial = exc.result if isinstance(exc, ExportIncomplete) else None
            print_json_line(_summary(partial, status=code, error=message, out=out))
        raise
    manifest = result.manifest
    rows = manifest["rows"]
    extra = "".join(f", {n} {k.replace('_', ' ')}" for k, n in rows.items() if k != "clients")
    ui.say(f"export {manifest['export_id']}: {manifest['mode']}, {rows['clients']} clients{extra}, "
              f"{manifest['requests']} request(s) → {out}")
    if as_json:
        print_json_line(_summary(result, status=EXIT_OK))
