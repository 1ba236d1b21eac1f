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
* Runs coordinate through **reservations** (:meth:`Ledger.hold`): before its first request a
  run reserves what it estimates it needs, in the same transaction as the budget check.
  Every other process counts the unspent part of a reservation as used, so a second run
  waits for the first (or, told not to wait, stops with exit 75 having sent nothing)
  instead of both spending the day halfway. A reservation names its pid and host: one of
  a dead process on this host is released at once; any other expires
  ``RESERVATION_TTL`` seconds after its last request.
* **The server's word**: a 429 whose ``Retry-After`` says the day is gone is recorded
  (:meth:`Ledger.record_server_exhausted`); until the moment it names, every request is
  refused here (``BudgetExhausted``, exit 75) without being sent, and :meth:`usage`
  reports 0 remaining. Other integrations of the practice share IntakeQ's quota, so the
  server may be out of requests while the local count still shows some.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..clock import DAY, SystemClock
from ..config import ENV_STATE_DIR, Settings
from ..errors import BudgetExhausted, BudgetReserved, ConfigError, format_epoch
from ..state.sqlite import open_private_db

log = logging.getLogger("etl.api")

MINUTE = 60.0
PRUNE_EVERY = 100  # rows; pruning old rows is cheap but needless on every request
LEDGER_FILENAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL              -- epoch seconds: sent, then (on complete) arrived
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
-- A run's claim on the daily budget: the unspent part (amount - spent) counts as used
-- for every other process until it is released, its pid is gone, or it expires.
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    what TEXT NOT NULL,           -- "export", "import": for messages
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    amount INTEGER NOT NULL,      -- requests reserved
    spent INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    expires REAL NOT NULL         -- pushed on by each request of its run
);
-- What IntakeQ itself said about the quota (one row): a 429 for the day.
CREATE TABLE IF NOT EXISTS server_quota (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    exhausted_until REAL NOT NULL,   -- epoch second the server named (Retry-After)
    recorded_at REAL NOT NULL
);
"""

RESERVATION_TTL = 15 * MINUTE     # a reservation without a request for this long is stale
WAIT_POLL_SECONDS = 1.0           # how often a run waiting for others looks again


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
    reserved: int = 0                         # unspent requests reserved by running runs
    reservations: tuple = ()                  # Holder of each running run
    local_remaining: int | None = None        # by the local count alone
    server_exhausted_until: float | None = None   # IntakeQ answered 429 for the day until then

    @property
    def server_disagrees(self) -> bool:
        """The server said the day is gone while the local count still has requests."""
        return self.server_exhausted_until is not None and self.local_remaining != 0


@dataclass(frozen=True)
class Holder:
    """A running run's reservation, as other runs see it."""

    what: str
    pid: int
    host: str
    unspent: int

    def describe(self) -> str:
        where = "" if self.host == _HOST else f" on {self.host}"
        return f"{self.what} (pid {self.pid}{where}, {self.unspent} request(s) reserved)"


@dataclass
class Waiting:
    """What a run waiting for others is told on each look (for a countdown)."""

    holders: list[Holder]
    seconds_left: float          # the throttle's time for the others' unspent requests
    first: bool = False
    extra: dict = field(default_factory=dict)


