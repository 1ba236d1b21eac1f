"""The sandbox speaks the IntakeQ Client API: every endpoint and parameter, over real HTTP.

Time-dependent behaviour (limits, the 10-day deleted window, dates) uses servers of our
own with a FakeClock; nothing here sleeps for a rate limit.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import requests

from etl import fields
from etl.clock import FakeClock
from etl.sandbox import Faults, SandboxServer, Store, start_embedded
from etl.sandbox.seed import generate_account

KEY = "sandbox-key"
T0 = 1_760_000_000.0  # 2025-10-09T08:53:20Z


def api(server, method, path, *, key=KEY, **kw):
    headers = kw.pop("headers", {})
    if key is not None:
        headers["X-Auth-Key"] = key
    return requests.request(method, server.base_url + path, headers=headers, timeout=10, **kw)


def get_json(server, path, **params):
    r = api(server, "GET", path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def profile(server, client_id):
    found = get_json(server, "clients", search=str(client_id), includeProfile="true")
    assert len(found) == 1
    return found[0]


def ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def timed(clock):
    """A server of our own on a FakeClock, limits off."""
    with SandboxServer(Store.seeded(20, 1, clock=clock), per_minute=0, per_day=0, clock=clock) as s:
        yield s


# ---- GET clients ---------------------------------------------------------------------------
def test_paging_sorted_by_name_100_per_page(sandbox):
    sandbox.reset(n_clients=250, seed=3)
    pages = [get_json(sandbox, "clients", page=p, includeProfile="true") for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    rows = [r for p in pages for r in p]
    assert sorted(r["ClientId"] for r in rows) == list(range(1, 251))
    keys = [(r["Name"].casefold(), r["ClientId"]) for r in rows]
    assert keys == sorted(keys)
    assert get_json(sandbox, "clients") == [
        {k: r[k] for k in ("Name", "Email", "Phone", "ClientNumber")} for r in rows[:100]]


def test_page_past_the_end_is_empty_and_no_page_is_page_one(sandbox):
    assert get_json(sandbox, "clients", page=2) == []
    assert get_json(sandbox, "clients") == get_json(sandbox, "clients", page=1)
    assert len(get_json(sandbox, "clients")) == 20


def test_short_record_without_profile(sandbox):
    rows = get_json(sandbox, "clients", includeProfile="false")
    assert all(set(r) == {"Name", "Email", "Phone", "ClientNumber"} for r in rows)
    assert {r["ClientNumber"] for r in rows} == {str(i) for i in range(1, 21)}


def test_profile_shape_like_real_traffic(sandbox):
    r = api(sandbox, "GET", "clients", params={"IncludeProfile": "true", "search": "1"})
    assert re.search(r'"DateCreated":\d+\.0[,}]', r.text)  # ms written as floats
    (p,) = r.json()
    assert set(fields.KNOWN_NAMES) | {"CustomFields"} == set(p)
    assert p["ClientNumber"] == str(p["ClientId"]) == "1"
    assert re.fullmatch(r"[0-9a-f-]{36}", p["Guid"])
    assert [c["FieldId"] for c in p["CustomFields"]] == [f["FieldId"] for f in sandbox.store.custom_fields]
    assert len(p["CustomFields"]) == 4
    empty = profile(sandbox, 9)  # client 9 has no custom values: still all listed, Value null
    assert [c["Value"] for c in empty["CustomFields"]] == [None] * 4
    assert profile(sandbox, 1)["PostalCode"] == "02134"
    linked = profile(sandbox, 2)["LinkedClients"]
    assert {"ClientNumber": 1, "RelationshipType": 2} in linked


def test_search_numeric_is_exact_client_id_with_leading_zeros(sandbox):
    assert [r["ClientId"] for r in get_json(sandbox, "clients", search="0004", includeProfile="true")] == [4]
    assert [r["ClientNumber"] for r in get_json(sandbox, "clients", search="1")] == ["1"]  # not 10..19
    assert get_json(sandbox, "clients", search="0999") == []


def test_search_partial_name_or_email_case_insensitive(sandbox):
    sandbox.store.staff_edit(3, FirstName="Paulina", LastName="Quux", Email="pq@example.com")
    sandbox.store.staff_edit(4, Email="someone.PAULxyz@example.org")
    found = {r["ClientNumber"] for r in get_json(sandbox, "clients", search="PAUL")}
    assert {"3", "4"} <= found
    assert all("paul" in (r["Name"] + (r["Email"] or "")).lower()
               for r in get_json(sandbox, "clients", search="paul"))
    assert get_json(sandbox, "clients", search="QUUX")[0]["Name"] == "Paulina Quux"


def test_parameter_names_are_case_insensitive(sandbox):
    rows = get_json(sandbox, "clients", SEARCH="0007", INCLUDEPROFILE="TRUE")
    assert [r["ClientId"] for r in rows] == [7]


@pytest.mark.parametrize("form", ["custom.{fid}", "custom[{fid}]", "Custom.{fid}"])
def test_custom_field_filters_both_forms(sandbox, form):
    sandbox.store.staff_edit(5, custom={"ReferralSource": "Zebra, Inc"})
    sandbox.store.staff_edit(6, **{"custom.ReferralSource": "Zebra, Inc"})
    rows = get_json(sandbox, "clients", **{form.format(fid="ReferralSource"): "Zebra, Inc"},
                    includeProfile="true")
    assert sorted(r["ClientId"] for r in rows) == [5, 6]
    assert get_json(sandbox, "clients", **{form.format(fid="ReferralSource"): "zebra, inc"}) == []


def test_custom_filters_combine_with_and(sandbox):
    sandbox.store.staff_edit(5, custom={"ReferralSource": "Z", "sotc": "Ann"})
    sandbox.store.staff_edit(6, custom={"ReferralSource": "Z", "sotc": "Bob"})
    rows = get_json(sandbox, "clients", **{"custom.ReferralSource": "Z", "custom[sotc]": "Bob"})
    assert [r["ClientNumber"] for r in rows] == ["6"]


def test_external_client_id_exact(sandbox):
    sandbox.store.staff_edit(12, ExternalClientId="abc-1")
    sandbox.store.staff_edit(13, ExternalClientId="abc-12")
    assert [r["ClientNumber"] for r in get_json(sandbox, "clients", externalClientId="abc-1")] == ["12"]


@pytest.mark.parametrize("field,start,end", [("DateCreated", "dateCreatedStart", "dateCreatedEnd"),
                                             ("LastUpdateDate", "dateUpdatedStart", "dateUpdatedEnd")])
def test_date_filters_are_inclusive_utc_days(sandbox, field, start, end):
    for i in range(1, 21):
        sandbox.store.staff_edit(i, **{field: ms("2020-01-01T00:00:00Z"), "LastUpdateDate": ms("2020-01-01T00:00:00Z")})

    def at(when: str) -> dict:      # the field at that instant; LastUpdateDate too, or 0 when it is another field
        return {field: ms(when), "LastUpdateDate": ms(when) if field == "LastUpdateDate" else 0.0}

    sandbox.store.staff_edit(1, **at("2024-03-23T23:59:59.999Z"))
    sandbox.store.staff_edit(2, **at("2024-03-24T00:00:00Z"))
    ids = lambda **p: sorted(int(r["ClientNumber"]) for r in get_json(sandbox, "clients", **p))  # noqa: E731
    assert ids(**{start: "2024-03-24"}) == [2]
    assert ids(**{start: "2024-03-23"}) == [1, 2]
    assert ids(**{start: "2024-03-23", end: "2024-03-23"}) == [1]
    assert ids(**{end: "2024-03-22"}) == list(range(3, 21))


def test_bad_date_is_400_json(sandbox):
    r = api(sandbox, "GET", "clients", params={"dateCreatedStart": "23/03/2024"})
    assert r.status_code == 400
    assert "dateCreatedStart" in r.json()["Message"]


def test_deleted_clients_visible_for_ten_days(timed, clock):
    timed.store.delete_client(3)
    assert "3" not in {r["ClientNumber"] for r in get_json(timed, "clients")}
    assert profile(timed, 4)  # others still there
    assert get_json(timed, "clients", search="3") == []
    deleted = get_json(timed, "clients", deletedOnly="true", includeProfile="true")
    assert [r["ClientId"] for r in deleted] == [3]
    clock.advance(10 * 86_400 - 1)
    assert len(get_json(timed, "clients", deletedOnly="True")) == 1
    clock.advance(2)
    assert get_json(timed, "clients", deletedOnly="true") == []


def test_deleted_client_cannot_be_saved(sandbox):
    body = profile(sandbox, 3)
    sandbox.store.delete_client(3)
    r = api(sandbox, "POST", "clients", json=body)
    assert r.status_code == 404 and r.json() == {"Message": "Client not found"}


# ---- POST clients (save) ---------------------------------------------------------------------
def test_save_replaces_writable_fields_and_keeps_read_only(timed, clock):
    before = profile(timed, 3)
    body = dict(before)
    del body["Email"]                      # missing -> cleared
    body["City"] = "Zürich"
    body["CustomFields"] = [c for c in before["CustomFields"] if c["FieldId"] != "sotc"]
    body["CustomFields"][0] = dict(body["CustomFields"][0], Value="x, \"y\"")
    body["CustomFields"].append({"FieldId": "nope", "Value": "ignored"})
    body.update(Guid="forged", DateCreated=0.0, Tags=["forged"], CreditBalance=99.0,
                LinkedClients=[], ClientNumber="999")
    clock.advance(60)
    r = api(timed, "POST", "clients", json=body)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved == profile(timed, 3)
    assert saved["Email"] is None and saved["City"] == "Zürich"
    values = {c["FieldId"]: c["Value"] for c in saved["CustomFields"]}
    assert values["sotc"] is None and values["EmergencyContactPhone"] == 'x, "y"'
    assert "nope" not in values and len(values) == 4
    for name in ("Guid", "DateCreated", "Tags", "CreditBalance", "LinkedClients", "ClientNumber"):
        assert saved[name] == before[name], name
    assert saved["LastUpdateDate"] == (T0 + 60) * 1000


def test_save_minimal_body_clears_everything_writable(sandbox):
    before = profile(sandbox, 8)
    saved = api(sandbox, "POST", "clients", json={"ClientId": 8, "FirstName": "Only"}).json()
    assert saved["FirstName"] == "Only" and saved["Name"] == "Only"
    for name in fields.WRITABLE:
        if name not in ("ClientId", "FirstName", "Name", "Archived", "BillingType"):
            assert saved[name] is None, name
    assert saved["Archived"] is False and saved["BillingType"] == 0
    assert all(c["Value"] is None for c in saved["CustomFields"])
    assert saved["Guid"] == before["Guid"] and saved["Tags"] == before["Tags"]


def test_save_unknown_client_id_is_404(sandbox):
    r = api(sandbox, "POST", "clients", json={"ClientId": 999, "FirstName": "A", "LastName": "B"})
    assert r.status_code == 404 and r.json() == {"Message": "Client not found"}
    assert len(sandbox.store.clients) == 20


def test_create_requires_first_and_last_name(sandbox):
    for body in ({"Email": "x@example.com"}, {"FirstName": "A"}, {"FirstName": "A", "LastName": " "}):
        r = api(sandbox, "POST", "clients", json=body)
        assert r.status_code == 400
        assert r.json() == {"Message": "Fields FirstName and LastName are mandatory."}
    assert len(sandbox.store.clients) == 20


def test_create_assigns_next_id_and_dates(timed, clock):
    timed.store.delete_client(20)
    r = api(timed, "POST", "clients", json={"FirstName": "Newt", "LastName": "Scamander",
                                            "ClientId": 0, "Email": "n@example.com"})
    assert r.status_code == 200
    new = r.json()
    assert new["ClientId"] == 21 and new["ClientNumber"] == "21"  # sequential, never reused
    assert new["Name"] == "Newt Scamander"
    assert new["DateCreated"] == new["LastUpdateDate"] == T0 * 1000
    assert new["Tags"] == [] and new["LinkedClients"] == [] and new["Guid"]
    assert len(new["CustomFields"]) == 4
    assert profile(timed, 21) == new


def test_match_on_first_name_and_email(sandbox):
    sandbox.store.staff_edit(5, FirstName="Renée", LastName="Old", Email="renee@example.com")
    r = api(sandbox, "POST", "clients", json={"FirstName": "RENÉE", "LastName": "New",
                                              "Email": "Renee@Example.COM"})
    assert r.json()["ClientId"] == 5 and r.json()["LastName"] == "New"
    assert len(sandbox.store.clients) == 20


def test_match_on_first_name_and_phone_digits(sandbox):
    sandbox.store.staff_edit(6, FirstName="Ana", Phone="(617) 555-0199", Email="a@example.com")
    r = api(sandbox, "POST", "clients", json={"FirstName": "ana", "LastName": "X", "Phone": "617.555.0199"})
    assert r.json()["ClientId"] == 6
    assert r.json()["Email"] is None  # full replace: the body had no Email
    assert len(sandbox.store.clients) == 20


def test_no_match_on_other_first_name_creates(sandbox):
    sandbox.store.staff_edit(6, FirstName="Ana", Email="a@example.com")
    r = api(sandbox, "POST", "clients", json={"FirstName": "Anna", "LastName": "X", "Email": "a@example.com"})
    assert r.json()["ClientId"] == 21


def test_phone_normalisation(sandbox):
    saved = api(sandbox, "POST", "clients", json={"FirstName": "P", "LastName": "Q", "Phone": "+18449443434"}).json()
    assert saved["Phone"] == "18449443434" and saved["MobilePhone"] == "18449443434"
    saved = api(sandbox, "POST", "clients", json={"ClientId": saved["ClientId"], "FirstName": "P", "LastName": "Q",
                                                  "Phone": "+1 844", "MobilePhone": "+1 999",
                                                  "StateShort": "va"}).json()
    assert saved["Phone"] == "1 844" and saved["MobilePhone"] == "1 999" and saved["StateShort"] == "va"


def test_save_body_keys_case_insensitive_and_bad_json(sandbox):
    saved = api(sandbox, "POST", "clients", json={"clientId": 2, "firstName": "Lower", "lastname": "Case"}).json()
    assert (saved["ClientId"], saved["Name"]) == (2, "Lower Case")
    r = api(sandbox, "POST", "clients", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "Message" in r.json()
    r = api(sandbox, "POST", "clients", json={"ClientId": 2, "FirstName": "A", "DateOfBirth": "1990-01-01"})
    assert r.status_code == 400


# ---- tags --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["VIP", "a;b", "back\\slash", "café ☕", " spaced "])
def test_tags_add_idempotent_and_remove(timed, clock, tag):
    timed.store.staff_edit(11, Tags=["other"])
    before = profile(timed, 11)["LastUpdateDate"]
    assert before == T0 * 1000
    clock.advance(5)
    for _ in range(2):
        r = api(timed, "POST", "clientTags", json={"ClientId": 11, "Tag": tag})
        assert r.status_code == 200
    p = profile(timed, 11)
    assert p["Tags"].count(tag) == 1 and p["LastUpdateDate"] == before + 5000
    clock.advance(5)
    for _ in range(2):
        r = api(timed, "DELETE", "clientTags", params={"clientId": 11, "tag": tag})
        assert r.status_code == 200
    p = profile(timed, 11)
    assert tag not in p["Tags"] and p["LastUpdateDate"] == before + 10000


def test_tags_unknown_client_is_404(sandbox):
    r = api(sandbox, "POST", "clientTags", json={"ClientId": 999, "Tag": "x"})
    assert r.status_code == 404 and r.json() == {"Message": "Client not found"}
    r = api(sandbox, "DELETE", "clientTags", params={"ClientId": 999, "Tag": "x"})
    assert r.status_code == 404


def test_tag_remove_absent_is_200_and_changes_nothing(sandbox):
    before = profile(sandbox, 4)
    r = api(sandbox, "DELETE", "clientTags", params={"clientId": 4, "tag": "never-there"})
    assert r.status_code == 200
    assert profile(sandbox, 4) == before


# ---- diagnoses -----------------------------------------------------------------------------------
def test_diagnoses(sandbox):
    dx = [{"Code": "F41.1", "Description": "Generalized anxiety disorder", "Date": "2021-12-08T23:00:00Z",
           "EndDate": None, "NoteId": "82328bc2-3ff8-4ea8"}]
    sandbox.store.set_diagnoses(7, dx)
    assert get_json(sandbox, "client/7/diagnoses") == dx
    sandbox.store.set_diagnoses(7, [])
    assert get_json(sandbox, "client/7/diagnoses") == []
    r = api(sandbox, "GET", "client/999/diagnoses")
    assert r.status_code == 404 and r.json() == {"Message": "Client not found"}


def test_seeded_diagnoses_have_the_documented_shape(sandbox):
    sandbox.reset(n_clients=40, seed=1)
    with_dx = [i for i in range(1, 41) if get_json(sandbox, f"client/{i}/diagnoses")]
    assert 8 <= len(with_dx) <= 32
    d = get_json(sandbox, f"client/{with_dx[0]}/diagnoses")[0]
    assert set(d) == {"Code", "Description", "Date", "EndDate", "NoteId"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT23:00:00Z", d["Date"])


# ---- routes, auth ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "appointments"), ("PUT", "clients"), ("GET", "clientTags"),
                                         ("DELETE", "clients"), ("GET", "client/abc/diagnoses")])
def test_unknown_route_and_put_answer_html_200(sandbox, method, path):
    r = api(sandbox, method, path)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "Page Not Found" in r.text
    assert sandbox.requests(method)[-1].status == 200


def test_routes_are_case_insensitive(sandbox):
    assert api(sandbox, "GET", "Clients").status_code == 200
    assert api(sandbox, "GET", "Client/1/Diagnoses").status_code == 200


def test_auth(sandbox):
    r = api(sandbox, "GET", "clients", key="wrong")
    assert r.status_code == 401 and "Message" in r.json()
    assert api(sandbox, "GET", "clients", key=None).status_code == 500
    assert api(sandbox, "GET", "clients", key="").status_code == 500
    assert "wrong" not in r.text
    assert api(sandbox, "POST", "clientTags", key="wrong", json={"ClientId": 1, "Tag": "x"}).status_code == 401
    assert "x" not in sandbox.store.clients[1]["Tags"]


# ---- limits ----------------------------------------------------------------------------------------
def test_per_minute_limit_with_retry_after(timed, clock):
    timed.configure(per_minute=3)
    assert [api(timed, "GET", "clients").status_code for _ in range(3)] == [200] * 3
    clock.advance(20)
    r = api(timed, "GET", "clients")
    assert r.status_code == 429 and r.headers["Retry-After"] == "40" and "Message" in r.json()
    clock.advance(39)
    assert api(timed, "GET", "clients").headers["Retry-After"] == "1"  # rejected ones did not count
    clock.advance(1)
    assert api(timed, "GET", "clients").status_code == 200
    assert [e.status for e in timed.requests("GET", "clients")] == [200, 200, 200, 429, 429, 200]


def test_429_without_or_with_fixed_retry_after(timed, clock):
    timed.configure(per_minute=1, retry_after=False)
    assert api(timed, "GET", "clients").status_code == 200
    r = api(timed, "GET", "clients")
    assert r.status_code == 429 and "Retry-After" not in r.headers
    timed.configure(retry_after=7)
    assert api(timed, "GET", "clients").headers["Retry-After"] == "7"


def test_per_day_limit_rolling_24h(timed, clock):
    timed.configure(per_day=2)
    api(timed, "GET", "clients")
    clock.advance(3600)
    api(timed, "GET", "clients")
    clock.advance(3600)
    r = api(timed, "GET", "clients")
    assert r.status_code == 429 and r.headers["Retry-After"] == str(22 * 3600)
    clock.advance(22 * 3600)
    assert api(timed, "GET", "clients").status_code == 200


def test_limits_count_writes_and_unlimited_is_zero(timed, clock):
    timed.configure(per_minute=2)
    api(timed, "POST", "clientTags", json={"ClientId": 1, "Tag": "t"})
    api(timed, "GET", "client/1/diagnoses")
    assert api(timed, "DELETE", "clientTags", params={"clientId": 1, "tag": "t"}).status_code == 429
    assert "t" in timed.store.clients[1]["Tags"]  # the 429 had no effect
    timed.configure(per_minute=0)
    assert all(api(timed, "GET", "clients").status_code == 200 for _ in range(5))


def test_force_429(sandbox):
    sandbox.force_429(2, retry_after=3)
    first = api(sandbox, "POST", "clientTags", json={"ClientId": 1, "Tag": "forced"})
    second = api(sandbox, "GET", "clients")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert second.status_code == 429
    assert "forced" not in sandbox.store.clients[1]["Tags"]
    assert api(sandbox, "GET", "clients").status_code == 200
    sandbox.force_429(1)
    r = api(sandbox, "GET", "clients")
    assert r.status_code == 429 and "Retry-After" not in r.headers


# ---- faults ------------------------------------------------------------------------------------------
def _statuses(faults: Faults, n=30):
    with SandboxServer(Store.seeded(5, 1), per_minute=0, per_day=0, faults=faults) as s:
        return [api(s, "POST", "clientTags", json={"ClientId": 1, "Tag": f"t{i}"}).status_code
                for i in range(n)]


def test_faults_repeat_with_the_same_seed():
    faults = dict(fail_before=0.3, lost_response=0.3)
    first = _statuses(Faults(seed=7, **faults))
    assert first == _statuses(Faults(seed=7, **faults))
    assert {200, 502, 503} <= set(first)
    assert first != _statuses(Faults(seed=8, **faults))


def test_fail_before_has_no_effect_and_lost_response_has(sandbox):
    sandbox.configure(faults=Faults(fail_before=1.0))
    r = api(sandbox, "POST", "clientTags", json={"ClientId": 1, "Tag": "before"})
    assert r.status_code == 503
    assert "before" not in sandbox.store.clients[1]["Tags"]
    sandbox.configure(faults=Faults(lost_response=1.0))
    r = api(sandbox, "POST", "clients", json={"FirstName": "Lost", "LastName": "Response"})
    assert r.status_code == 502
    assert sandbox.store.clients[21]["Name"] == "Lost Response"
    assert api(sandbox, "GET", "clients").status_code == 200  # reads are not "lost"
    assert sandbox.injected_faults == [("lost_response", 2)]


def test_write_latency_comes_after_the_effect(sandbox):
    sandbox.configure(faults=Faults(write_latency=2.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(sandbox.base_url + "clientTags", json={"ClientId": 2, "Tag": "slow"},
                      headers={"X-Auth-Key": KEY}, timeout=0.3)
    assert "slow" in sandbox.store.clients[2]["Tags"]


def test_faults_validated():
    with pytest.raises(ValueError):
        Faults(fail_before=1.5)


# ---- state, log, reset ---------------------------------------------------------------------------------
def test_state_survives_restart(tmp_path):
    path = tmp_path / "sb" / "state.json"
    with SandboxServer(Store.seeded(10, 2), per_minute=0, per_day=0, state_path=path) as s:
        new = api(s, "POST", "clients", json={"FirstName": "Kept", "LastName": "Across"}).json()
        api(s, "POST", "clientTags", json={"ClientId": 3, "Tag": "persisted"})
        s.store.delete_client(4)
        s.store.set_diagnoses(5, [{"Code": "Z00", "Description": "d", "Date": None, "EndDate": None, "NoteId": None}])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left
    with SandboxServer(per_minute=0, per_day=0, state_path=path) as s:
        assert profile(s, new["ClientId"]) == new
        assert "persisted" in profile(s, 3)["Tags"]
        assert [r["ClientNumber"] for r in get_json(s, "clients", deletedOnly="true")] == ["4"]
        assert get_json(s, "client/5/diagnoses")[0]["Code"] == "Z00"
        assert api(s, "POST", "clients", json={"FirstName": "Next", "LastName": "One"}).json()["ClientId"] == 12


def test_request_log_and_reset(sandbox):
    api(sandbox, "GET", "clients", params={"page": 2})
    api(sandbox, "POST", "clientTags", json={"ClientId": 1, "Tag": "x"})
    api(sandbox, "GET", "nowhere")
    assert len(sandbox.log) == 3
    (entry,) = sandbox.requests("GET", "clients")
    assert (entry.method, entry.path, entry.query, entry.status) == ("GET", "/api/v1/clients", {"page": "2"}, 200)
    assert len(sandbox.requests(path="/api/v1/clientTags")) == 1
    assert len(sandbox.requests(method="post")) == 1
    sandbox.configure(per_minute=1)
    sandbox.reset(n_clients=5)
    assert sandbox.log == [] and len(sandbox.store.clients) == 5
    assert all(api(sandbox, "GET", "clients").status_code == 200 for _ in range(3))  # limits off


def test_start_embedded_shares_state(tmp_path):
    s = start_embedded(tmp_path)
    try:
        assert s.base_url.startswith("http://127.0.0.1:") and s.api_key == "sandbox-key"
        assert len(s.store.clients) == 300
        api(s, "POST", "clientTags", json={"ClientId": 1, "Tag": "embedded"})
    finally:
        s.stop()
    assert (tmp_path / "sandbox" / "state.json").exists()
    s = start_embedded(tmp_path)
    try:
        assert "embedded" in profile(s, 1)["Tags"]
        s.configure(per_minute=0)  # the real limits are on by default
        statuses = {api(s, "GET", "clients").status_code for _ in range(2)}
        assert statuses == {200}
    finally:
        s.stop()


def test_default_limits_are_the_real_ones(clock):
    with SandboxServer(Store.seeded(3, 1, clock=clock), clock=clock) as s:
        assert [api(s, "GET", "clients").status_code for _ in range(11)] == [200] * 10 + [429]


def test_only_loopback():
    with pytest.raises(ValueError):
        SandboxServer(host="0.0.0.0")


# ---- the synthetic account ------------------------------------------------------------------------------
def test_seeded_account_is_deterministic_and_awkward():
    a = generate_account(50, seed=4, now=T0)
    assert a == generate_account(50, seed=4, now=T0)
    assert a != generate_account(50, seed=5, now=T0)
    text = json.dumps(a, ensure_ascii=False)
    for needle in ("José", "Zoë", "a;b", "back\\\\slash", "02134", "=HYPERLINK", "+1 555", "-dash", "@at",
                   "\\n", "\"va\""):
        assert needle in text, needle
    clients = a["clients"]
    assert {c["BillingType"] for c in clients} == {0, 1, 2}
    assert {c["Archived"] for c in clients} == {True, False}
    dobs = [c["DateOfBirth"] for c in clients if c["DateOfBirth"] is not None]
    assert any(d % 86_400_000 for d in dobs) and any(d % 86_400_000 == 0 for d in dobs)
    assert all(T0 * 1000 - 731 * 86_400_000 <= c["DateCreated"] <= c["LastUpdateDate"] <= T0 * 1000
               for c in clients)
    assert any(c["LinkedClients"] for c in clients)


def test_sample_data_matches_the_generator():
    import importlib.util

    folder = Path(__file__).resolve().parents[1] / "sample_data"
    doc = json.loads((folder / "account.json").read_text(encoding="utf-8"))
    spec = importlib.util.spec_from_file_location("generate", folder / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert doc == generate.build(300, 1)  # the committed file is what the script writes
    assert len(doc["clients"]) == 300
    # the embedded account is the same clients, dates relative to another "now"
    shifted = generate_account(300, 1, now=generate.ANCHOR + 86_400)
    assert [c["Name"] for c in shifted["clients"]] == [c["Name"] for c in doc["clients"]]
    store = Store.from_document(doc)
    assert len(store.clients) == 300 and store.custom_fields[0]["FieldId"] == "sotc"


def test_cli_sandbox_help(run_cli):
    result = run_cli("sandbox", "--help")
    assert result.exit_code == 0
    for option in ("--port", "--state", "--clients", "--per-minute", "--no-retry-after", "--fault-seed"):
        assert option in result.output


def test_cli_sandbox_serves_the_shared_state_file(run_cli, state_dir, monkeypatch):
    import socket

    import etl.cli.sandbox as command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    seen = {}

    def fake_wait(server):  # instead of waiting for Ctrl-C: one request, then "Ctrl-C"
        seen["rows"] = get_json(server, "clients", page=1)
        seen["limited"] = [api(server, "GET", "clients").status_code for _ in range(3)]
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_wait", fake_wait)
    result = run_cli("sandbox", "--port", port, "--clients", 30, "--seed", 2, "--per-minute", 3,
                     "--no-retry-after")
    assert result.exit_code == 0, result.output
    url = f"http://127.0.0.1:{port}/api/v1/"
    assert f"export INTAKEQ_BASE_URL={url}" in result.output
    assert "export INTAKEQ_API_KEY=sandbox-key" in result.output
    assert len(seen["rows"]) == 30 and seen["limited"] == [200, 200, 429]
    path = state_dir / "sandbox" / "state.json"
    assert len(json.loads(path.read_text(encoding="utf-8"))["clients"]) == 30
    s = start_embedded(state_dir)  # --sandbox sees the same account
    try:
        assert len(s.store.clients) == 30
    finally:
        s.stop()


def test_query_cache_follows_mutations(sandbox):
    assert get_json(sandbox, "clients", search="Zzyzx") == []
    sandbox.store.staff_edit(9, FirstName="Zzyzx", LastName="Road")
    assert [r["Name"] for r in get_json(sandbox, "clients", search="zzyzx")] == ["Zzyzx Road"]
    names = [r["Name"] for r in get_json(sandbox, "clients")]
    assert names == sorted(names, key=str.casefold) and "Zzyzx Road" in names
    sandbox.store.add_client(FirstName="Aaa", LastName="First")
    assert get_json(sandbox, "clients")[0]["Name"] == "Aaa First"
    assert len(get_json(sandbox, "clients")) == 21


def test_bad_page_is_400(sandbox):
    r = api(sandbox, "GET", "clients", params={"page": "two"})
    assert r.status_code == 400 and "page" in r.json()["Message"]


# ---- connections ------------------------------------------------------------------------------

def test_one_connection_serves_many_requests_and_bodies_never_leak_into_the_next(sandbox):
    """Keep-alive, as IntakeQ's servers do: a POST's body, a HEAD and a 404 page on one
    connection each end where they should, so the next request on it reads cleanly."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(sandbox.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"X-Auth-Key": KEY, "Content-Type": "application/json"}
    record = profile(sandbox, 3)
    body = json.dumps({**record, "City": "Keepalive"})
    answers = []
    for method, path, data in [("POST", "clients", body), ("GET", "clients?search=3&includeProfile=true", None),
                               ("HEAD", "clients?search=3", None), ("GET", "no-such-page", None),
                               ("GET", "clients?search=4&includeProfile=true", None)]:
        conn.request(method, url.path + path, body=data, headers=headers)
        response = conn.getresponse()
        answers.append((response.status, response.read(), response.getheader("Connection")))
    conn.close()
    assert [a[0] for a in answers] == [200, 200, 200, 200, 200]
    assert json.loads(answers[1][1])[0]["City"] == "Keepalive"
    assert answers[2][1] == b"" and b"Page Not Found" in answers[3][1]
    assert json.loads(answers[4][1])[0]["ClientId"] == 4
    assert all(a[2] != "close" for a in answers)


def test_a_stopped_sandbox_answers_nothing_even_on_a_kept_alive_connection():
    from etl.sandbox import SandboxServer, Store

    server = SandboxServer(Store.seeded(5, seed=1), per_minute=0, per_day=0).start()
    session = requests.Session()
    url, headers = server.base_url + "clients", {"X-Auth-Key": server.api_key}
    assert session.get(url, headers=headers, timeout=10).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, headers=headers, timeout=10)


def test_http_1_0_and_a_bad_content_length_get_an_answer_and_a_closed_connection(sandbox):
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(sandbox.base_url)
    for request in (f"GET {url.path}clients?search=4 HTTP/1.0\r\nX-Auth-Key: {KEY}\r\n"
                    "Connection: keep-alive\r\n\r\n",
                    f"GET {url.path}clients?search=4 HTTP/1.1\r\nHost: x\r\nX-Auth-Key: {KEY}\r\n"
                    "Content-Length: abc\r\n\r\n"):
        with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
            conn.sendall(request.encode())
            answer = b""
            while chunk := conn.recv(65536):          # the server closes: no wait for a timeout
                answer += chunk
        assert answer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")) and b"Connection: close" in answer
