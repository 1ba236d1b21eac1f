"""The ``intakeq-etl`` command line: a thin shell over the library.

Each command lives in its own module and is loaded only when run, so ``--help`` is
quick. Errors are mapped to exit codes in one place (``EtlGroup.invoke``):

* 0 success; 1 an error with one clear message, and nothing was written; 2 usage;
  4 import finished with failed/conflict/pending rows, or an error stopped it after
  its first write; 75 daily budget used up (retry later); 130 Ctrl-C.
* An unexpected exception (a bug) prints one line naming a log file that holds the
  traceback; ``--debug`` prints the traceback instead. Exit 1, unless a command marked
  ``ctx.meta[AFTER_WRITES]`` (the import, once it has sent a write): then 4.
* A closed stdout (``| head -1``) ends any command quietly.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import click

from .. import __version__
from ..config import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_PER_DAY,
    DEFAULT_MAX_PER_MINUTE,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_MAX_PER_DAY,
    ENV_MAX_PER_MINUTE,
    ENV_STATE_DIR,
)
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROWS_FAILED, EtlError, storage_reason
from ..state.files import ensure_private_dir, open_private
from . import options, ui
from .context import AppContext
from .output import silence_closed_stdout

# ctx.meta key: set by a command whose run has written something, so that a bug after it
# does not exit 1 (exit 1 says that nothing was written).
AFTER_WRITES = "intakeq_etl.after_writes"

# name -> (module, attribute, one-line help shown by `intakeq-etl --help`)
COMMANDS = {
    "export": ("etl.cli.export", "export", "Export all clients to CSV, Parquet or XLSX (full or incremental)."),
    "import": ("etl.cli.import_", "import_",
               "Import a CSV/Parquet/XLSX file: diff, plan, then apply only what changed."),
    "map": ("etl.cli.map_", "map_", "Propose a mapping (TOML) for another system's file, to import it with --map."),
    "undo": ("etl.cli.undo", "undo", "Take back exactly what one import changed, keeping what staff did since."),
    "history": ("etl.cli.history", "history", "List this account's imports and undos (run ids for undo)."),
    "validate": ("etl.cli.validate", "validate", "Check a clients file against the schema, without any API call."),
    "quota": ("etl.cli.quota", "quota", "Show the daily request budget: used, remaining, when the next frees up."),
    "sandbox": ("etl.cli.sandbox", "sandbox", "Serve a local emulator of the IntakeQ Client API on 127.0.0.1."),
}


class EtlGroup(click.Group):
    """Loads commands lazily and turns errors into one line and an exit code; a mistyped
    command gets the nearest one, a global option after the command the right order."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name in COMMANDS or name.startswith("-"):
            return super().resolve_command(ctx, args)
        nearest = nearest_command(name)
        hint = f" Did you mean {nearest!r}?" if nearest else f" The commands: {', '.join(COMMANDS)}."
        raise click.UsageError(f"No such command {name!r}.{hint}", ctx)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            raise self._global_option_hint(ctx, exc) from None
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except EtlError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader went away (`intakeq-etl quota | head -1`): it has what it wanted,
            # so end quietly, as other command-line tools do.
            silence_closed_stdout()
            ctx.exit(EXIT_OK)
        except Exception as exc:  # a bug: never show users a raw traceback
            reason = storage_reason(exc)
            if reason is not None:      # the disk or a folder failed, not the tool: one line
                click.echo(f"error: cannot write: {reason}", err=True)
                ctx.exit(EXIT_ROWS_FAILED if ctx.meta.get(AFTER_WRITES, False) else EXIT_ERROR)
            app = ctx.obj if isinstance(ctx.obj, AppContext) else None
            if app is not None and app.debug:
                raise
            try:
                where = f"the details are in {write_crash_log(exc, app)}"
            except OSError as log_error:  # the state dir itself is unusable
                where = f"no log could be written ({log_error.strerror or log_error})"
            after_writes = ctx.meta.get(AFTER_WRITES, False)
            resume = "; it came after the first write: run the same command again to resume" if after_writes else ""
            click.echo(
                f"error: unexpected {type(exc).__name__} (a bug in intakeq-etl); "
                f"{where} (run with --debug to show them){resume}",
                err=True,
            )
            ctx.exit(EXIT_ROWS_FAILED if after_writes else EXIT_ERROR)


    def _global_option_hint(self, ctx, exc: click.NoSuchOption) -> click.UsageError:
        """``intakeq-etl export --sandbox``: the option is the group's, so say where it goes."""
        for param in self.params:
            if isinstance(param, click.Option) and exc.option_name in param.opts + param.secondary_opts:
                command = exc.ctx.info_name if exc.ctx is not None else "COMMAND"
                value = "" if param.is_flag else " " + (param.metavar or param.name.upper())
                return click.UsageError(
                    f"{exc.message}\nglobal options go before the command: "
                    f"intakeq-etl {exc.option_name}{value} {command}", exc.ctx)
        return exc