_HOST = socket.gethostname()


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
        self._reservation_id: int | None = None     # this run's, while it holds one
        # Hears the minute window's waits second by second (a terminal's countdown); while
        # set, the wait is not also logged as a note.
        self.on_throttle: Callable[[float | None], None] | None = None

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
            if self.on_throttle is not None:
                self._count_down(wait)
                continue
            (log.info if wait >= 5 else log.debug)(
                "waiting %.0f s: the API allows %d requests a minute", wait, self.max_per_minute)
            self.clock.sleep(wait)

    def _count_down(self, wait: float) -> None:
        """The minute window's wait in slices of a second at most, each told to
        ``on_throttle`` (seconds left; None at the end): a terminal's countdown."""
        deadline = self.clock.time() + wait
        try:
            while (left := deadline - self.clock.time()) > 0:
                self.on_throttle(left)
                self.clock.sleep(min(1.0, left))
        finally:
            self.on_throttle(None)

    def complete(self, row_id: int) -> None:
        """The response (or the failure) arrived: count the request from now."""
        with self._transaction() as conn:
            conn.execute("UPDATE requests SET ts = ? WHERE id = ?", (self.clock.time(), row_id))

    # -- reading ---------------------------------------------------------------------

    def usage(self) -> Usage:
        """The budget now. ``remaining`` is 0 while the server says the day is gone (then
        ``next_free_at`` is the moment it named); reservations are in ``reserved``."""
        now = self.clock.time()
        with self._transaction() as conn:      # releases stale reservations as it reads
            used, oldest = conn.execute(
                "SELECT COUNT(*), MIN(ts) FROM requests WHERE ts > ?", (now - DAY,)).fetchone()
            (in_minute,) = conn.execute(
                "SELECT COUNT(*) FROM requests WHERE ts > ?", (now - MINUTE,)).fetchone()
            holders = [h for h in self._holders(conn, now, own=True) if h.unspent]
            server_until = _server_exhausted_until(conn, now)
        limit = self.max_per_day
        local = max(0, limit - used) if limit else None
        next_free_at = oldest + DAY if (limit and oldest is not None) else None
        remaining = local
        if server_until is not None:
            remaining, next_free_at = 0, server_until
        return Usage(used_24h=used, limit=limit, remaining=remaining, next_free_at=next_free_at,
                     used_last_minute=in_minute, per_minute=self.max_per_minute,
                     reserved=sum(h.unspent for h in holders), reservations=tuple(holders),
                     local_remaining=local, server_exhausted_until=server_until)

    # -- what the server said --------------------------------------------------------

    def record_server_exhausted(self, until: float) -> None:
        """IntakeQ answered 429 with a Retry-After that says the day is gone: no request
        is sent (by any process of this account) before ``until``."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO server_quota (id, exhausted_until, recorded_at) VALUES (1, ?, ?) "
                         "ON CONFLICT(id) DO UPDATE SET exhausted_until = excluded.exhausted_until, "
                         "recorded_at = excluded.recorded_at", (float(until), self.clock.time()))

    # -- reservations ----------------------------------------------------------------

    def hold(self, amount: int | None, *, what: str, keeps_progress: bool = True,
             wait: bool = True,
             on_wait: "Callable[[Waiting | None], None] | None" = None) -> "Reservation":
        """Reserve ``amount`` requests (None: the rest of the day's budget) for this run, in
        the transaction that checks the budget. Use it as a context manager: it is
        released on exit.

        While other runs hold what this one needs, it waits for them (``on_wait`` hears
        each look; the first is logged as a note) or, with ``wait`` False, raises
        :class:`~etl.errors.BudgetReserved` (exit 75); ``on_wait(None)`` says the wait is
        over. When even without them today's
        budget is short, a run that ``keeps_progress`` reserves what is left and goes on;
        one that cannot raises :class:`~etl.errors.BudgetExhausted` before sending
        anything. Raises BudgetExhausted at once while the server says the day is gone.
        """
        first = True
        try:
            while True:
                outcome = self._try_hold(amount, what, keeps_progress)
                if isinstance(outcome, Reservation):
                    return outcome
                self._wait_for(outcome, wait=wait, first=first, on_wait=on_wait)
                first = False
        finally:
            if not first and on_wait is not None:
                on_wait(None)       # the wait is over (a countdown clears its line)

    def _wait_for(self, holders: "list[Holder]", *, wait: bool, first: bool,
                  on_wait: "Callable[[Waiting | None], None] | None") -> None:
        unspent = sum(h.unspent for h in holders)
        if not wait:
            raise BudgetReserved(
                f"another run of this account holds {unspent} request(s) of today's budget: "
                + "; ".join(h.describe() for h in holders)
                + "; nothing was sent (--no-wait-for-others); run again when it has finished",
                holders=holders)
        seconds = self.estimate_seconds(unspent)
        if first:
            log.info("waiting for %s to finish: %s reserved the budget this run needs "
                     "(about %.0f s at the minute limit; Ctrl-C stops)",
                     " and ".join(h.describe() for h in holders),
                     "they" if len(holders) > 1 else "it", seconds)
        if on_wait is not None:
            on_wait(Waiting(holders, seconds, first=first))
        self.clock.sleep(WAIT_POLL_SECONDS)

    def _try_hold(self, amount: int | None, what: str,
                  keeps_progress: bool) -> "Reservation | list[Holder]":
        with self._transaction() as conn:
            now = self.clock.time()
            self._check_server(conn, now)
            if not self.max_per_day:          # no daily budget: nothing to share
                return Reservation(self, None, 0)
            used, oldest = conn.execute(
                "SELECT COUNT(*), MIN(ts) FROM requests WHERE ts > ?", (now - DAY,)).fetchone()
            holders = self._holders(conn, now)
            others = sum(h.unspent for h in holders)
            left = max(0, self.max_per_day - used)       # without the others
            if left == 0:                                # used up: say so before sending
                frees_at = oldest + DAY if oldest is not None else None
                when = f"; the next request frees up at {format_epoch(frees_at)}" if frees_at else ""
                raise BudgetExhausted(
                    f"daily request budget used up ({used} of {self.max_per_day} in the last 24 h)"
                    f"{when}; this {what} sent nothing", used=used, limit=self.max_per_day,
                    frees_at=frees_at)
            free = max(0, left - others)                 # for this run
            wanted = left if amount is None else max(0, int(amount))
            if wanted > free:
                if others:                    # the others stand in the way: wait for them
                    return holders
                if not keeps_progress:        # free == left > 0 here
                    needed = ("the rest of the day's budget" if amount is None
                              else f"{wanted} request(s)")
                    raise BudgetExhausted(
                        f"today's budget cannot finish this {what}: it needs {needed}, {free} of "
                        f"{self.max_per_day} are left, and it cannot keep partial progress; "
                        "nothing was sent", used=used, limit=self.max_per_day,
                        frees_at=oldest + DAY if oldest is not None else None)
                wanted = free                 # it keeps its progress: it uses what is left
            row_id = conn.execute(
                "INSERT INTO reservations (what, pid, host, amount, spent, created, expires) "
                "VALUES (?, ?, ?, ?, 0, ?, ?)",
                (what, os.getpid(), _HOST, wanted, now, now + RESERVATION_TTL)).lastrowid
            self._reservation_id = int(row_id)
            return Reservation(self, int(row_id), wanted)

    def reserve_more(self, unspent: int) -> None:
        """This run's reservation (if it holds one) becomes ``unspent`` more requests."""
        if self._reservation_id is not None:
            self._resize(self._reservation_id, unspent)

    def keep_alive(self) -> None:
        """This run is alive (sleeping for the budget, say): its reservation does not lapse."""
        if self._reservation_id is not None:
            with self._transaction() as conn:
                conn.execute("UPDATE reservations SET expires = ? WHERE id = ?",
                             (self.clock.time() + RESERVATION_TTL, self._reservation_id))

    def _resize(self, reservation_id: int, amount: int) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE reservations SET amount = spent + ?, expires = ? WHERE id = ?",
                         (max(0, int(amount)), self.clock.time() + RESERVATION_TTL, reservation_id))

    def _release(self, reservation_id: int) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        if self._reservation_id == reservation_id:
            self._reservation_id = None

    def _holders(self, conn: sqlite3.Connection, now: float, *, own: bool = False) -> list[Holder]:
        """The other runs' reservations (with ``own``, this run's too), after releasing
        stale ones (a dead pid on this host; an expired one anywhere). Call inside a
        transaction."""
        rows = conn.execute(
            "SELECT id, what, pid, host, amount, spent, expires FROM reservations").fetchall()
        holders = []
        for row_id, what, pid, host, amount, spent, expires in rows:
            if expires <= now or (host == _HOST and not _pid_alive(pid)):
                conn.execute("DELETE FROM reservations WHERE id = ?", (row_id,))
                log.debug("released the stale reservation of %s (pid %s on %s)", what, pid, host)
                continue
            if row_id == self._reservation_id and not own:
                continue
            holders.append(Holder(what, int(pid), host, max(0, int(amount) - int(spent))))
        return holders

    def _check_server(self, conn: sqlite3.Connection, now: float) -> None:
        until = _server_exhausted_until(conn, now)
        if until is not None:
            raise BudgetExhausted(
                "IntakeQ answered 429 for the day (its quota is shared with the practice's other "
                f"integrations); nothing is sent before {format_epoch(until)}, when it frees up "
                "per the server", frees_at=until)

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
            self._check_server(conn, now)
            if self.max_per_day:
                self._check_daily_budget(conn, now)
            wait = self._minute_wait(conn, now)
            if self._reservation_id is not None:      # still running: not stale
                conn.execute("UPDATE reservations SET expires = ? WHERE id = ?",
                             (now + max(wait, 0.0) + RESERVATION_TTL, self._reservation_id))
            if wait > 0:
                return float(wait)
            row_id = conn.execute("INSERT INTO requests (ts) VALUES (?)", (now,)).lastrowid
            if self._reservation_id is not None:
                conn.execute("UPDATE reservations SET spent = spent + 1 WHERE id = ?",
                             (self._reservation_id,))
            if row_id % PRUNE_EVERY == 0:
                conn.execute("DELETE FROM requests WHERE ts <= ?", (now - DAY,))
            return int(row_id)

    def _check_daily_budget(self, conn: sqlite3.Connection, now: float) -> None:
        used, oldest = conn.execute(
            "SELECT COUNT(*), MIN(ts) FROM requests WHERE ts > ?", (now - DAY,)).fetchone()
        if used >= self.max_per_day:
            # The oldest row leaves the 24 h window first; that frees the next request.
            raise BudgetExhausted(used=used, limit=self.max_per_day, frees_at=oldest + DAY)
        holders = self._holders(conn, now)
        others = sum(h.unspent for h in holders)
        if used + others >= self.max_per_day:
            raise BudgetReserved(
                "the rest of today's budget is reserved by another run of this account: "
                + "; ".join(h.describe() for h in holders)
                + "; run again when it has finished", holders=holders,
                used=used, limit=self.max_per_day, frees_at=None)

    def _minute_wait(self, conn: sqlite3.Connection, now: float) -> float:
        # A count (on the ts index), not the rows: this runs before every request.
        (in_window,) = conn.execute("SELECT COUNT(*) FROM requests WHERE ts > ?", (now - MINUTE,)).fetchone()
        excess = in_window - self.max_per_minute
        if excess < 0:
            return 0.0
        # Wait until enough of the oldest rows have left the window for one more.
        (leaves_at,) = conn.execute("SELECT ts FROM requests WHERE ts > ? ORDER BY ts LIMIT 1 OFFSET ?",
                                    (now - MINUTE, excess)).fetchone()
        return max(leaves_at + MINUTE - now, 0.0) or 1e-6

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


class Reservation:
    """A run's hold on the daily budget (``amount`` requests when made); released on exit
    of its ``with`` block (or by :meth:`release`). ``id`` None: nothing was reserved (no
    daily budget)."""

    def __init__(self, ledger: Ledger, reservation_id: int | None, amount: int):
        self.ledger = ledger
        self.id = reservation_id
        self.amount = amount

    def resize(self, unspent: int) -> None:
        """From now on, ``unspent`` more requests are reserved (a plan made, a count known)."""
        if self.id is not None:
            self.ledger._resize(self.id, unspent)

    def release(self) -> None:
        if self.id is not None:
            self.ledger._release(self.id)
            self.id = None

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, OverflowError):
        return True          # someone else's process: alive
    return True


def _server_exhausted_until(conn: sqlite3.Connection, now: float) -> float | None:
    row = conn.execute("SELECT exhausted_until FROM server_quota WHERE id = 1").fetchone()
    if row is None or row[0] <= now:
        return None
    return float(row[0])


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
