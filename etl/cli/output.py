"""Output helpers every command shares: the --json summary line, a reader that went away."""
from __future__ import annotations

import json
import os
import sys

import click

from ..errors import EXIT_INTERRUPTED, EtlError


def print_json_line(summary: dict) -> None:
    """The --json summary: exactly one line on stdout, flushed at once.

    If the reader of stdout is gone, the line is dropped quietly: the run's exit status
    still tells the caller how it ended.
    """
    try:
        click.echo(json.dumps(summary))
        sys.stdout.flush()
    except BrokenPipeError:
        silence_closed_stdout()


def exit_status_and_error(exc: BaseException) -> tuple[int, str]:
    """What a --json summary says of a run that ended in ``exc`` (an EtlError or a second Ctrl-C)."""
    if isinstance(exc, EtlError):
        return exc.exit_code, exc.message
    return EXIT_INTERRUPTED, "interrupted"


def silence_closed_stdout() -> None:
    """Send the rest of stdout nowhere, so the flush at exit does not fail on the closed pipe.

    (Python's advice for ``| head``: point fd 1 at devnull rather than leave the broken pipe.)
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):   # stdout is not a real file (a test runner's buffer)
        pass
