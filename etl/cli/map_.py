"""``intakeq-etl map SOURCE``: propose a mapping for another system's file (see
``etl.importer.proposal``); reads local files only when an export snapshot knows the
account's custom fields, else (with a key or ``--sandbox``) one page of clients."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import PathError
from . import options, ui


@click.command("map", epilog=options.examples(
    "intakeq-etl map old-system-export.csv",
    "intakeq-etl map old-system-export.xlsx --out migration.map.toml",
    "intakeq-etl --sandbox map old-system-export.csv --out -",
))
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the mapping ('-': stdout)  [default: beside SOURCE, its name + .map.toml]")
@options.file_format(help="Input format  [default: from the extension]")
@options.encoding(help="CSV text encoding  [default: utf-8, BOM accepted]")
@options.sheet(help="The XLSX sheet to read  [default: the only one with data]")
@click.pass_context
def map_(ctx, source, out, fmt, encoding, sheet):
    """Propose a mapping (TOML) for SOURCE, another system's export, to start a migration from.

    It reads SOURCE's headers and values and writes a commented mapping: each header
    matched to an IntakeQ field or a custom field's label (with why), date formats
    guessed from the values (ambiguous ones flagged), [values] tables for Gender,
    MaritalStatus and BillingType, and every column it could not place under [ignore]
    with a TODO. Edit it, then `validate SOURCE --map MAPPING` and `import SOURCE --map
    MAPPING --dry-run`. An existing file is never overwritten.

    The account's custom fields come from the newest export snapshot (no request); with
    no snapshot, with a key or --sandbox, from one page of clients (one request).
    """
    from ..codec import read_table
    from ..importer.mapping import ALL_TEXT, text_cells
    from ..importer.proposal import propose
    from ..state.files import write_text_atomic

    out = _out_path(source, out)
    table = read_table(source, format=fmt, encoding=encoding, sheet=sheet, kinds=ALL_TEXT)
    columns = {c: list(text_cells(table.frame[c])) for c in table.frame.columns}
    labels, labels_from = _labels(ctx.obj)
    text, summary = propose(list(table.frame.columns), columns, labels, source_name=source.name,
                            labels_from=labels_from)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_text_atomic(out, text)
    ui.say(_summary_line("stdout" if out is None else str(out), summary))
    ui.say(f"custom fields: {labels_from}")
    shown = out if out is not None else "MAPPING.toml"
    ui.say(f"next: edit it, then intakeq-etl validate {source} --map {shown}")


def _summary_line(where: str, summary: dict) -> str:
    parts = [f"mapping: {where}: {summary['mapped']} of {summary['columns']} column(s) placed"]
    if summary["ignored"]:
        parts.append(f"{len(summary['ignored'])} under [ignore] ({', '.join(summary['ignored'])})")
    if summary["dates"]:
        parts.append("dates: " + ", ".join(f"{c} {f or '?'}" for c, f in summary["dates"].items()))
    if summary["values"]:
        parts.append("[values] for " + ", ".join(summary["values"]))
    parts.append(f"{summary['todo']} TODO(s) to check")
    return "; ".join(parts)


def _out_path(source: Path, out: Path | None) -> Path | None:
    if out is not None and str(out) == "-":
        return None
    out = out or source.with_name(source.stem + ".map.toml")
    if out.exists() or out.is_symlink():
        raise PathError(f"{out} exists: a mapping is never overwritten (it may hold your edits); pass --out "
                        "another path, or delete it first")
    if out.resolve() == source.resolve():
        raise PathError(f"--out {out} is the source file itself")
    return out


def _labels(app) -> tuple[dict | None, str]:
    """The account's custom fields (FieldId -> label) and where they came from."""
    from ..importer.mapping import newest_labels
    from ..state.snapshots import SnapshotStore

    settings = app.settings()
    if settings.api_key:
        labels = newest_labels([SnapshotStore(settings)])
    else:
        from ..validate import account_labels

        labels = account_labels(app.state_dir)
    if labels is not None:
        return labels, _listed(labels, "from the newest export snapshot (no request)")
    if not settings.api_key:
        return None, ("unknown (no export snapshot in the state dir, and no key): labels are not matched; "
                      "write custom.<FieldId> targets, or export first")
    from ..codec import custom_field_labels

    client = app.client()
    with client.hold_budget(1, what="map", keeps_progress=False):
        page = next(iter(client.iter_pages()), [])
    labels = custom_field_labels(page)
    return labels, _listed(labels, "from one page of clients (1 request; no export snapshot yet)")


def _listed(labels: dict, how: str) -> str:
    names = ", ".join(f"{label or '(no label)'} = custom.{fid}" for fid, label in sorted(labels.items()))
    return f"{how}: {names or 'none'}"
