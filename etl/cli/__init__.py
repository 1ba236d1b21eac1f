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
    "undo": ("etl.cli.undo", "undo", "Take back exactly what one import changed, keeping what staff did since."),
    "history": ("etl.cli.history", "history", "List this account's imports and undos (run ids for undo)."),
    "validate": ("etl.cli.validate", "validate", "Check a clients file against the schema, without any API call."),
    "quota": ("etl.cli.quota", "quota", "Show the daily request budget: used, remaining, when the next frees up."),
    "sandbox": ("etl.cli.sandbox", "sandbox", "Serve a local emulator of the IntakeQ Client API on 127.0.0.1."),
}


class EtlGroup(click.Group):
    """Loads commands lazily and turns errors into one line and an exit code."""

    def list_commands(self, ctx):
        return list(COMMANDS)

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


@click.group(cls=EtlGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def _log_to_stderr(debug: bool) -> None:
    """Waits and retries of the API client appear as notes on stderr (never values)."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        stream = property(lambda self: sys.stderr, lambda self, value: None)  # follows redirections

    logger = logging.getLogger("etl")
    if not any(isinstance(h, logging.StreamHandler) and type(h).__name__ == "CurrentStderr"
               for h in logger.handlers):
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="intakeq-etl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
