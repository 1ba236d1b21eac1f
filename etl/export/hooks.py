"""How an export talks to its caller: one :class:`ExportHooks` object, never ``print``.

The library only reports; what a message or a bar looks like is the caller's choice (the
CLI subclasses this with messages on stderr and a tqdm bar; a notebook may subclass it or
pass nothing and hear nothing). The interface mirrors the import's ``Hooks``
(``say``, ``progress``) so both can become one later.
"""
from __future__ import annotations

import contextlib


class ProgressBar:
    """What :meth:`ExportHooks.progress` yields: told of each step, and of what it means.

    ``update(n, clients=, remaining=)``: ``n`` more steps done; ``clients`` records seen
    so far (paging), ``remaining`` steps still to go (a bar may turn them into a throttle
    estimate). The base class ignores them.
    """

    def update(self, n: int = 1, *, clients: int | None = None,
               remaining: int | None = None) -> None: ...


class ExportHooks:
    """What an export tells its caller. The base class is silent."""

    def say(self, message: str) -> None:
        """One line, no client data: the mode and why, what was written, a warning."""

    def progress(self, total: int | None, *, desc: str, unit: str):
        """A context manager yielding a :class:`ProgressBar` for one phase (``desc``:
        "clients", "deleted clients", "diagnoses", ...; ``total`` None when unknown)."""
        return contextlib.nullcontext(ProgressBar())
