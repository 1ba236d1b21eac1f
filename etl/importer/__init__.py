"""The import pipeline, one module per step (see README, "How it works"):

options (ImportOptions, Paths, the checkpoint's rules) → mapping (``--map``: another
system's file read with IntakeQ's headers; ``proposal``: what ``map`` proposes) → run (read, validate, prepare,
run_import; outcome: exit status and closing lines) → base (the export the file came from)
→ diff (pure: base, file, live → RowPlans) with matching (IntakeQ's create-or-match rule)
and checks (before any request)
→ live (only the clients needed) → apply (journalled in checkpoint, recorded in applied)
→ reports (plan, results, rejects, validation report); history (each run's id and journal of
before/after images) → undo (a run's journal against live → RowPlans, applied the same way).

``from etl.importer import run_import, ImportOptions, Paths`` is the library's import API.
"""
from __future__ import annotations

from ..errors import Aborted
from .options import ImportOptions, Paths, open_checkpoint, plan_identity
from .outcome import RunOutcome
from .run import Hooks, Prepared, estimate, prepare, run_import
from .undo import undo_identity, undo_import, undo_paths

__all__ = ["Aborted", "Hooks", "ImportOptions", "Paths", "Prepared", "RunOutcome", "estimate",
           "open_checkpoint", "plan_identity", "prepare", "run_import",
           "undo_identity", "undo_import", "undo_paths"]
