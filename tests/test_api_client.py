"""The API client: paging, endpoints, 429s, errors, the quota command.

HTTP behaviour runs against the sandbox (a real server on 127.0.0.1); failure modes the
sandbox cannot produce on demand use a scripted stand-in for ``requests.Session``.
Every client that could wait gets a FakeClock: no test sleeps for real.
"""
from __future__ import annotations

import json
import logging
import socket
import time
from datetime import date
from email.utils import formatdate

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from etl.api import IntakeQClient
from etl.api.retry import MAX_WAIT, retry_after_seconds
from etl.clock import FakeClock
from etl.config import Settings
from etl.errors import (
    ApiUnreachable,
    AuthError,
    BudgetExhausted,
    ConfigError,
    NotJsonError,
    RequestRejected,
    TransientApiError,
)

SECRET_KEY = "not-the-real-key-7f3a9c"


# -- helpers ------------------------------------------------------------------------------

def api_requests(sandbox, method=None, endpoint=None):
    """Log entries of the sandbox, optionally for one method and endpoint ('clients')."""
    entries = list(sandbox.log)
    if method:
        entries = [e for e in entries if e.method == method]
    if endpoint:
        entries = [e for e in entries if e.path.rstrip("/").split("/")[-1] == endpoint]
    return entries


def any_client_id(sandbox) -> int:
    return sorted(sandbox.store.clients)[0]


