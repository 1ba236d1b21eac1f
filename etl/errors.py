"""The one exception tree of intakeq-etl.

Every problem a user can fix is an ``EtlError``; the CLI prints ``message`` on one
line and exits with the error's ``exit_code``. Anything else is a bug: the CLI
writes its traceback to a log file in the state dir and prints one line naming it.

::

    EtlError (exit 1)
    ├── ConfigError              bad option or INTAKEQ_* variable, plain-http remote URL
    │   └── PathError            a path the tool must not write: the input file, another
    │                            side file, a symbolic link, a read-only folder
    ├── InputError               a file that cannot be read: encoding, ragged rows, empty,
    │   │                        binary, unknown extension, no header
    │   ├── ValidationFailed     the file reads but breaks the schema (carries the problems)
    │   └── MappingError         a --map file that cannot be used: bad TOML, an unknown target
    │                            field or custom label, a source column the file lacks, a value
    │                            no [values] table covers (every problem at once)
    ├── ApiError                 the API answered something we cannot use
    │   ├── AuthError            401/403: "authentication failed: check INTAKEQ_API_KEY"
    │   ├── ApiUnreachable       connection refused, DNS, timeouts after retries
    │   ├── NotJsonError         HTML (or other non-JSON) where JSON was expected
    │   ├── WrongShapeError      JSON of the wrong shape: a list of strings, a client
    │   │                        without a numeric ClientId, an object where a list belongs
    │   ├── RequestRejected      a 4xx answer: final, carries the API's message
    │   └── TransientApiError    5xx, timeout or lost connection on a write: effect uncertain
    ├── BudgetExhausted (75)     daily budget used up (ours or the server's); says when it frees
    │   ├── BudgetReserved       what is left is reserved by another running run (it names it)
    │   └── ExportIncomplete     it ran out while an export fetched diagnoses: what was
    │                            written is declared (``result``); the same command continues
    ├── SnapshotNotFound         no snapshot of that export id in the account's state dir
    ├── Busy (75)                another run holds what this one needs (an import of the
    │                            same file): nothing was sent
    ├── CheckpointMismatch       the input file or options changed since a checkpoint that sent
    ├── StorageError (1 or 4)    the disk or a folder failed under a run (full, read-only,
    │                            SQLite could not write); 4 once writes were sent
    ├── StoppedAfterWrites (4)   an error stopped an import after its first write: the results
    │                            file is written, the same command resumes
    ├── Aborted                  the user declined an import's confirmation: nothing was sent
    └── Interrupted (130)        Ctrl-C: stopped cleanly after the request in flight

Exit 1 means that nothing was written: an error that comes after an import's first
write is turned into ``StoppedAfterWrites`` (4) by the import command.

``TRANSIENT_ERRORS`` are the failures that may pass on their own (a 5xx, a timeout, a
server out of reach): an import leaves the row in hand ``pending`` for a re-run.

Messages never contain the API key or client data (names, emails, values).
"""
from __future__ import annotations

import errno
from datetime import datetime, timezone

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ROWS_FAILED = 4
EXIT_BUDGET = 75
EXIT_INTERRUPTED = 130


