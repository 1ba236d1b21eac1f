"""The options several commands share, as click decorators: one place for each option's
name, type, flags and Python parameter name.

Each command applies the ones it has, with the help text that says what the option means
for it (``--format`` is the output of ``export`` and the input of ``import`` and
``validate``)::

    @options.file_format(help="Input format  [default: from the extension]")
    @options.quiet()
    def import_(ctx, ..., fmt, ..., quiet): ...

The parameters are always named ``fmt``, ``encoding``, ``date_format``, ``timezone``,
``no_formula_guard``, ``sheet``, ``quiet``, ``as_json``, ``mapping`` and ``ignore_columns``.
"""
from __future__ import annotations

import click

from ..codec.formats import FORMATS


def examples(*commands: str) -> str:
    """A command's ``epilog=``: the examples its ``--help`` ends with (kept as written: the
    ``\\b`` stops click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join("  " + command for command in commands)


SHEET_HELP = "The XLSX sheet to read  [default: the one whose header has ClientId]"


def file_format(*, help: str, default: str | None = None):
    """``--format csv|parquet|xlsx`` (``etl.codec.formats.FORMATS``); ``default`` None: from
    the file's extension."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default=default,
                        show_default=default is not None, help=help)


def encoding(*, help: str):
    """``--encoding``: the text encoding of a CSV file read."""
    return click.option("--encoding", default=None, help=help)


def date_format(*, help: str):
    """``--date-format``: strftime codes of the date cells of a file read."""
    return click.option("--date-format", default=None, help=help)


def timezone(*, help: str, default: str | None = None):
    """``--timezone``: the practice's timezone (IANA name), for dates of birth."""
    return click.option("--timezone", "timezone", default=default, show_default=default is not None,
                        help=help)


def no_formula_guard(*, help: str):
    """``--no-formula-guard``: the ' before formula-like cells is not written (export) or
    not stripped (import, validate)."""
    return click.option("--no-formula-guard", is_flag=True, help=help)


def sheet(*, help: str = SHEET_HELP):
    """``--sheet``: the XLSX sheet to read."""
    return click.option("--sheet", default=None, help=help)


QUIET_HELP = ("No progress bar, countdown or notes; errors, warnings and the final summary "
              "still print.")


def quiet(*, help: str = QUIET_HELP):
    """``--quiet`` / ``-q``, one meaning in every command (README "Quiet runs"): no progress
    bar, no countdown, no ``note:`` lines; errors, warnings and the summary still print."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


def as_json(*, help: str):
    """``--json``: one machine-readable line on stdout (parameter ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


MAP_HELP = ("Read FILE through a mapping (TOML: [columns], [dates], [values.FIELD], [constants], [ignore]); "
            "`intakeq-etl map FILE` proposes one.")
IGNORE_COLUMN_HELP = "Leave this column of FILE out on purpose (repeatable); any other column that is not an " \
                     "IntakeQ field is an error in a file with new rows or no base."


def mapping(*, help: str = MAP_HELP):
    """``--map MAPPING.toml``: read the file through a mapping (``etl.importer.mapping``)."""
    return click.option("--map", "mapping", type=click.Path(dir_okay=False, path_type=str), default=None,
                        metavar="MAPPING.toml", help=help)


def ignore_column(*, help: str = IGNORE_COLUMN_HELP):
    """``--ignore-column NAME`` (repeatable): a source column left out on purpose."""
    return click.option("--ignore-column", "ignore_columns", multiple=True, metavar="NAME", help=help)
