"""What an import run did, and how it ends: its exit status, its closing line, and the
one-line error of a run that stopped (the budget, Ctrl-C, an error after the first write).

These are the import's policy, not the terminal's: a notebook gets the same answers the
CLI prints (exit 4 when rows failed, conflict or wait; the budget-stop message says when
to run again).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import EXIT_OK, EXIT_ROWS_FAILED, BudgetExhausted, EtlError, Interrupted, StoppedAfterWrites, format_epoch
from .reports import RowResult

if TYPE_CHECKING:
    from .options import Paths
    from .run import Prepared

UNFINISHED = frozenset({"failed", "conflict", "pending"})     # statuses that make the exit 4


@dataclass
class RunOutcome:
    prepared: Prepared
    results: dict[int, RowResult]
    stopped_by: Exception | None = None     # BudgetExhausted, Interrupted, or the EtlError that stopped it
    applied: bool = False                   # False: dry run, or nothing to write
    dry_run: bool = False
    run_id: str | None = None               # the run's id in the account's history (None: a dry run)

    def closing_line(self) -> str | None:
        """The line said before the results (a dry run, or nothing to write), if any."""
        if self.dry_run:
            return "dry run: no write was sent"
        if not self.applied:
            return nothing_to_write(self.results.values())
        return None

    def stop_error(self, paths: Paths) -> EtlError | None:
        """The one-line error of a run that stopped before its end (None: it ran to the end)."""
        if self.dry_run or self.stopped_by is None:
            return None
        return stop_error(self.stopped_by, self.results, paths)

    def exit_status(self, *, results_moved: bool = False) -> int:
        """0, or 4 when rows failed, conflict or wait, or the results file was written
        elsewhere (a script reading it beside the input would miss it)."""
        if self.dry_run:
            return EXIT_OK
        unfinished = any(r.status in UNFINISHED for r in self.results.values())
        return EXIT_ROWS_FAILED if unfinished or results_moved else EXIT_OK


def nothing_to_write(results) -> str:
    conflicts = sum(1 for r in results if r.status == "conflict")
    if not conflicts:
        return "nothing to write: IntakeQ already matches the file"
    needs = "conflict needs a decision" if conflicts == 1 else "conflicts need a decision"
    return f"nothing to write; {conflicts} {needs}"


def stop_error(reason: EtlError, results: dict[int, RowResult], paths: Paths) -> EtlError:
    left = sum(1 for r in results.values() if r.status == "pending")
    done = sum(1 for r in results.values() if r.status in ("created", "updated"))
    if isinstance(reason, BudgetExhausted):
        when = f" at {format_epoch(reason.frees_at)}" if reason.frees_at else " later"
        return BudgetExhausted(
            f"stopped: the daily request budget is used up. {done} row(s) written, {left} left; "
            f"the budget frees up{when}: run the same command again then (or add --wait)",
            used=reason.used, limit=reason.limit, frees_at=reason.frees_at)
    if isinstance(reason, Interrupted):
        return Interrupted(f"interrupted: {done} row(s) written, {left} left; run the same command again to resume")
    return stopped_after_writes(reason, paths, f"{done} row(s) written, {left} left; ")


def stopped_after_writes(reason: EtlError, paths: Paths, progress: str = "") -> StoppedAfterWrites:
    """Exit 4, not 1: exit 1 tells the user that nothing was written."""
    return StoppedAfterWrites(f"stopped after the first write: {reason.message}; {progress}"
                              f"results file: {paths.results}; run the same command again to resume")
