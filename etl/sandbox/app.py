"""The sandbox's HTTP side: routes, auth, limits, faults, the request log, the server.

Routes (under ``/api/v1/``, path and query-parameter names case-insensitive):
``GET clients``, ``POST clients``, ``POST clientTags``, ``DELETE clientTags``,
``GET client/<id>/diagnoses``. Anything else (other paths, PUT, any other method on a
known path) answers an HTML "Page Not Found" page with status 200, as observed.

Order of checks for an API request: route -> auth (empty/missing ``X-Auth-Key`` -> 500,
wrong key -> 401) -> ``force_429`` -> limits (429) -> ``fail_before`` fault (503) ->
the endpoint (4xx JSON ``{"Message": ...}`` when refused) -> for a write that took
effect: ``write_latency`` sleep, then ``lost_response`` fault (502). 502/503 bodies are
HTML, as a gateway's would be (clients must check the status and Content-Type).

Limits are counted by the server clock from when a request arrives: ``per_minute`` in a
sliding 60 s window, ``per_day`` in a rolling 24 h; 0 = unlimited; only requests that
passed auth and were not answered 429 count. ``Retry-After`` is the whole seconds until a
slot frees (``retry_after=True``), a fixed number, or absent (``False``).

Request bodies are parsed as JSON whatever their Content-Type (checking it is left to
the client); JSON answers are ``application/json; charset=utf-8``, compact, UTF-8.
"""
from __future__ import annotations

import io
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from ..clock import SystemClock
from ..config import DEFAULT_MAX_PER_DAY, DEFAULT_MAX_PER_MINUTE, is_loopback
from .faults import FaultInjector, Faults
from .store import Query, Rejected, Store, day_bounds

API_PREFIX = "/api/v1/"
DEFAULT_CLIENTS = 300
JSON_TYPE = "application/json; charset=utf-8"
NOT_FOUND_HTML = (
    "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Page Not Found</title></head>\n"
    "<body>\n<h1>Page Not Found</h1>\n<p>Sorry, the page you requested could not be found.</p>\n"
    "</body>\n</html>\n"
)
GATEWAY_HTML = "<!DOCTYPE html>\n<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>\n"
_DIAGNOSES = re.compile(r"^client/(\d+)/diagnoses$", re.IGNORECASE)
_CUSTOM_BRACKET = re.compile(r"^custom\[(.+)\]$", re.IGNORECASE)
WRITE_METHODS = ("POST", "DELETE")


@dataclass
class LogEntry:
    method: str
    path: str
    query: dict
    status: int
    time: float


