"""The request ledger: one SQLite file per account that serves both rate limits.

Every request (retries included) is a row with a timestamp. Because the file is shared,
concurrent processes using the same key share the minute window and the daily budget.

* ``reserve()`` checks and records in ONE transaction (``BEGIN IMMEDIATE``), so two
  processes making 400 requests each against a budget of 500 send exactly 500.
* Daily budget: a rolling 24 h. When it is used up, ``reserve()`` raises
  :class:`~etl.errors.BudgetExhausted` (how many were used, when the next one frees up).
* Minute window: a sliding 60 s, so it is safe whether the server counts fixed or sliding
  minutes. Full speed up to the limit: it waits only when the window is full.
* ``complete(row_id)`` moves the row's timestamp to when the response arrived. The
  server counts a request from when it received it, which is before the arrival, so
  counting from the arrival never lets a server at the same limit see one too many.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..clock import SystemClock
from ..config import ENV_STATE_DIR, Settings
from ..errors import BudgetExhausted, ConfigError
from ..state.sqlite import open_private_db

log = logging.getLogger("etl.api")

DAY = 86_400.0
MINUTE = 60.0
PRUNE_EVERY = 100  # rows; pruning old rows is cheap but needless on every request
LEDGER_FILENAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL              -- epoch seconds: sent, then (on complete) arrived
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""


@dataclass(frozen=True)
class Usage:
    """The daily budget as the ledger sees it.

    ``limit`` 0 means no daily budget (then ``remaining`` is None). ``next_free_at`` is
    the epoch second when the oldest request of the last 24 h leaves the window (one more
    request frees up); None without a daily limit or when nothing was sent.
    """

    used_24h: int
    limit: int
    remaining: int | None
    next_free_at: float | None
    used_last_minute: int = 0
    per_minute: int = 0


class Ledger:
    """Check-and-record of every request, shared by all processes of one account."""

    def __init__(self, path: Path, *, max_per_minute: int, max_per_day: int, clock=None):
        if max_per_minute < 1:
            raise ValueError("max_per_minute must be positive")
        if max_per_day < 0:
            raise ValueError("max_per_day must be 0 (none) or positive")
        self.path = Path(path)
        self.max_per_minute = int(max_per_minute)
        self.max_per_day = int(max_per_day)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_settings(cls, settings: Settings, *, clock=None) -> "Ledger":
        """The ledger of the settings' account: ``account_dir / "ledger.sqlite"``."""
        return cls(settings.account_dir / LEDGER_FILENAME,
                   max_per_minute=settings.max_per_minute,
                   max_per_day=settings.max_per_day, clock=clock)

    def __repr__(self) -> str:
        return (f"Ledger({str(self.path)!r}, max_per_minute={self.max_per_minute}, "
                f"max_per_day={self.max_per_day})")

    # -- the two operations every request goes through -------------------------------

    def reserve(self) -> int:
        """Record one request about to be sent and return its row id.

        Raises BudgetExhausted when the daily budget is used up; waits (through the
        clock) while the minute window is full.
        """
        while True:
            wait = self._try_reserve()
            if isinstance(wait, int):
                return wait
            (log.info if wait >= 5 else log.debug)(
                "waiting %.0f s: the API allows %d requests a minute", wait, self.max_per_minute)
            self.clock.sleep(wait)

    def complete(self, row_id: int) -> None:
        """The response (or the failure) arrived: count the request from now."""
        with self._transaction() as conn:
            conn.execute("UPDATE requests SET ts = ? WHERE id = ?", (self.clock.time(), row_id))

    # -- reading ---------------------------------------------------------------------

    def usage(self) -> Usage:
        now = self.clock.time()
        with self._lock:
            conn = self._connection()
            used, oldest = conn.execute(
                "SELECT COUNT(*), MIN(ts) FROM requests WHERE ts > ?", (now - DAY,)).fetchone()
            (in_minute,) = conn.execute(
                "SELECT COUNT(*) FROM requests WHERE ts > ?", (now - MINUTE,)).fetchone()
        limit = self.max_per_day
        remaining = max(0, limit - used) if limit else None
        next_free_at = oldest + DAY if (limit and oldest is not None) else None
        return Usage(used_24h=used, limit=limit, remaining=remaining, next_free_at=next_free_at,
                     used_last_minute=in_minute, per_minute=self.max_per_minute)

    def minute_window(self) -> list[float]:
        """Timestamps of the requests of the last 60 s, oldest first."""
        now = self.clock.time()
        with self._lock:
            rows = self._connection().execute(
                "SELECT ts FROM requests WHERE ts > ? ORDER BY ts", (now - MINUTE,)).fetchall()
        return [ts for (ts,) in rows]

    def estimate_seconds(self, n_requests: int) -> float:
        return seconds_needed(n_requests, self.minute_window(), self.clock.time(),
                              self.max_per_minute)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals -------------------------------------------------------------------

    def _try_reserve(self) -> int | float:
        """One transaction: a row id when recorded, else the seconds to wait."""
        with self._transaction() as conn:
            now = self.clock.time()
            if self.max_per_day:
                self._check_daily_budget(conn, now)
            wait = self._minute_wait(conn, now)
            if wait > 0:
                return float(wait)
            row_id = conn.execute("INSERT INTO requests (ts) VALUES (?)", (now,)).lastrowid
            if row_id % PRUNE_EVERY == 0:
                conn.execute("DELETE FROM requests WHERE ts <= ?", (now - DAY,))
            return int(row_id)

    def _check_daily_budget(self, conn: sqlite3.Connection, now: float) -> None:
        used, oldest = conn.execute(
            "SELECT COUNT(*), MIN(ts) FROM requests WHERE ts > ?", (now - DAY,)).fetchone()
        if used >= self.max_per_day:
            # The oldest row leaves the 24 h window first; that frees the next request.
            raise BudgetExhausted(used=used, limit=self.max_per_day, frees_at=oldest + DAY)

    def _minute_wait(self, conn: sqlite3.Connection, now: float) -> float:
        window = [ts for (ts,) in conn.execute(
            "SELECT ts FROM requests WHERE ts > ? ORDER BY ts", (now - MINUTE,))]
        excess = len(window) - self.max_per_minute
        if excess < 0:
            return 0.0
        # Wait until enough of the oldest rows have left the window for one more.
        return max(window[excess] + MINUTE - now, 0.0) or 1e-6

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = open_private_db(self.path, wal=True, schema=_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ConfigError(
                    f"cannot use the state dir for the request ledger ({self.path.parent}): "
                    f"{reason}; set {ENV_STATE_DIR} to a writable folder") from None
        return self._conn

    def _transaction(self):
        return _Transaction(self)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error), under the ledger's lock."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def __enter__(self) -> sqlite3.Connection:
        self.ledger._lock.acquire()
        try:
            self.conn = self.ledger._connection()
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.ledger._lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.ledger._lock.release()


def seconds_needed(n_requests: int, window: list[float], now: float, per_minute: int) -> float:
    """How long ``n_requests`` more requests take at ``per_minute`` in a sliding 60 s
    window that already holds the timestamps ``window`` (oldest first).

    The j-th new request (0-based) may go once the request ``per_minute`` places before
    it is 60 s old: new requests fill the free slots at once, then follow the existing
    ones 60 s later, then repeat themselves every ``per_minute`` requests.
    """
    if n_requests <= 0:
        return 0.0
    free = per_minute - len(window)
    last = n_requests - 1
    cycles, slot = divmod(last, per_minute)
    if slot < free:
        first_send = now
    else:
        first_send = max(now, window[slot - free] + MINUTE)
    return max(0.0, first_send + MINUTE * cycles - now)
