"""The terminal side of a long run, shared by the commands: messages and notes on stderr,
the progress bar (tqdm) and the countdowns, drawn only at a terminal, never with --quiet.

The library reports progress through hooks; the bars are drawn here, so a notebook or a
scheduler's log never gets one unasked.

One bar at a time, and it tells the truth:

* its ETA is the tool's own, the time the per-minute limit needs for the requests left
  (``client.estimate_seconds``, exact for the throttle), never tqdm's extrapolated rate;
* a phase whose size is unknown (the first export: IntakeQ gives no total) shows the pages
  fetched and the clients so far, with no rate and no ETA;
* while the throttle waits, the bar says ``waiting 34 s for the per-minute limit``, every
  second (:func:`throttle_countdown`);
* every line said while a bar is drawn goes through ``tqdm.write``, above the bar, so a
  ``note:`` never garbles it.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import click

from ..hooks import ProgressBar

# The bars drawn now (innermost last): a message said meanwhile is written above them.
_drawn: list["Bar"] = []

KNOWN_TOTAL = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}s [{elapsed}{postfix}]"
UNKNOWN_TOTAL = "{desc}: {n_fmt} {unit}(s) fetched [{elapsed}{postfix}]"
# During a wait the countdown takes the place of the bar graphic and the elapsed time, so
# the line fits 80 columns: "diagnoses: 7/20 clients, ETA 1:58, waiting 58 s for the ...".
KNOWN_TOTAL_WAITING = "{desc}: {n_fmt}/{total_fmt} {unit}s{postfix}"
UNKNOWN_TOTAL_WAITING = "{desc}: {n_fmt} {unit}(s) fetched{postfix}"


def say(message: str) -> None:
    """One line on stderr; above the bar when one is drawn."""
    if _drawn:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        click.echo(message, err=True)


def note(message: str) -> None:
    """A ``note:`` line: how something was read or decided, nothing to act on."""
    say("note: " + message)


def hush_notes() -> None:
    """``--quiet``: the library's notes (waits, retries) are not printed; warnings are."""
    import logging

    logging.getLogger("etl").setLevel(logging.WARNING)


def progress_default() -> bool:
    """A bar only when stderr is a terminal (never in a scheduler's log)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def clock_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour): what the bar's ETA reads."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Bar:
    """One phase's bar (what :meth:`etl.hooks.Hooks.progress` yields at a terminal).

    ``update(n, clients=, remaining=)``: ``n`` steps done; ``clients`` seen so far (paging);
    ``remaining`` requests still to send, which ``estimate`` (seconds the per-minute limit
    needs for them) turns into the ETA. ``update(0, remaining=R)`` at the start of a phase
    shows its ETA before the first request.
    """

    def __init__(self, bar, estimate: Callable[[int], float] | None = None):
        self._bar = bar
        self._estimate = estimate
        self.clients: int | None = None
        self.remaining: int | None = None
        self.waiting: float | None = None
        self.eta: float | None = None       # the last ETA shown, in seconds (None: unknown)

    def update(self, n: int = 1, *, clients: int | None = None, remaining: int | None = None) -> None:
        if clients is not None:
            self.clients = clients
        if remaining is not None:
            self.remaining = remaining
        self._set_postfix()
        if n:
            self._bar.update(n)
        else:
            self._bar.refresh()

    def wait(self, seconds_left: float | None) -> None:
        """The throttle's countdown on the bar (None: the wait is over)."""
        self.waiting = seconds_left
        known = self._bar.total is not None
        if seconds_left is None:
            self._bar.bar_format = KNOWN_TOTAL if known else UNKNOWN_TOTAL
        else:
            self._bar.bar_format = KNOWN_TOTAL_WAITING if known else UNKNOWN_TOTAL_WAITING
        self._set_postfix()
        self._bar.refresh()

    def _set_postfix(self) -> None:
        parts = []
        if self.clients is not None:
            parts.append(f"{self.clients} clients")
        self.eta = self._eta()
        if self.eta is not None:
            parts.append(f"ETA {clock_text(self.eta)}")
        if self.waiting is not None:
            parts.append(f"waiting {max(0, int(round(self.waiting)))} s for the per-minute limit")
        self._bar.set_postfix_str(", ".join(parts), refresh=False)

    def _eta(self) -> float | None:
        if self.remaining is None or self._estimate is None:
            return None
        try:
            return float(self._estimate(self.remaining))
        except Exception:  # pragma: no cover - an estimate is best effort, never a failure
            return None


class SilentBar(ProgressBar):
    """What a quiet run or a log gets: hears everything, draws nothing."""

    def wait(self, seconds_left: float | None) -> None:
        pass


@contextlib.contextmanager
def progress(total: int | None, *, quiet: bool, desc: str, unit: str,
             estimate: Callable[[int], float] | None = None) -> Iterator["Bar | SilentBar"]:
    """The bar of one phase on stderr; a :class:`SilentBar` when quiet or not a terminal.

    ``total`` None (unknown): pages fetched and clients so far, no rate, no ETA.
    """
    if quiet or not progress_default():
        yield SilentBar()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
               bar_format=KNOWN_TOTAL if total is not None else UNKNOWN_TOTAL)
    shown = Bar(bar, estimate)
    _drawn.append(shown)
    try:
        yield shown
    finally:
        _drawn.remove(shown)
        bar.close()


class _Line:
    """One line of its own on the terminal, rewritten in place and cleared at the end."""

    def __init__(self) -> None:
        self.shown = False

    def show(self, text: str) -> None:
        sys.stderr.write(f"\r{text}\033[K")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


class ThrottleCountdown(_Line):
    """The per-minute limit's wait, counted down every second: on the bar when one is drawn,
    else on a line of its own, cleared when the wait is over."""

    def __call__(self, seconds_left: float | None) -> None:
        if _drawn:
            _drawn[-1].wait(seconds_left)
        elif seconds_left is None:
            self.clear()
        else:
            self.show(f"waiting {max(0, int(round(seconds_left)))} s for the per-minute limit")


def throttle_countdown(*, quiet: bool):
    """A :class:`ThrottleCountdown` at a terminal; None when quiet or in a log (where the
    throttle's wait is a ``note:`` line instead)."""
    return ThrottleCountdown() if not quiet and progress_default() else None


class WaitCountdown(_Line):
    """One line on a terminal counting down while a run waits for other runs of the account
    (the throttle's time for what they reserved); cleared when the wait is over."""

    def __call__(self, waiting) -> None:
        if waiting is None:
            self.clear()
            return
        others = len(waiting.holders)
        self.show(f"waiting for {others} other run(s): about {clock_text(waiting.seconds_left)} "
                  "left (Ctrl-C stops)")


def wait_countdown(*, quiet: bool):
    """A :class:`WaitCountdown` at a terminal; None when quiet or in a log (the note says it)."""
    return WaitCountdown() if not quiet and progress_default() else None
