"""The terminal side of a long run, shared by the commands: messages and notes on stderr,
and the progress bars (tqdm), shown only at a terminal, never with --quiet.

The library reports progress through hooks; the bars are drawn here, so a notebook or a
scheduler's log never gets one unasked.
"""
from __future__ import annotations

import contextlib
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

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


def progress_default() -> bool:
    """A bar only when stderr is a terminal (never in a scheduler's log)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class PagesBar:
    """A tqdm bar on stderr that shows the clients seen and, when the steps left are
    known, the time the request throttle needs for them (``estimate(remaining)``)."""

    def __init__(self, bar, estimate: Callable[[int], float | None] | None = None):
        self._bar = bar
        self._estimate = estimate

    def update(self, n: int = 1, *, clients: int | None = None,
               remaining: int | None = None) -> None:
        postfix = {}
        if clients is not None:
            postfix["clients"] = clients
        if remaining and self._estimate is not None:
            try:
                eta = self._estimate(remaining)
            except Exception:  # pragma: no cover - estimate is best effort
                eta = None
            if eta:
                postfix["throttle_eta"] = f"{eta:.0f}s"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)


@contextlib.contextmanager
def pages_bar(total: int | None, *, desc: str, unit: str,
              estimate: Callable[[int], float | None] | None = None) -> Iterator[PagesBar]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
               dynamic_ncols=True)
    try:
        yield PagesBar(bar, estimate)
    finally:
        bar.close()


class WaitCountdown:
    """One line on a terminal counting down while a run waits for other runs of the account
    (the throttle's time for what they reserved); cleared when the wait is over."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, waiting) -> None:
        if waiting is None:
            if self.shown:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
                self.shown = False
            return
        seconds = max(0, int(round(waiting.seconds_left)))
        others = len(waiting.holders)
        sys.stderr.write(f"\rwaiting for {others} other run(s): about {seconds // 60}:{seconds % 60:02d} "
                         "left (Ctrl-C stops)\033[K")
        sys.stderr.flush()
        self.shown = True


def wait_countdown(*, quiet: bool):
    """A :class:`WaitCountdown` at a terminal; None when quiet or in a log (the note says it)."""
    return WaitCountdown() if not quiet and progress_default() else None
