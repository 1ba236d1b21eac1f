"""``intakeq-etl validate FILE``: check a clients file against the schema, without any API call."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ..codec import ERROR, Problem
from ..errors import EXIT_OK, EtlError, MappingError, ValidationFailed
from . import options
from .output import exit_status_and_error, print_json_line

EXAMPLES = 5


def _where(p: Problem) -> str:
    parts = []
    if p.row is not None:
        parts.append(f"row {p.row}")
    if p.column:
        parts.append(p.column)
    return ", ".join(parts) or "file"


def summary_lines(path, table, problems: list[Problem], what: str) -> list[str]:
    """The short summary printed by ``validate`` (no cell values: they are client data)."""
    from ..importer import checks  # here, not at the top: --help stays quick (no pandas)

    errors = [p for p in problems if p.severity == ERROR]
    warnings = [p for p in problems if p.severity != ERROR]
    lines = [f"{Path(path).name}: {len(table.frame):,} {what} rows, "
             f"{len(table.frame.columns)} columns ({table.format})"]
    if not errors:
        lines.append("valid" + (f", with {len(warnings)} warning(s)" if warnings else ""))
    else:
        bad_rows = len({p.row for p in errors if p.row is not None})
        lines.append(f"INVALID: {len(errors)} error(s) in {bad_rows} row(s)")
        lines.append("errors by check:")
        for check, n in Counter(p.check for p in errors).most_common():
            lines.append(f"  {check:<28} {n}")
        lines.append("first errors:")
        for p in errors[:EXAMPLES]:
            hint = f" ({p.hint})" if p.hint else ""
            lines.append(f"  {_where(p)}: {p.message} [{p.check}]{hint}")
    if warnings:
        lines.append("warnings by check:")
        for check, n in Counter(p.check for p in warnings).most_common():
            lines.append(f"  {check:<28} {n}")
        lines += ["  " + line for line in checks.warning_lines(warnings)]
    return lines


@click.command("validate", epilog=options.examples(
    "intakeq-etl validate exports/today/clients.csv",
    "intakeq-etl validate edited.xlsx --report problems.csv",
    "intakeq-etl validate clients.csv --date-format %d/%m/%Y --quiet --json",
    "intakeq-etl validate old-system.csv --map old-system.map.toml",
))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every problem (row, column, value, check, message, hint) to this CSV.")
@options.file_format(help="Input format  [default: from the file's extension]")
@options.encoding(help="Text encoding of a CSV  [default: utf-8, BOM accepted]")
@options.date_format(help="How non-ISO dates are written, in strftime codes (e.g. %d/%m/%Y).  "
                          "[default: yyyy-MM-dd; M/D/YYYY and D.M.YYYY also read]")
@options.timezone(default="UTC", help="The practice's timezone (IANA name), used for dates of birth.")
@options.no_formula_guard(help="Do not strip the leading ' that exports put before formula-like cells.")
@options.sheet()
@click.option("--base", help="The export FILE came from (an export folder or id; 'none': no base), to check "
                             "its edits as import will  [default: the id inside FILE (XLSX, Parquet), else "
                             "the manifest beside FILE]")
@options.mapping()
@options.ignore_column()
@options.quiet()
@options.as_json(help="Print one machine-readable summary line on stdout (the summary moves to stderr).")
@click.pass_context
def validate(ctx, file, report, fmt, encoding, date_format, timezone, no_formula_guard, sheet, base, mapping,
             ignore_columns, quiet, as_json):
    """Check FILE (CSV, Parquet or XLSX) against the clients schema; no API call, no key.

    Prints a summary and exits 0 when the file is valid (warnings allowed), 1 when it is
    not or cannot be read. --report writes every problem with its spreadsheet row number
    (the header is row 1).
    """
    from ..importer.mapping import load_mapping
    from ..importer.reports import write_report  # here, not at the top: --help stays quick
    from ..validate import account_labels, find_base_frame, validate_file

    guard_on = not no_formula_guard
    checked = None              # (table, problems, what) once the file was read
    written: list[Path] = []
    try:
        found = {}

        def base_of(frame):
            found["base"] = find_base_frame(file, base, ctx.obj.state_dir, frame, format=fmt)
            return found["base"]

        try:
            table, problems, what = validate_file(
                file, format=fmt, encoding=encoding, date_format=date_format, tz=timezone, formula_guard=guard_on,
                base=base_of, sheet=sheet, mapping=load_mapping(mapping) if mapping else None,
                ignore_columns=ignore_columns, labels=account_labels(ctx.obj.state_dir))
        except MappingError as exc:
            if report is not None and exc.problems:
                write_report(exc.problems, report, formula_guard=guard_on)
                written.append(report)
                raise MappingError(f"{exc.message}\nreport: {report}", exc.problems) from None
            raise
        checked = (table, problems, what)
        if not quiet:       # how the file was read: notes, not the verdict
            if table.sheet is not None:
                click.echo(f"sheet: {table.sheet}", err=as_json)
            for note in table.notes:
                click.echo("note: " + note, err=as_json)
            if "base" in found:
                click.echo(found["base"].how, err=as_json)
        for line in summary_lines(file, table, problems, what):
            click.echo(line, err=as_json)        # with --json, stdout holds the JSON line only
        if report is not None:
            write_report(problems, report, formula_guard=guard_on)
            written.append(report)
            click.echo(f"report: {report} ({len(problems)} problem(s))", err=as_json)
        n_errors = sum(1 for p in problems if p.severity == ERROR)
        if n_errors:
            raise ValidationFailed(f"{file.name} is not valid: {n_errors} error(s)"
                                   + ("" if report else "; pass --report PATH for the full list"),
                                   problems)
    except (EtlError, KeyboardInterrupt) as exc:
        if as_json:
            print_json_line(json_summary(file, checked, written, error=exc))
        raise
    if as_json:
        print_json_line(json_summary(file, checked, written))


def json_summary(path, checked: tuple | None, written: list[Path], *, error: BaseException | None = None) -> dict:
    """The one-line --json summary: counts by check, never cell values (they are client data)."""
    table, problems, what = checked or (None, [], None)
    errors = [p for p in problems if p.severity == ERROR]
    warnings = [p for p in problems if p.severity != ERROR]
    status, message = exit_status_and_error(error) if error is not None else (EXIT_OK, None)
    return {
        "file": str(path),
        "table": what,
        "rows": len(table.frame) if table is not None else None,
        "columns": len(table.frame.columns) if table is not None else None,
        "format": table.format if table is not None else None,
        "valid": table is not None and not errors,
        "errors": len(errors),
        "warnings": len(warnings),
        "errors_by_check": dict(Counter(p.check for p in errors).most_common()),
        "warnings_by_check": dict(Counter(p.check for p in warnings).most_common()),
        "requests": 0,
        "files": [str(p) for p in written],
        "exit_status": status,
        "error": message,
    }