@dataclass
class _Limits:
    per_minute: int = DEFAULT_MAX_PER_MINUTE
    per_day: int = DEFAULT_MAX_PER_DAY
    retry_after: bool | float = True
    minute: deque = field(default_factory=deque)
    day: deque = field(default_factory=deque)


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's request handler, with keep-alive connections (as IntakeQ's servers keep
    them) and no line a request on stderr.

    werkzeug's own ``run_wsgi`` closes every connection and then waits for the client to
    close its end: a new connection and thread for every request, most of a look-up's time
    in a bench. Here the request body is read whole by its Content-Length before the app
    runs, and the answer is sent with a Content-Length, so the next request on the
    connection starts cleanly.
    """

    disable_nagle_algorithm = True     # headers and body are two writes: no 40 ms delayed-ACK stall
    timeout = 120                      # an idle kept-alive connection is closed after this (seconds)

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:        # stop() closes the connections still open
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_request(self, *args, **kwargs):  # no per-request lines on stderr
        pass

    def run_wsgi(self) -> None:
        environ = self.make_environ()
        if self.request_version != "HTTP/1.1":
            self.close_connection = True                  # HTTP/1.0 keep-alive is not offered
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True                  # werkzeug reads it; no keep-alive
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:                            # as werkzeug: no body, and no keep-alive
                length, self.close_connection = 0, True
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        started: list = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return lambda data: None

        try:
            result = self.server.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            status, headers = started
        except Exception:                                # the app answers 500 itself; this is a bug here
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            status, headers, body = "500 Internal Server Error", [("Content-Type", "text/plain")], b"error"
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


class SandboxServer:
    """A local emulator of the IntakeQ Client API on 127.0.0.1 (a threaded werkzeug server).

    ``clock`` (an addition to the team contract) is injected into the store: dates, the
    10-day deleted window and the limits follow it. ``state_path``: the account is loaded
    from that JSON file if it exists, and written to it after every mutation.
    """

    def __init__(self, store: Store | None = None, *, api_key: str = "sandbox-key",
                 host: str = "127.0.0.1", port: int = 0, per_minute: int = DEFAULT_MAX_PER_MINUTE,
                 per_day: int = DEFAULT_MAX_PER_DAY,
                 retry_after: bool | float = True, faults: Faults | None = None,
                 state_path: Path | str | None = None, clock=None):
        if not is_loopback(host):
            raise ValueError("the sandbox only listens on a loopback address (127.0.0.1)")
        self.clock = clock or (store.clock if store is not None else SystemClock())
        self.state_path = Path(state_path) if state_path else None
        if store is None:
            if self.state_path is not None and self.state_path.exists():
                store = Store.load(self.state_path, clock=self.clock)
            else:
                store = Store.seeded(DEFAULT_CLIENTS, 1, clock=self.clock)
        store.clock = self.clock
        if self.state_path is not None:
            store.state_path = self.state_path
            if not self.state_path.exists():
                store.persist()
        self.store = store
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._limits = _Limits(per_minute, per_day, retry_after)
        self._faults = FaultInjector(faults)
        self._forced = 0
        self._forced_retry_after: float | None = None
        self._api_requests = 0
        self._server = None
        self._thread: threading.Thread | None = None
        self._busy = 0                           # requests being answered (wait_idle)
        self._idle = threading.Condition()

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    def start(self) -> "SandboxServer":
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self, threaded=True,
                                   request_handler=_QuietHandler)
        self._server.connections, self._server.connections_lock = set(), threading.Lock()
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"intakeq-sandbox:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._server.connections_lock:   # kept-alive connections end too: a stopped sandbox answers nothing
            for conn in list(self._server.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- test and operator controls --------------------------------------------------------
    def reset(self, *, n_clients: int = 20, seed: int = 1) -> None:
        """A fresh seeded account; log cleared; limits, forced 429s and faults off. Requests
        still being answered (a killed client's) finish first, so none lands in the new log."""
        self.wait_idle()
        store = Store.seeded(n_clients, seed, clock=self.clock, state_path=self.state_path)
        store.persist()
        with self._lock:
            self.store = store
            self.log.clear()
            self._limits = _Limits(0, 0, True)
            self._faults = FaultInjector(None)
            self._forced = 0
            self._forced_retry_after = None
            self._api_requests = 0

    def configure(self, *, per_minute: int | None = None, per_day: int | None = None,
                  retry_after: bool | float | None = None, faults: Faults | None = None) -> None:
        """Change limits (0 = unlimited), Retry-After behaviour, faults; None = unchanged."""
        with self._lock:
            if per_minute is not None:
                self._limits.per_minute = per_minute
            if per_day is not None:
                self._limits.per_day = per_day
            if retry_after is not None:
                self._limits.retry_after = retry_after
            if faults is not None:
                self._faults = FaultInjector(faults)

    def force_429(self, count: int, retry_after: float | None = None) -> None:
        """The next ``count`` API requests answer 429 (with ``Retry-After`` if given)."""
        with self._lock:
            self._forced = count
            self._forced_retry_after = retry_after

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    @property
    def injected_faults(self) -> list[tuple[str, int]]:
        """(kind, API request number) of every fault injected since the last configure/reset."""
        return list(self._faults.injected)

    def requests(self, method: str | None = None, path: str | None = None) -> list[LogEntry]:
        """Log entries, filtered by method and path ("clients", "/api/v1/clients"; no case)."""
        out = []
        want = path.strip("/").lower() if path else None
        for entry in list(self.log):
            if method and entry.method.upper() != method.upper():
                continue
            if want is not None:
                have = entry.path.strip("/").lower()
                if have != want and not have.endswith("/" + want):
                    continue
            out.append(entry)
        return out

    # ---- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        received = self.clock.time()
        request = Request(environ)
        with self._idle:
            self._busy += 1
        try:
            try:
                response = self._dispatch(request, received)
            except Exception:  # a sandbox bug: say so loudly, answer 500
                traceback.print_exc(file=sys.stderr)
                response = _json({"Message": "An error has occurred."}, 500)
            self.log.append(LogEntry(request.method, request.path, dict(request.args.items()),
                                     response.status_code, received))
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
        return response(environ, start_response)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being answered (a killed client's last one may still be
        in its ``write_latency``): then ``log`` holds every request received so far."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _dispatch(self, request: Request, received: float) -> Response:
        route = _route(request.method, request.path)
        if route is None:
            return Response(NOT_FOUND_HTML, 200, content_type="text/html; charset=utf-8")
        key = request.headers.get("X-Auth-Key", "")
        if not key.strip():
            return _json({"Message": "An error has occurred."}, 500)
        if key != self.api_key:
            return _json({"Message": "Authorization has been denied for this request."}, 401)
        refused = self._admit(received)
        if refused is not None:
            return refused
        with self._lock:
            self._api_requests += 1
            number = self._api_requests
            faults = self._faults
        if faults.fail_before(number):
            return _gateway(503, "503 Service Unavailable")
        name, arg = route
        store = self.store
        try:
            payload = getattr(self, "_api_" + name)(store, request, arg)
        except Rejected as exc:
            return _json({"Message": exc.message}, exc.status)
        if request.method in WRITE_METHODS:
            if faults.write_latency > 0:
                time.sleep(faults.write_latency)  # real time: a client may die meanwhile
            if faults.lose_response(number):
                return _gateway(502, "502 Bad Gateway")
        return _json(payload, 200)

    def _admit(self, now: float) -> Response | None:
        """force_429 and the limits; records the request when admitted."""
        with self._lock:
            if self._forced > 0:
                self._forced -= 1
                seconds = self._forced_retry_after
                return _too_many("Too many requests (forced by the sandbox).",
                                 None if seconds is None else math.ceil(seconds))
            lim = self._limits
            while lim.minute and lim.minute[0] <= now - 60:
                lim.minute.popleft()
            while lim.day and lim.day[0] <= now - 86_400:
                lim.day.popleft()
            waits, reasons = [], []
            if lim.per_minute and len(lim.minute) >= lim.per_minute:
                waits.append(lim.minute[-lim.per_minute] + 60 - now)
                reasons.append(f"{lim.per_minute} requests per minute")
            if lim.per_day and len(lim.day) >= lim.per_day:
                waits.append(lim.day[-lim.per_day] + 86_400 - now)
                reasons.append(f"{lim.per_day} requests per day")
            if waits:
                if lim.retry_after is True:
                    header = max(1, math.ceil(max(waits)))
                elif lim.retry_after is False:
                    header = None
                else:
                    header = math.ceil(lim.retry_after)
                return _too_many("API rate limit exceeded: " + " and ".join(reasons) + ".", header)
            lim.minute.append(now)
            lim.day.append(now)
            return None

    # ---- endpoints -------------------------------------------------------------------------
    def _api_list(self, store: Store, request: Request, _):
        params = _params(request)
        raw_page = params.get("page", "").strip()
        try:
            page = max(1, int(raw_page)) if raw_page else 1
        except ValueError:
            raise Rejected(400, f"The value '{raw_page}' is not valid for page.") from None
        include = params.get("includeprofile", "").strip().lower() == "true"
        return store.page(_query(request, params), page, include)

    def _api_save(self, store: Store, request: Request, _):
        return store.save_client(_body(request))

    def _api_add_tag(self, store: Store, request: Request, _):
        body = _body(request)
        if not isinstance(body, dict):
            raise Rejected(400, "The request is invalid.")
        lower = {str(k).lower(): v for k, v in body.items()}
        store.add_tag(lower.get("clientid"), lower.get("tag"))
        return None

    def _api_remove_tag(self, store: Store, request: Request, _):
        params = _params(request)
        store.remove_tag(params.get("clientid"), params.get("tag"))
        return None

    def _api_diagnoses(self, store: Store, request: Request, client_id: int):
        return store.get_diagnoses(client_id)


def _route(method: str, path: str):
    if not path.lower().startswith(API_PREFIX):
        return None
    rest = unquote(path[len(API_PREFIX):]).strip("/").lower()
    method = method.upper()
    if rest == "clients":
        return {"GET": ("list", None), "POST": ("save", None)}.get(method)
    if rest == "clienttags":
        return {"POST": ("add_tag", None), "DELETE": ("remove_tag", None)}.get(method)
    m = _DIAGNOSES.match(rest)
    if m and method == "GET":
        return ("diagnoses", int(m.group(1)))
    return None


def _params(request: Request) -> dict:
    """Query parameters with lower-cased names (first value wins)."""
    out = {}
    for key, value in request.args.items(multi=True):
        out.setdefault(key.lower(), value)
    return out


def _query(request: Request, params: dict) -> Query:
    bounds = {}
    for name, attr, end in (("datecreatedstart", "created_from", False),
                            ("datecreatedend", "created_before", True),
                            ("dateupdatedstart", "updated_from", False),
                            ("dateupdatedend", "updated_before", True)):
        raw = params.get(name, "").strip()
        if raw:
            try:
                bounds[attr] = day_bounds(raw, end=end)
            except ValueError:
                original = next(k for k in request.args if k.lower() == name)
                raise Rejected(400, f"The value '{raw}' is not valid for {original}; "
                                    "use the date format yyyy-MM-dd.") from None
    custom = {}
    for key, value in request.args.items(multi=True):
        field_id = None
        if key.lower().startswith("custom.") and len(key) > 7:
            field_id = key[7:]
        else:
            m = _CUSTOM_BRACKET.match(key)
            if m:
                field_id = m.group(1)
        if field_id is not None:
            custom.setdefault(field_id.casefold(), value)
    search = params.get("search", "").strip() or None
    if search is not None and search.isascii() and search.isdigit():
        search = str(int(search))  # "0204" -> "204": exact ClientId
    return Query(search=search, custom=tuple(sorted(custom.items())),
                 external_id=params.get("externalclientid") or None,
                 deleted_only=params.get("deletedonly", "").strip().lower() == "true",
                 **bounds)


def _body(request: Request):
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "The request is invalid.") from None


def _json(payload, status: int, headers=None) -> Response:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), status, headers=headers, content_type=JSON_TYPE)


def _too_many(message: str, retry_after: int | None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _json({"Message": message}, 429, headers)


def _gateway(status: int, text: str) -> Response:
    return Response(GATEWAY_HTML.format(status=text), status, content_type="text/html; charset=utf-8")