def nearest_command(name: str) -> str | None:
    """The command ``name`` was probably meant to be: the one it begins, else the closest
    spelling (difflib), else None."""
    import difflib

    starting = [c for c in COMMANDS if name and c.startswith(name.lower())]
    if len(starting) == 1:
        return starting[0]
    close = difflib.get_close_matches(name.lower(), list(COMMANDS), n=1, cutoff=0.6)
    return close[0] if close else None


def write_crash_log(exc: BaseException, app: "AppContext | None") -> Path:
    state_dir = app.state_dir if app is not None else Path(os.environ.get(ENV_STATE_DIR) or ".")
    log_dir = ensure_private_dir(Path(state_dir) / "logs")   # tracebacks may hold values
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = log_dir / f"error-{stamp}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(exc))
    for secret in app.secrets() if app is not None else ():
        text = text.replace(secret, "***")
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"intakeq-etl {__version__}\n{text}")
    return path


@click.group(cls=EtlGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=options.examples(
                 "intakeq-etl --sandbox export --out exports/today",
                 "intakeq-etl --sandbox import exports/today/clients.csv --dry-run",
                 "intakeq-etl validate exports/today/clients.csv",
                 "intakeq-etl quota",
             ))
@click.version_option(__version__, "--version", prog_name="intakeq-etl")
@click.option("--api-key", envvar=ENV_API_KEY, show_envvar=True, default=None,
              help="API key (prefer the environment variable: options show in `ps`).")
@click.option("--base-url", envvar=ENV_BASE_URL, show_envvar=True, default=None,
              help=f"API base URL  [default: {DEFAULT_BASE_URL}]")
# Whole numbers, taken as text: etl.config checks them (one line, exit 1, like the variables).
@click.option("--max-per-minute", envvar=ENV_MAX_PER_MINUTE, show_envvar=True, metavar="INTEGER",
              default=None, help=f"Requests a minute  [default: {DEFAULT_MAX_PER_MINUTE}]")
@click.option("--max-per-day", envvar=ENV_MAX_PER_DAY, show_envvar=True, metavar="INTEGER",
              default=None, help=f"Requests in any 24 h; 0 means no daily budget  [default: {DEFAULT_MAX_PER_DAY}]")
@click.option("--state-dir", envvar=ENV_STATE_DIR, show_envvar=True, default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="Ledger, snapshots, logs  [default: the platform's user state dir]")
@click.option("--sandbox", is_flag=True,
              help="Run against the embedded sandbox (a local emulator; no account, no quota used).")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.pass_context
def cli(ctx, api_key, base_url, max_per_minute, max_per_day, state_dir, sandbox, debug):
    """Quota-aware export and import of IntakeQ / PracticeQ clients.

    Configure with INTAKEQ_API_KEY (and the other INTAKEQ_* variables), or try every
    command without an account using --sandbox.
    """
    _log_to_stderr(debug)
    ctx.obj = AppContext(
        overrides={"api_key": api_key, "base_url": base_url, "max_per_minute": max_per_minute,
                   "max_per_day": max_per_day, "state_dir": state_dir},
        use_sandbox=sandbox,
        debug=debug,
    )
    ctx.call_on_close(ctx.obj.close)


class NoteHandler(logging.Handler):
    """The library's log records as ``note:`` lines on stderr (the current one, through
    :func:`etl.cli.ui.say`: above the progress bar when one is drawn)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            ui.say(self.format(record))
        except Exception:  # pragma: no cover - logging's rule: a handler never raises
            self.handleError(record)


def _log_to_stderr(debug: bool) -> None:
    """Waits and retries of the API client appear as notes on stderr (never values)."""
    logger = logging.getLogger("etl")
    if not any(isinstance(h, NoteHandler) for h in logger.handlers):
        handler = NoteHandler()
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="intakeq-etl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
