"""How an export talks to its caller: an :class:`ExportHooks` object, never ``print``.

It is the library's one :class:`etl.hooks.Hooks` interface (``say``, ``note``,
``progress``, ``should_stop``), the same the import's hooks subclass. The CLI subclasses
it with messages on stderr and a tqdm bar; a notebook may subclass it or pass nothing
and hear nothing.
"""
from __future__ import annotations

from ..hooks import Hooks, ProgressBar

__all__ = ["ExportHooks", "ProgressBar"]


class ExportHooks(Hooks):
    """What an export tells its caller: ``say`` (the mode and why, what was written, a
    warning) and ``progress`` per phase ("clients", "deleted clients", "diagnoses"). The
    base class is silent."""
