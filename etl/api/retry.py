"""The retry layer: what to do when an attempt did not give a usable answer.

* **429** (any method, writes included: a 429 was not processed): wait as ``Retry-After``
  says (seconds or an HTTP date); without it, back off exponentially with jitter (5 s
  doubling, capped at 120 s). A wait beyond ``MAX_WAIT`` (alone or in total) means the
  server's quota for the day is gone: raise ``BudgetExhausted`` instead of sleeping for
  hours (with ``server_says`` set when Retry-After named the moment: the client records
  it in the ledger, so that no run asks again before then).
* **GET** is also retried on connection errors, timeouts and 5xx, a few times with a
  short jittered backoff; then a connection failure is ``ApiUnreachable`` naming the URL,
  and a 5xx is returned for the session to turn into ``TransientApiError``.
* **POST/DELETE** failing with a connection error or timeout raise ``TransientApiError``
  at once: their effect is uncertain, and the import decides how to repeat them safely.

This is a hand-written loop rather than urllib3's ``Retry``: urllib3 would resend below
our ledger, so its retries would escape the throttle and the daily budget. Here every
attempt calls ``attempt()``, which reserves and completes a ledger row.
"""
from __future__ import annotations

import logging
import random
import re
from email.utils import parsedate_to_datetime
from typing import Callable

import requests

from ..errors import ApiUnreachable, BudgetExhausted, TransientApiError, format_epoch

log = logging.getLogger("etl.api")

MAX_WAIT = 300.0               # seconds; a longer 429 wait means the day's quota is gone
RATE_LIMIT_BACKOFF = 5.0       # first wait after a 429 without Retry-After
RATE_LIMIT_BACKOFF_CAP = 120.0
READ_RETRIES = 3               # extra attempts of a GET after a network error or 5xx
READ_BACKOFF = 1.0             # first wait before such a retry, doubling

NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout,
                  requests.exceptions.ChunkedEncodingError)
SAFE_METHODS = frozenset({"GET"})


class RetryPolicy:
    """Runs one logical request: attempts, waits and retries, through the clock."""

    def __init__(self, clock, *, base_url: str, rng: random.Random | None = None):
        self.clock = clock
        self.base_url = base_url
        self.rng = rng or random.Random()

    def run(self, method: str, path: str,
            attempt: Callable[[], requests.Response]) -> requests.Response:
        method = method.upper()
        rate_limit_waits: list[float] = []
        failures = 0
        while True:
            try:
                response = attempt()
            except NETWORK_ERRORS as exc:
                if method not in SAFE_METHODS:
                    raise self._uncertain_write(method, path, exc) from None
                if failures >= READ_RETRIES:
                    raise ApiUnreachable(f"cannot reach {self.base_url}: {short_reason(exc)}") from None
                failures += 1
                log.info("%s %s failed (%s): retrying", method, path, short_reason(exc))
                self.clock.sleep(self._read_backoff(failures))
                continue
            if response.status_code == 429:
                wait = self._rate_limit_wait(response, rate_limit_waits)
                log.info("%s %s answered 429 (too many requests): waiting %.1f s", method, path, wait)
                self.clock.sleep(wait)
                continue
            if response.status_code >= 500 and method in SAFE_METHODS and failures < READ_RETRIES:
                failures += 1
                log.info("%s %s answered %s: retrying", method, path, response.status_code)
                self.clock.sleep(self._read_backoff(failures))
                continue
            return response

    def _rate_limit_wait(self, response: requests.Response, earlier: list[float]) -> float:
        """The wait before resending after a 429, or BudgetExhausted if it is too long."""
        now = self.clock.time()
        asked = retry_after_seconds(response.headers.get("Retry-After"), now)
        if asked is not None:
            wait = asked
        else:
            wait = self._rate_limit_backoff(len(earlier))
        if wait > MAX_WAIT or sum(earlier) + wait > MAX_WAIT:
            raise server_quota_exhausted(wait if asked is not None else None, now)
        earlier.append(wait)
        return wait

    def _rate_limit_backoff(self, n_earlier: int) -> float:
        base = min(RATE_LIMIT_BACKOFF * 2 ** n_earlier, RATE_LIMIT_BACKOFF_CAP)
        return min(base * (1 + 0.25 * self.rng.random()), RATE_LIMIT_BACKOFF_CAP)

    def _read_backoff(self, failures: int) -> float:
        return READ_BACKOFF * 2 ** (failures - 1) * (0.5 + self.rng.random())

    def _uncertain_write(self, method: str, path: str, exc: Exception) -> TransientApiError:
        return TransientApiError(
            f"{method} {path}: {short_reason(exc)} ({self.base_url}); "
            "whether it took effect is unknown")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def server_quota_exhausted(wait: float | None, now: float) -> BudgetExhausted:
    if wait is None:
        return BudgetExhausted(
            "the server keeps answering 429 (too many requests) after backing off for "
            f"{MAX_WAIT:.0f} s: its request quota for this account is used up; try again later")
    frees_at = now + wait
    exc = BudgetExhausted(
        f"the server reports the request quota used up (429, retry after {wait:.0f} s); "
        f"the next request frees up at {format_epoch(frees_at)}", frees_at=frees_at)
    exc.server_says = True      # the client records it in the ledger: no re-run asks again
    return exc


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def short_reason(exc: Exception) -> str:
    """A one-line cause without URLs or queries (requests' messages repeat the full URL,
    whose query may hold client data)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/certificate error"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip().rstrip(".").lower()
    text = str(exc)
    for known in ("Name or service not known", "Connection refused", "Connection reset",
                  "Connection aborted", "Remote end closed connection"):
        if known.lower() in text.lower():
            return known.lower()
    return type(exc).__name__
