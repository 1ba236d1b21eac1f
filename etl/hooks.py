"""How the library talks to its caller: one hooks object, never ``print``.

The export (:class:`etl.export.ExportHooks`) and the import (:class:`etl.importer.Hooks`)
each take a subclass of :class:`Hooks`; the base class is silent, so a notebook that
passes nothing hears nothing. The CLI subclasses them (messages on stderr, a tqdm bar at
a terminal, the import's prompt): what a message or a bar looks like is the caller's
choice, what happens is the library's.
"""
from __future__ import annotations

import contextlib


class ProgressBar:
    """What :meth:`Hooks.progress` yields: told of each step, and of what it means.

    ``update(n, clients=, remaining=)``: ``n`` more steps done; ``clients`` records seen
    so far (paging), ``remaining`` requests still to send (the CLI's bar turns them into
    its ETA: the time the per-minute limit needs for them). ``update(0, remaining=R)``
    opens a phase of known size. The base class ignores them.
    """

    def update(self, n: int = 1, *, clients: int | None = None,
               remaining: int | None = None) -> None: ...


class Hooks:
    """What a run tells its caller, and the one question it asks every step. Silent."""

    def say(self, message: str) -> None:
        """One line, no client data: what was decided, read or written; a warning."""

    def note(self, message: str) -> None:
        """How something was read or decided, nothing to act on."""
        self.say("note: " + message)

    def should_stop(self) -> bool:
        """Asked between steps (the import asks it before each row): True ends the run
        cleanly, as Ctrl-C does."""
        return False

    def progress(self, total: int | None, *, desc: str, unit: str):
        """A context manager yielding a :class:`ProgressBar` for one phase (``desc``:
        "clients", "diagnoses", "import", ...; ``total`` None when unknown)."""
        return contextlib.nullcontext(ProgressBar())
