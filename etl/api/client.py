"""The IntakeQ Client API: endpoints and paging, on top of the lower layers.

Layers, bottom up: :class:`~etl.api.session.ApiSession` (one HTTP exchange, status and
JSON checks) → :class:`~etl.api.ledger.Ledger` (minute throttle and daily budget, shared
by processes) → :class:`~etl.api.retry.RetryPolicy` (429, network errors, 5xx) → this
client (endpoints, query parameters, paging).
"""
from __future__ import annotations

import logging
import random
import re
import threading
from contextlib import contextmanager
from datetime import date, datetime
from typing import Callable, Iterator

import requests

from ..clock import SystemClock
from ..config import Settings
from ..errors import ApiError, BudgetExhausted, ConfigError, WrongShapeError
from .ledger import Ledger, Reservation, Waiting
from .retry import RetryPolicy
from .session import ApiSession

log = logging.getLogger(__name__)

PAGE_SIZE = 100
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class IntakeQClient:
    """A quota-aware client of one IntakeQ account.

    Refuses bad settings (a plain-http remote URL, no key) before anything is sent.
    ``requests_sent`` counts every attempt this object sent, retries included.

    ``wait_for_others``: when another run of the account holds the budget a run needs,
    :meth:`hold_budget` waits for it (True) or raises ``BudgetReserved`` (False, exit 75);
    ``on_wait`` hears each look while waiting (a terminal's countdown); ``on_throttle``
    hears the per-minute limit's waits, second by second (seconds left; None when over).
    """

    def __init__(self, settings: Settings, *, clock=None,
                 session: requests.Session | None = None, rng: random.Random | None = None,
                 wait_for_others: bool = True, on_wait: Callable[[Waiting], None] | None = None,
                 on_throttle: Callable[[float | None], None] | None = None):
        settings.check()
        settings.require_key()
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ledger = Ledger.for_settings(settings, clock=self.clock)
        self.ledger.on_throttle = on_throttle
        self.wait_for_others = wait_for_others
        self.on_wait = on_wait
        self.requests_sent = 0
        self.writes_sent = 0          # POST/DELETE attempts: after one, a stop leaves work half done
        self._session = ApiSession(settings, session)
        self._retry = RetryPolicy(self.clock, base_url=self._session.base_url, rng=rng)

    def __repr__(self) -> str:
        return f"IntakeQClient({self._session.base_url!r}, account={self.settings.account_id})"

    def __enter__(self) -> "IntakeQClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()
        self.ledger.close()

    # -- clients -----------------------------------------------------------------------

    def iter_pages(self, *, include_profile: bool = True, search=None, date_created_start=None,
                   date_created_end=None, date_updated_start=None, date_updated_end=None,
                   custom: dict[str, str] | None = None, external_client_id=None,
                   deleted_only: bool = False, first_page: int = 1) -> Iterator[list[dict]]:
        """GET clients page by page (100 a page) until a short page.

        Sends exactly ceil(N/100) requests, plus one when N is a multiple of 100
        (``first_page``: start there, e.g. to resume a listing).
        """
        params = client_query(include_profile=include_profile, search=search,
                              date_created_start=date_created_start,
                              date_created_end=date_created_end,
                              date_updated_start=date_updated_start,
                              date_updated_end=date_updated_end, custom=custom,
                              external_client_id=external_client_id, deleted_only=deleted_only)
        previous = None
        page_number = max(1, int(first_page))
        while True:
            page = self._get_clients({**params, "page": str(page_number)})
            if page and page == previous:
                raise ApiError("the server returned the same page twice (it ignores the "
                               "page parameter?); stopped to avoid an endless loop")
            yield page
            if len(page) < PAGE_SIZE:
                return
            previous = page
            page_number += 1

    def iter_clients(self, **filters) -> Iterator[dict]:
        """Every client matching ``filters`` (the keyword arguments of :meth:`iter_pages`)."""
        for page in self.iter_pages(**filters):
            yield from page

    def get_client(self, client_id: int) -> dict | None:
        """The full profile of one client, or None if there is no such client."""
        wanted = int(client_id)
        found = self._get_clients({"search": str(wanted), "includeProfile": "true"})
        for record in found:
            if _as_int(record.get("ClientId")) == wanted:
                return record
        return None

    def save_client(self, record: dict) -> dict:
        """POST the whole client (a save replaces every writable field); the saved profile."""
        saved = self._request("POST", "clients", json_body=record)
        if not isinstance(saved, dict):
            raise WrongShapeError(f"POST clients: expected the saved client as a JSON object, got "
                                  f"{json_kind(saved)}")
        if client_id_of(saved) is None:
            raise WrongShapeError("POST clients: the saved client has no valid ClientId (a positive "
                                  f"whole number; found {json_kind(saved.get('ClientId'))})")
        return saved

    def add_tag(self, client_id: int, tag: str) -> None:
        self._request("POST", "clientTags", json_body={"ClientId": int(client_id), "Tag": tag},
                      body_required=False)

    def remove_tag(self, client_id: int, tag: str) -> None:
        self._request("DELETE", "clientTags", params={"clientId": str(int(client_id)), "tag": tag},
                      body_required=False)

    def diagnoses(self, client_id: int) -> list[dict]:
        return self._get_list(f"client/{int(client_id)}/diagnoses")

    # -- quota -------------------------------------------------------------------------

    def estimate_seconds(self, n_requests: int) -> float:
        """Seconds ``n_requests`` more requests need at the minute limit (0 if they fit
        in the free slots of the current window)."""
        return self.ledger.estimate_seconds(n_requests)

    def hold_budget(self, amount: int | None, *, what: str, keeps_progress: bool = True) -> Reservation:
        """Reserve ``amount`` requests (None: the rest of today's budget) before a run's
        first request; a context manager that releases them. See :meth:`Ledger.hold`."""
        return self.ledger.hold(amount, what=what, keeps_progress=keeps_progress,
                                wait=self.wait_for_others, on_wait=self.on_wait)

    # -- plumbing ----------------------------------------------------------------------

    def _get_list(self, path: str, params: dict | None = None) -> list[dict]:
        """A GET whose answer must be a JSON list of objects (clients, diagnoses)."""
        body = self._request("GET", path, params=params)
        if not isinstance(body, list):
            raise WrongShapeError(f"GET {path}: expected a JSON list, got {json_kind(body)}")
        for n, item in enumerate(body, 1):
            if not isinstance(item, dict):
                raise WrongShapeError(f"GET {path}: item {n} of the list is {json_kind(item)}, "
                                      "not a JSON object")
        return body

    def _get_clients(self, params: dict) -> list[dict]:
        """GET clients; every record must name its client (a row without one is useless
        to an export and dangerous to an import)."""
        records = self._get_list("clients", params)
        for n, record in enumerate(records, 1):
            if client_id_of(record) is None:
                found = record.get("ClientId", record.get("ClientNumber"))
                raise WrongShapeError(f"GET clients: client {n} of the answer has no valid ClientId "
                                      f"(a positive whole number; found {json_kind(found)})")
        return records

    def _request(self, method: str, path: str, *, params: dict | None = None, json_body=None,
                 body_required: bool = True):
        def attempt() -> requests.Response:
            return self._send_counted(method, path, params, json_body)

        try:
            response = self._retry.run(method, path, attempt)
        except BudgetExhausted as exc:
            if getattr(exc, "server_says", False) and exc.frees_at is not None:
                self.ledger.record_server_exhausted(exc.frees_at)
            raise
        return self._session.decode(response, method, path, body_required=body_required)

    def _send_counted(self, method, path, params, json_body) -> requests.Response:
        """One attempt: reserve a ledger row (may wait or raise), send, record the arrival.

        After a stop request (Ctrl-C) no attempt starts, whichever loop asks for it (paging,
        a retry, verifying a lost write): the request in flight was the last one.
        """
        self.clock.raise_if_stopped()
        row_id = self.ledger.reserve()
        self.requests_sent += 1
        if method != "GET":
            self.writes_sent += 1
        try:
            with _note_when_slow(method, path, self.settings.timeout):
                return self._session.send(method, path, params=params, json_body=json_body)
        finally:
            self.ledger.complete(row_id)