class EtlError(Exception):
    """Base of every error a user can act on."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class ConfigError(EtlError):
    """A bad option or environment variable."""


class PathError(ConfigError):
    """A path the tool must not write to; refused before anything is written or sent."""


class InputError(EtlError):
    """An input file that cannot be read as a table."""


class ValidationFailed(InputError):
    """The file reads, but rows break the schema. ``problems`` lists them all."""

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


class MappingError(InputError):
    """A mapping file (``--map``) that cannot be used; ``problems`` lists every one found
    (:mod:`etl.importer.mapping`), said at once before any request."""

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


class ApiError(EtlError):
    """The API answered something we cannot use."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    """401/403."""

    def __init__(self, message: str = "authentication failed: check INTAKEQ_API_KEY",
                 status: int | None = None):
        super().__init__(message, status)


class ApiUnreachable(ApiError):
    """The server could not be reached (after retries, for reads)."""


class NotJsonError(ApiError):
    """A response that is not JSON, usually a wrong base URL."""


class WrongShapeError(ApiError):
    """JSON, but not the shape the endpoint has: never turned into rows or writes."""


class RequestRejected(ApiError):
    """A 4xx answer (other than 401/403/429): the request was refused and will be again."""


class TransientApiError(ApiError):
    """5xx, timeout or lost connection. For a write, its effect is uncertain."""


# A tuple rather than a common base class: elsewhere the two mean different things (a read
# that found no server after retries; a write whose effect is unknown). Only the import's
# apply loop treats them alike: the row waits for a re-run.
TRANSIENT_ERRORS = (TransientApiError, ApiUnreachable)


class BudgetExhausted(EtlError):
    """The daily request budget is used up.

    ``used`` and ``limit`` describe the rolling 24 h window; ``frees_at`` is the epoch
    second when the next request may be sent (None when unknown).
    """

    exit_code = EXIT_BUDGET

    def __init__(self, message: str | None = None, *, used: int | None = None,
                 limit: int | None = None, frees_at: float | None = None):
        self.used = used
        self.limit = limit
        self.frees_at = frees_at
        if message is None:
            message = f"daily request budget used up ({used} of {limit} in the last 24 h)"
            if frees_at is not None:
                message += f"; the next request frees up at {format_epoch(frees_at)}"
        super().__init__(message)


class ExportIncomplete(BudgetExhausted):
    """(Under ``BudgetExhausted``, exit 75.) The budget ran out while an export fetched
    diagnoses: the clients file and the diagnoses fetched so far were written, and
    ``result`` (an ``etl.export.ExportResult``) is what was written; the same command
    continues."""

    def __init__(self, message: str, *, result, used: int | None = None,
                 limit: int | None = None, frees_at: float | None = None):
        super().__init__(message, used=used, limit=limit, frees_at=frees_at)
        self.result = result


class SnapshotNotFound(EtlError):
    """No snapshot of that export id in this account's state dir."""


class BudgetReserved(BudgetExhausted):
    """(Exit 75.) What is left of today's budget is reserved by other running runs of the
    account (``holders``: their ``etl.api.ledger.Holder``); this run sent nothing."""

    def __init__(self, message: str, *, holders=(), used: int | None = None,
                 limit: int | None = None, frees_at: float | None = None):
        super().__init__(message, used=used, limit=limit, frees_at=frees_at)
        self.holders = list(holders)


class Busy(EtlError):
    """(Exit 75.) Another run holds what this one needs (an import of the same file, by
    its checkpoint's lock), and this one was told not to wait: nothing was sent."""

    exit_code = EXIT_BUDGET


class CheckpointMismatch(EtlError):
    """The checkpoint belongs to another input file or other options."""


class StorageError(EtlError):
    """The disk or a folder failed under a run: full, read-only, or SQLite could not write.

    Exit 1 when nothing was sent yet; 4 (rows not done: run the same command again) once
    writes were sent, like a run that ends with pending rows.
    """

    def __init__(self, message: str, *, after_writes: bool = False):
        super().__init__(message)
        self.exit_code = EXIT_ROWS_FAILED if after_writes else EXIT_ERROR


# What the disk and SQLite say when the surroundings fail (not a bug in the tool).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.EFBIG, errno.EIO})
_SQLITE_STORAGE = ("disk is full", "readonly database", "unable to open database", "disk i/o error",
                   "database is locked", "file is not a database")


def storage_reason(exc: BaseException) -> str | None:
    """One line saying what failed, when ``exc`` is the disk or SQLite failing; else None."""
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, sqlite3.Error) and any(s in str(exc).lower() for s in _SQLITE_STORAGE):
        return f"SQLite: {exc}"
    return None


class StoppedAfterWrites(EtlError):
    """An error stopped an import after it had sent a write: exit 4, not 1 (1 says nothing
    was written). The message names the results file and says that re-running resumes."""

    exit_code = EXIT_ROWS_FAILED


class Aborted(EtlError):
    """The user declined an import's confirmation: nothing was sent (exit 1)."""


class Interrupted(EtlError):
    """Ctrl-C: the run stopped after the request in flight."""

    exit_code = EXIT_INTERRUPTED


def format_epoch(epoch: float) -> str:
    """An epoch second as a readable UTC time, for messages."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