def make_response(status=200, body=b"[]", ctype="application/json; charset=utf-8",
                  headers=None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers = CaseInsensitiveDict({"Content-Type": ctype, **(headers or {})})
    response.reason = "scripted"
    return response


class ScriptedHttp:
    """Stands in for requests.Session: answers with the scripted outcomes in order."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls: list[dict] = []

    def request(self, method, url, **kwargs):
        self.calls.append({"method": method, "url": url, **kwargs})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self):
        pass


@pytest.fixture
def offline_settings(tmp_path) -> Settings:
    """Settings for the scripted session: nothing is ever sent anywhere."""
    return Settings(api_key=SECRET_KEY, base_url="https://api.example.test/api/v1/",
                    max_per_minute=1_000_000, max_per_day=0, state_dir=tmp_path / "state")


def offline_client(settings, *outcomes) -> tuple[IntakeQClient, ScriptedHttp, FakeClock]:
    http = ScriptedHttp(*outcomes)
    clock = FakeClock()
    return IntakeQClient(settings, clock=clock, session=http), http, clock


# -- paging ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("n_clients", "expected_requests"),
                         [(0, 1), (99, 1), (100, 2), (101, 2), (250, 3)])
def test_paging_sends_exactly_the_needed_requests(sandbox, settings, n_clients, expected_requests):
    sandbox.reset(n_clients=n_clients)
    client = IntakeQClient(settings, clock=FakeClock())
    records = list(client.iter_clients())
    assert len(records) == n_clients
    assert len({r["ClientId"] for r in records}) == n_clients
    sent = api_requests(sandbox, "GET", "clients")
    assert len(sent) == expected_requests == client.requests_sent
    assert [str(e.query.get("page")) for e in sent] == [str(p) for p in range(1, expected_requests + 1)]
    assert client.ledger.usage().used_24h == expected_requests


def test_pages_carry_the_full_profile_by_default(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    page = next(client.iter_pages())
    assert page and all("CustomFields" in r and "ClientId" in r for r in page)
    short = next(client.iter_pages(include_profile=False))
    assert short and all("CustomFields" not in r for r in short)


def test_every_documented_query_parameter_is_sent_by_its_doc_name(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    list(client.iter_pages(search="zz-nobody", date_created_start=date(2020, 1, 2),
                           date_created_end="2030-12-31", date_updated_start="2021-01-01",
                           date_updated_end=date(2031, 1, 1), custom={"fld1": "x"},
                           external_client_id="ext-1", deleted_only=True))
    (entry,) = api_requests(sandbox, "GET", "clients")
    assert dict(entry.query) == {
        "search": "zz-nobody", "page": "1", "includeProfile": "true",
        "dateCreatedStart": "2020-01-02", "dateCreatedEnd": "2030-12-31",
        "dateUpdatedStart": "2021-01-01", "dateUpdatedEnd": "2031-01-01",
        "custom.fld1": "x", "externalClientId": "ext-1", "deletedOnly": "true",
    }


def test_bad_date_filter_is_refused_before_sending(offline_settings):
    client, http, _ = offline_client(offline_settings)
    with pytest.raises(ConfigError, match="yyyy-MM-dd"):
        list(client.iter_pages(date_created_start="02/01/2020"))
    assert http.calls == []


# -- endpoints ------------------------------------------------------------------------------

def test_get_client_returns_the_exact_match_or_none(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    wanted = any_client_id(sandbox)
    record = client.get_client(wanted)
    assert record["ClientId"] == wanted and "CustomFields" in record
    assert client.get_client(987654) is None
    queries = [e.query for e in api_requests(sandbox, "GET", "clients")]
    assert queries[0]["search"] == str(wanted) and queries[0]["includeProfile"] == "true"


def test_save_client_posts_the_whole_record_and_returns_the_saved_profile(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    record = client.get_client(any_client_id(sandbox))
    record["City"] = "Testville"
    saved = client.save_client(record)
    assert saved["ClientId"] == record["ClientId"] and saved["City"] == "Testville"
    assert sandbox.store.clients[record["ClientId"]]["City"] == "Testville"


def test_rejected_save_carries_the_api_message(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    with pytest.raises(RequestRejected) as caught:
        client.save_client({"Email": "x@example.test"})
    assert caught.value.status == 400
    assert "FirstName and LastName are mandatory" in caught.value.message
    assert "x@example.test" not in caught.value.message


def test_tags_are_added_and_removed(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    cid = any_client_id(sandbox)
    client.add_tag(cid, "etl-test-tag")
    assert "etl-test-tag" in sandbox.store.clients[cid]["Tags"]
    client.remove_tag(cid, "etl-test-tag")
    assert "etl-test-tag" not in sandbox.store.clients[cid]["Tags"]
    (post,) = api_requests(sandbox, "POST", "clientTags")
    (delete,) = api_requests(sandbox, "DELETE", "clientTags")
    assert post.status == delete.status == 200
    assert {k.lower(): v for k, v in delete.query.items()} == {"clientid": str(cid), "tag": "etl-test-tag"}


def test_diagnoses(sandbox, settings):
    client = IntakeQClient(settings, clock=FakeClock())
    cid = any_client_id(sandbox)
    sandbox.store.set_diagnoses(cid, [{"Code": "F41.1", "Description": "Anxiety", "Date": None,
                                       "EndDate": None, "NoteId": None}])
    found = client.diagnoses(cid)
    assert [d["Code"] for d in found] == ["F41.1"]
    (entry,) = api_requests(sandbox, "GET", "diagnoses")
    assert entry.path.endswith(f"client/{cid}/diagnoses")


# -- 429 ------------------------------------------------------------------------------------

def test_429_with_retry_after_is_honoured(sandbox, settings):
    clock = FakeClock()
    client = IntakeQClient(settings, clock=clock)
    sandbox.force_429(2, retry_after=7)
    assert client.get_client(any_client_id(sandbox)) is not None
    assert clock.slept == [7, 7]
    assert [e.status for e in api_requests(sandbox)] == [429, 429, 200]
    assert client.requests_sent == 3 == client.ledger.usage().used_24h


def test_429_without_retry_after_backs_off_exponentially(sandbox, settings):
    clock = FakeClock()
    client = IntakeQClient(settings, clock=clock)
    sandbox.force_429(2, retry_after=None)
    assert isinstance(client.diagnoses(any_client_id(sandbox)), list)
    first, second = clock.slept
    assert 5 <= first <= 6.25 and 10 <= second <= 12.5
    assert [e.status for e in api_requests(sandbox)] == [429, 429, 200]


def test_a_write_answered_429_is_sent_again(sandbox, settings):
    clock = FakeClock()
    client = IntakeQClient(settings, clock=clock)
    cid = any_client_id(sandbox)
    sandbox.force_429(1, retry_after=2)
    client.add_tag(cid, "after-429")
    assert [e.status for e in api_requests(sandbox, "POST", "clientTags")] == [429, 200]
    assert sandbox.store.clients[cid]["Tags"].count("after-429") == 1


def test_long_retry_after_means_the_servers_quota_is_gone(sandbox, settings):
    clock = FakeClock()
    client = IntakeQClient(settings, clock=clock)
    sandbox.force_429(1, retry_after=3600)
    with pytest.raises(BudgetExhausted) as caught:
        client.get_client(any_client_id(sandbox))
    assert caught.value.frees_at == pytest.approx(clock.time() + 3600)
    assert "429" in caught.value.message and "frees up at" in caught.value.message
    assert clock.slept == [] and len(api_requests(sandbox)) == 1


def test_endless_429_without_retry_after_gives_up_within_max_wait(offline_settings):
    client, http, clock = offline_client(offline_settings, *[make_response(429, b"")] * 20)
    with pytest.raises(BudgetExhausted, match="429"):
        client.get_client(1)
    assert sum(clock.slept) <= MAX_WAIT
    assert len(http.calls) == client.requests_sent <= 8


def test_retry_after_accepts_seconds_and_http_dates():
    now = 1_760_000_000.0
    assert retry_after_seconds("30", now) == 30
    assert retry_after_seconds(formatdate(now + 120, usegmt=True), now) == pytest.approx(120)
    assert retry_after_seconds(formatdate(now - 5, usegmt=True), now) == 0
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("soon", now) is None


# -- errors ---------------------------------------------------------------------------------

def test_401_names_the_variable_never_the_key(sandbox, settings, caplog):
    caplog.set_level(logging.DEBUG, logger="etl.api")
    client = IntakeQClient(settings.with_(api_key=SECRET_KEY), clock=FakeClock())
    with pytest.raises(AuthError) as caught:
        client.get_client(1)
    assert caught.value.message == "authentication failed: check INTAKEQ_API_KEY"
    assert SECRET_KEY not in str(caught.value) and SECRET_KEY not in repr(client)
    assert SECRET_KEY not in caplog.text
    assert api_requests(sandbox)[0].status == 401


def test_plain_http_to_a_remote_host_is_refused_before_any_request(tmp_path):
    http = ScriptedHttp()
    settings = Settings(api_key=SECRET_KEY, base_url="http://intakeq.com/api/v1/",
                        state_dir=tmp_path)
    with pytest.raises(ConfigError, match="https://"):
        IntakeQClient(settings, session=http)
    assert http.calls == []


def test_no_key_is_refused_before_any_request(tmp_path):
    http = ScriptedHttp()
    with pytest.raises(ConfigError, match="INTAKEQ_API_KEY"):
        IntakeQClient(Settings(api_key=None, state_dir=tmp_path), session=http)
    assert http.calls == []


def test_html_from_a_wrong_base_url_is_not_json(sandbox, settings):
    root = settings.base_url.split("/api/v1")[0] + "/"
    client = IntakeQClient(settings.with_(base_url=root), clock=FakeClock())
    with pytest.raises(NotJsonError, match="check INTAKEQ_BASE_URL"):
        list(client.iter_clients())


def test_html_answered_with_200_is_not_json(offline_settings):
    page = make_response(200, b"<!DOCTYPE html><html>Page Not Found</html>", "text/html")
    client, _, _ = offline_client(offline_settings, page)
    with pytest.raises(NotJsonError, match="expected JSON from clients, got text/html"):
        client.get_client(1)


def test_get_is_retried_on_5xx(offline_settings):
    client, http, clock = offline_client(
        offline_settings, make_response(503, b""), make_response(502, b""),
        make_response(200, [{"ClientId": 1}]))
    assert client.get_client(1) == {"ClientId": 1}
    assert len(http.calls) == client.requests_sent == 3 and len(clock.slept) == 2


def test_get_gives_up_after_bounded_5xx_retries(offline_settings):
    client, http, _ = offline_client(offline_settings, *[make_response(500, b"")] * 10)
    with pytest.raises(TransientApiError):
        client.diagnoses(1)
    assert len(http.calls) == 4


def test_writes_are_not_retried_after_5xx_or_lost_connections(offline_settings):
    client, http, _ = offline_client(offline_settings, make_response(502, b""),
                                     requests.ConnectionError("Connection reset by peer"),
                                     requests.ReadTimeout("read timed out"))
    for _ in range(3):
        with pytest.raises(TransientApiError):
            client.add_tag(1, "x")
    assert len(http.calls) == client.requests_sent == 3


def test_unreachable_server_is_one_line_naming_the_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # closed again below: nothing listens there
    base = f"http://127.0.0.1:{port}/api/v1/"
    settings = Settings(api_key=SECRET_KEY, base_url=base, state_dir=tmp_path, max_per_day=0)
    client = IntakeQClient(settings, clock=FakeClock())
    with pytest.raises(ApiUnreachable) as caught:
        list(client.iter_clients(search="someone@example.test"))
    message = caught.value.message
    assert message.startswith(f"cannot reach {base}: ") and "\n" not in message
    assert "someone" not in message and SECRET_KEY not in message
    assert client.requests_sent == 4


def test_redirects_are_not_followed(offline_settings):
    client, http, _ = offline_client(
        offline_settings, make_response(302, b"", "text/plain", {"Location": "https://evil.test/"}))
    with pytest.raises(RequestRejected, match="redirect"):
        client.get_client(1)
    assert http.calls[0]["allow_redirects"] is False


def test_headers_and_logs(offline_settings, caplog):
    caplog.set_level(logging.DEBUG, logger="etl.api")
    client, http, _ = offline_client(offline_settings, make_response(200, []))
    list(client.iter_clients(search="someone@example.test"))
    headers = http.calls[0]["headers"]
    assert headers["X-Auth-Key"] == SECRET_KEY
    assert headers["User-Agent"].startswith("intakeq-etl/")
    assert http.calls[0]["url"] == "https://api.example.test/api/v1/clients"
    assert "GET clients -> 200" in caplog.text
    assert "someone" not in caplog.text and SECRET_KEY not in caplog.text


def test_estimate_seconds_follows_the_minute_limit(offline_settings):
    client, _, _ = offline_client(offline_settings.with_(max_per_minute=10))
    assert client.estimate_seconds(10) == 0
    assert client.estimate_seconds(11) == pytest.approx(60)


# -- quota command --------------------------------------------------------------------------

def test_quota_shows_the_ledger_without_calling_the_api(sandbox, settings, run_cli):
    # The CLI reads the ledger with the real clock: record at the real time.
    client = IntakeQClient(settings.with_(max_per_day=500), clock=FakeClock(time.time()))
    client.get_client(any_client_id(sandbox))
    client.diagnoses(any_client_id(sandbox))
    sandbox.log.clear()

    result = run_cli("quota", env={"INTAKEQ_MAX_PER_DAY": "500"})
    assert result.exit_code == 0, result.output
    assert "used in the last 24 h:" in result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["used in the last 24 h"].strip() == "2"
    assert lines["remaining"].strip() == "498"
    assert "next request frees up" in lines

    as_json = run_cli("quota", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["used_24h"], data["limit"], data["remaining"]) == (2, None, None)
    assert api_requests(sandbox) == []


def test_quota_needs_a_key_to_know_the_account(run_cli):
    result = run_cli("quota", env={"INTAKEQ_API_KEY": None})
    assert result.exit_code == 1
    assert "no API key" in result.output


# -- the environment, read once -----------------------------------------------------------

def test_proxy_settings_are_read_from_the_environment_once(monkeypatch):
    """The session resolves HTTPS_PROXY/NO_PROXY/REQUESTS_CA_BUNDLE for the base URL when it
    is made, not on each request; .netrc is never consulted (the key is the only credential)."""
    from etl.api.session import _session_for

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/tmp/ca-bundle.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = _session_for("https://intakeq.example/api/v1/")
    assert http.proxies.get("https") == "http://127.0.0.1:9"
    assert http.verify == "/tmp/ca-bundle.pem"
    assert http.trust_env is False

    monkeypatch.setenv("NO_PROXY", "intakeq.example")
    assert "https" not in _session_for("https://intakeq.example/api/v1/").proxies
