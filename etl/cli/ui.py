"""The terminal side of a long run, shared by the commands: messages and notes on stderr,
and the one progress bar (shown only on a terminal, never with --quiet)."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import click


def say(message: str) -> None:
    click.echo(message, err=True)


def note(message: str) -> None:
    """A ``note:`` line: how something was read or decided, nothing to act on."""
    say("note: " + message)


@contextmanager
def progress(total: int, *, quiet: bool, unit: str, desc: str):
    """A tqdm bar on stderr (``bar.update(n)``); a silent one when quiet or not a terminal."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc, disable=quiet or not sys.stderr.isatty(), file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()