SLOW_WRITE_NOTE = 10.0      # seconds without an answer to a write before the terminal says so


@contextmanager
def _note_when_slow(method: str, path: str, timeout: float):
    """Say what the run is waiting for when a write has no answer for a while: the server
    may hold it for up to the read timeout, and then the write is verified, not re-sent."""
    if method == "GET":
        yield
        return
    timer = threading.Timer(SLOW_WRITE_NOTE, log.info, args=(
        "waiting for IntakeQ to answer %s %s (no answer for %.0f s; after %.0f s without one the write "
        "is checked against IntakeQ, never sent again blindly)", method, path, SLOW_WRITE_NOTE, timeout))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def client_query(*, include_profile=True, search=None, date_created_start=None,
                 date_created_end=None, date_updated_start=None, date_updated_end=None,
                 custom=None, external_client_id=None, deleted_only=False) -> dict[str, str]:
    """Query parameters of GET clients, named exactly as the API doc names them."""
    params: dict[str, str] = {}
    if search not in (None, ""):
        params["search"] = str(search)
    if include_profile:
        params["includeProfile"] = "true"
    for name, value in (("dateCreatedStart", date_created_start),
                        ("dateCreatedEnd", date_created_end),
                        ("dateUpdatedStart", date_updated_start),
                        ("dateUpdatedEnd", date_updated_end)):
        if value is not None:
            params[name] = api_date(value, name)
    for field_id, value in (custom or {}).items():
        params[f"custom.{field_id}"] = str(value)
    if external_client_id not in (None, ""):
        params["externalClientId"] = str(external_client_id)
    if deleted_only:
        params["deletedOnly"] = "true"
    return params


def api_date(value, name: str = "date") -> str:
    """A date filter as the API wants it: 'yyyy-MM-dd'."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        return value.strip()
    raise ConfigError(f"{name} must be a date or a 'yyyy-MM-dd' string, not {value!r}")


def client_id_of(record: dict) -> int | None:
    """The record's ClientId (a short record has only ClientNumber), when it is a positive
    whole number (a JSON number, or digits in a string as in ClientNumber); else None."""
    value = record.get("ClientId", record.get("ClientNumber"))
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value > 0 else None


def json_kind(value) -> str:
    """What a JSON value is, for messages (never the value: it may be client data)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string" if value.strip() else "an empty JSON string"
    if isinstance(value, list):
        return "a JSON list"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
