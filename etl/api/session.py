"""The bottom layer: one HTTP exchange with the API, and what its answer means.

``ApiSession.send`` joins the path to the base URL, adds ``X-Auth-Key``, the timeout and
our User-Agent, and returns the raw response (requests' exceptions pass through: the
retry layer decides about them). ``ApiSession.decode`` turns a final response into JSON
or into the error it stands for.

Logs name the method, the path (never the query: a search can hold an email), the status
and the elapsed time. Nothing here ever puts the key or client data in a message.
"""
from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import urljoin

import requests

from .. import __version__
from ..config import ENV_BASE_URL, Settings
from ..errors import AuthError, NotJsonError, RequestRejected, TransientApiError

log = logging.getLogger("etl.api")

USER_AGENT = f"intakeq-etl/{__version__}"
CONNECT_TIMEOUT = 15.0
MAX_MESSAGE_CHARS = 200


class ApiSession:
    """HTTP to one account: base URL, key header, timeout, User-Agent."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.base_url = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self._key = settings.require_key()
        self._timeout = (min(CONNECT_TIMEOUT, settings.timeout), settings.timeout)
        self._http = session if session is not None else _session_for(self.base_url)
        self._owns_http = session is None

    def __repr__(self) -> str:
        return f"ApiSession({self.base_url!r})"

    def url_for(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def send(self, method: str, path: str, *, params: dict | None = None,
             json_body=None) -> requests.Response:
        """Send one request and return its response, whatever the status."""
        headers = {"X-Auth-Key": self._key, "User-Agent": USER_AGENT,
                   "Accept": "application/json"}
        started = _monotonic()
        try:
            response = self._http.request(
                method, self.url_for(path), params=params, json=json_body, headers=headers,
                timeout=self._timeout,
                # A redirect would carry X-Auth-Key to wherever it points: never follow.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.debug("%s %s -> %s after %.2fs", method, path, type(exc).__name__,
                     _monotonic() - started)
            raise
        log.debug("%s %s -> %s in %.2fs", method, path, response.status_code,
                 _monotonic() - started)
        return response

    def decode(self, response: requests.Response, method: str, path: str, *,
               body_required: bool = True):
        """The JSON of a successful response, or the error the response stands for."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(status=status)
        if status >= 500:
            raise TransientApiError(f"{method} {path}: the server failed ({status})", status)
        if 300 <= status < 400:
            raise RequestRejected(
                f"{method} {path}: the server redirected ({status}) and redirects are not "
                f"followed (they would carry the API key); check {ENV_BASE_URL}", status)
        if looks_like_html(response):
            raise NotJsonError(
                f"expected JSON from {path}, got {content_type(response) or 'an HTML page'}"
                f" (status {status}); check {ENV_BASE_URL}", status)
        if status >= 400:
            raise RequestRejected(f"{method} {path} was rejected ({status}): "
                                  f"{api_message(response)}", status)
        if not body_required:
            # Tag endpoints: the doc promises only "200 OK"; any non-HTML 2xx will do.
            return None
        return parse_json(response, path)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


def _session_for(base_url: str) -> requests.Session:
    """A requests Session with the environment's proxy and CA settings for ``base_url``
    read once: every request goes to that one host, and requests would otherwise read
    them again for each (a walk of ``os.environ`` and a ``.netrc`` look-up a request,
    about 1 ms). No ``.netrc`` credentials: the key header is the only authentication."""
    http = requests.Session()
    env = http.merge_environment_settings(base_url, {}, None, None, None)
    http.trust_env = False
    http.proxies.update(env["proxies"])
    http.verify = env["verify"]
    return http


def content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def is_json_type(ctype: str) -> bool:
    return ctype in ("application/json", "text/json") or ctype.endswith("+json")


def looks_like_html(response: requests.Response) -> bool:
    if content_type(response) in ("text/html", "application/xhtml+xml"):
        return True
    return response.content.lstrip()[:1] == b"<"


def parse_json(response: requests.Response, path: str):
    ctype = content_type(response)
    if not is_json_type(ctype):
        raise NotJsonError(f"expected JSON from {path}, got {ctype or 'no content type'}; "
                           f"check {ENV_BASE_URL}", response.status_code)
    try:
        return response.json()
    except ValueError:
        raise NotJsonError(f"expected JSON from {path}, got a body that is not valid JSON; "
                           f"check {ENV_BASE_URL}", response.status_code) from None


def api_message(response: requests.Response) -> str:
    """The API's ``Message`` from a JSON error body, else a short text of the body."""
    text = ""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = str(body.get("Message") or body.get("message") or "")
    elif isinstance(body, str):
        text = body
    if not text and body is None:
        text = response.content.decode("utf-8", "replace")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS - 1] + "…"
    return text or response.reason or "no message"


def _monotonic() -> float:
    return time.monotonic()
