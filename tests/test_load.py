"""Unit tests of the apply loop (etl/importer/apply.py) with a fake client, a real Checkpoint and a FakeClock.

The fake client holds an in-memory account and a per-operation script of failures, so
each test sets up exactly one situation (a refusal, a lost response, a budget stop...).
No network, no real sleeps. The end-to-end runs are in tests/test_import*.py.
"""
from __future__ import annotations

import copy
import sqlite3

import pytest

from etl.clock import FakeClock
from etl.errors import ApiUnreachable, BudgetExhausted, Interrupted, RequestRejected, TransientApiError
from etl.importer.apply import NOT_FOUND_PAUSE, TRANSIENT_TRIES, apply_plan, find_created
from etl.importer.checkpoint import Checkpoint
from etl.importer.diff import CREATE, UPDATE, Change, RowPlan, merged_body

# --------------------------------------------------------------------------- fakes


class Lost:
    """Script entry: the request takes effect, then its response is lost (TransientApiError)."""


LOST = Lost()


class FakeClient:
    """The subset of IntakeQClient that apply_plan uses, over an in-memory account.

    ``script[op]`` is a list consumed one entry per request of that op ("save", "add_tag",
    "remove_tag", "get_client", "iter_clients"): an exception is raised before the request takes
    effect, ``LOST`` lets it take effect and then raises TransientApiError, ``None`` lets it through.
    """

    def __init__(self, clients=(), *, on_send=None):
        self.clients = {int(r["ClientId"]): copy.deepcopy(r) for r in clients}
        self.script: dict[str, list] = {}
        self.calls: list[tuple] = []
        self.requests_sent = 0
        self.next_id = 1000
        self.on_send = on_send or (lambda op, args: None)

    def _send(self, op, *args):
        self.requests_sent += 1
        self.calls.append((op, *args))
        self.on_send(op, args)
        action = self.script.get(op, []).pop(0) if self.script.get(op) else None
        if isinstance(action, Exception):
            raise action
        return action

    def ops(self, *names) -> list[tuple]:
        return [c for c in self.calls if c[0] in names]

    # writes
    def save_client(self, record: dict) -> dict:
        action = self._send("save", copy.deepcopy(record))
        record = copy.deepcopy(record)
        if record.get("ClientId") is None:
            record["ClientId"], self.next_id = self.next_id, self.next_id + 1
            record.setdefault("Tags", [])
        elif int(record["ClientId"]) not in self.clients:
            raise RequestRejected("Client not found", 404)
        self.clients[int(record["ClientId"])] = record
        if action is LOST:
            raise TransientApiError("the connection was lost")
        return copy.deepcopy(record)

    def add_tag(self, client_id: int, tag: str) -> None:
        self._tag("add_tag", client_id, tag, add=True)

    def remove_tag(self, client_id: int, tag: str) -> None:
        self._tag("remove_tag", client_id, tag, add=False)

    def _tag(self, op, client_id, tag, *, add):
        action = self._send(op, client_id, tag)
        client = self.clients.get(int(client_id))
        if client is None:
            raise RequestRejected("Client not found", 404)
        tags = [t for t in client.get("Tags") or [] if t != tag]
        client["Tags"] = tags + [tag] if add else tags
        if action is LOST:
            raise TransientApiError("the connection was lost")

    # reads (a scripted exception fails the read; reads have no effect to lose)
    def get_client(self, client_id: int) -> dict | None:
        self._send("get_client", client_id)
        found = self.clients.get(int(client_id))
        return copy.deepcopy(found) if found else None

    def iter_clients(self, search=None, **filters):
        self._send("iter_clients", search)
        for r in list(self.clients.values()):
            name = f"{r.get('FirstName') or ''} {r.get('LastName') or ''}".casefold()
            if search is None or all(word in name for word in search.casefold().split()):
                yield copy.deepcopy(r)


def profile(client_id: int, **values) -> dict:
    record = {"ClientId": client_id, "FirstName": "Ann", "LastName": "Lee", "Name": "Ann Lee",
              "Email": f"c{client_id}@example.com", "City": "Boston", "Tags": ["VIP"],
              "CustomFields": [{"FieldId": "sotc", "Text": "Emergency Contact Name", "Value": None}]}
    record.update(values)
    return record


def update_plan(row: int, live: dict, **new) -> RowPlan:
    changes = [Change(k, live.get(k), v) for k, v in new.items()]
    return RowPlan(row, live["ClientId"], UPDATE, changes=changes, body=merged_body(live, changes, "UTC"))


def tag_plan(row: int, client_id: int, adds=(), removes=()) -> RowPlan:
    return RowPlan(row, client_id, UPDATE, tag_adds=list(adds), tag_removes=list(removes))


def create_plan(row: int, first="Zoe", last="Young", tags=()) -> RowPlan:
    body = {"FirstName": first, "LastName": last, "Name": f"{first} {last}"}
    return RowPlan(row, None, CREATE, changes=[Change(k, None, v) for k, v in body.items()], body=body,
                   tag_adds=list(tags), name_key=(first.casefold(), last.casefold()))


@pytest.fixture
def checkpoint(tmp_path):
    cp = Checkpoint(tmp_path / "import.checkpoint.sqlite", "identity-1")
    yield cp
    cp.close()


@pytest.fixture
def clock():
    return FakeClock()


def status_of(cp: Checkpoint) -> dict[int, str]:
    return {row: st.status for row, st in cp.all().items()}


# --------------------------------------------------------------------------- successes


def test_an_update_sends_the_full_body_once_and_is_recorded_as_updated(checkpoint, clock):
    live = profile(1)
    client = FakeClient([live])
    plan = update_plan(2, live, City="Austin")

    outcome = apply_plan(client, [plan], checkpoint, clock=clock)

    assert client.ops("save") == [("save", {**live, "City": "Austin"})]
    assert client.clients[1]["City"] == "Austin"
    st = checkpoint.get(2)
    assert (st.status, st.client_id, st.fields, st.op) == ("updated", 1, ("City",), None)
    assert outcome.results[2].status == "updated"
    assert outcome.stopped_by is None
    assert clock.slept == []


def test_the_checkpoint_is_committed_inflight_before_each_request(checkpoint, clock):
    seen = []

    def peek(op, args):   # a second connection sees only committed state
        with sqlite3.connect(checkpoint.path) as db:
            seen.append((op, db.execute("SELECT status, op, detail FROM rows WHERE row=2").fetchone()))

    live = profile(1)
    client = FakeClient([live], on_send=peek)
    apply_plan(client, [update_plan(2, live, City="Austin"), ], checkpoint, clock=clock)
    apply_plan(client, [tag_plan(2, 1, adds=["New"])], checkpoint, clock=clock)

    assert seen == [("save", ("inflight", "save", None)), ("add_tag", ("inflight", "tag_add", "New"))]
    assert checkpoint.get(2).status == "updated"


def test_a_create_records_the_new_client_id_then_adds_its_tags(checkpoint, clock):
    client = FakeClient([profile(1)])
    plan = create_plan(3, tags=["New", "VIP"])

    outcome = apply_plan(client, [plan], checkpoint, clock=clock, known_ids=lambda p: {1})

    new_id = client.next_id - 1
    assert [c[0] for c in client.calls] == ["save", "add_tag", "add_tag"]
    assert client.clients[new_id]["Tags"] == ["New", "VIP"]
    st = checkpoint.get(3)
    assert (st.status, st.client_id) == ("created", new_id)
    assert outcome.results[3].client_id == new_id
    assert outcome.results[3].status == "created"
    assert plan.client_id is None and outcome.created == {3: new_id}     # the plan given is not changed


def test_a_tag_only_row_uses_only_the_tag_endpoints(checkpoint, clock):
    client = FakeClient([profile(1, Tags=["VIP", "Old"])])
    outcome = apply_plan(client, [tag_plan(2, 1, adds=["New"], removes=["Old"])], checkpoint, clock=clock)
    assert [c[0] for c in client.calls] == ["add_tag", "remove_tag"]
    assert client.clients[1]["Tags"] == ["VIP", "New"]
    assert checkpoint.get(2).status == "updated"
    assert outcome.results[2].status == "updated"


def test_rows_with_nothing_to_write_are_not_touched(checkpoint, clock):
    client = FakeClient([profile(1)])
    outcome = apply_plan(client, [RowPlan(2, 1, "unchanged")], checkpoint, clock=clock)
    assert client.calls == []
    assert outcome.results == {}
    assert checkpoint.all() == {}


# --------------------------------------------------------------------------- failures


def test_a_refused_save_fails_the_row_with_the_api_message_and_the_run_goes_on(checkpoint, clock):
    a, b = profile(1), profile(2)
    client = FakeClient([a, b])
    client.script["save"] = [RequestRejected("Email is not valid", 400)]

    outcome = apply_plan(client, [update_plan(2, a, Email="bad"), update_plan(3, b, City="Austin")],
                         checkpoint, clock=clock)

    assert len(client.ops("save")) == 2        # not retried, next row still sent
    assert outcome.results[2].status == "failed"
    assert "Email is not valid" in outcome.results[2].message
    assert checkpoint.get(2).status == "failed"
    assert "Email is not valid" in checkpoint.get(2).error
    assert outcome.results[3].status == "updated"
    assert client.clients[2]["City"] == "Austin"


def test_a_save_whose_response_was_lost_is_verified_and_not_resent(checkpoint, clock):
    live = profile(1)
    client = FakeClient([live])
    client.script["save"] = [LOST]

    outcome = apply_plan(client, [update_plan(2, live, City="Austin")], checkpoint, clock=clock)

    assert [c[0] for c in client.calls] == ["save", "get_client"]
    assert outcome.results[2].status == "updated"
    assert checkpoint.get(2).status == "updated"


def test_a_save_that_failed_before_taking_effect_is_resent_over_the_live_profile(checkpoint, clock):
    live = profile(1)
    client = FakeClient([live])
    client.script["save"] = [TransientApiError("503 Service Unavailable")]
    client.on_send = lambda op, args: client.clients[1].update(Email="staff@example.com")  # staff edits meanwhile

    outcome = apply_plan(client, [update_plan(2, live, City="Austin")], checkpoint, clock=clock)

    assert [c[0] for c in client.calls] == ["save", "get_client", "save"]
    resent = client.ops("save")[1][1]
    assert resent["City"] == "Austin" and resent["Email"] == "staff@example.com"
    assert outcome.results[2].status == "updated"
    assert checkpoint.get(2).attempts == 2


def test_a_save_that_keeps_failing_transiently_is_left_pending_for_a_rerun(checkpoint, clock):
    live = profile(1)
    client = FakeClient([live])
    client.script["save"] = [TransientApiError("502")] * TRANSIENT_TRIES

    outcome = apply_plan(client, [update_plan(2, live, City="Austin")], checkpoint, clock=clock)

    assert len(client.ops("save")) == TRANSIENT_TRIES
    assert outcome.results[2].status == "pending"
    assert checkpoint.get(2).status == "pending"
    assert not checkpoint.get(2).final


def test_a_create_whose_response_was_lost_is_found_by_name_not_created_again(checkpoint, clock):
    namesake = profile(1, FirstName="Zoe", LastName="Young")          # existed before: known
    client = FakeClient([namesake])
    client.script["save"] = [LOST]

    outcome = apply_plan(client, [create_plan(3)], checkpoint, clock=clock, known_ids=lambda p: {1})

    assert len(client.ops("save")) == 1
    assert len(client.clients) == 2                                   # no duplicate
    new_id = client.next_id - 1
    assert outcome.results[3].client_id == new_id != 1
    assert checkpoint.get(3).client_id == new_id
    assert checkpoint.get(3).known_ids == (1,)


def test_a_create_that_failed_before_taking_effect_is_sent_again(checkpoint, clock):
    client = FakeClient([profile(1, FirstName="Zoe", LastName="Young")])
    client.script["save"] = [TransientApiError("504 Gateway Timeout")]

    outcome = apply_plan(client, [create_plan(3)], checkpoint, clock=clock, known_ids=lambda p: {1})

    assert [c[0] for c in client.calls] == ["save", "iter_clients", "save"]
    assert len(client.clients) == 2
    assert outcome.results[3].status == "created"
    assert outcome.results[3].client_id != 1                          # the namesake is not mistaken for it


@pytest.mark.parametrize("read_failure", [TransientApiError("GET clients: the server failed (503)"),
                                          ApiUnreachable("cannot reach http://127.0.0.1:1/: connection refused")])
def test_a_verifying_read_that_fails_inside_a_save_leaves_the_row_pending_and_the_next_row_is_applied(
        checkpoint, clock, read_failure):
    a, b = profile(1), profile(2)
    client = FakeClient([a, b])
    client.script["save"] = [LOST]
    client.script["get_client"] = [read_failure]

    outcome = apply_plan(client, [update_plan(2, a, City="Austin"), update_plan(3, b, City="Denver")],
                         checkpoint, clock=clock)

    assert outcome.stopped_by is None
    assert outcome.results[2].status == "pending"
    assert "a re-run" in outcome.results[2].message
    assert outcome.results[3].status == "updated"
    assert status_of(checkpoint) == {2: "pending", 3: "updated"}
    assert client.clients[2]["City"] == "Denver"


def test_a_create_whose_verifying_search_fails_stays_unverified_for_the_next_run(checkpoint, clock):
    client = FakeClient([profile(1, FirstName="Zoe", LastName="Young")])
    client.script["save"] = [LOST]
    client.script["iter_clients"] = [TransientApiError("GET clients: the server failed (503)")]

    outcome = apply_plan(client, [create_plan(3), create_plan(4, first="Yan", last="Xu")], checkpoint,
                         clock=clock, known_ids=lambda p: {1})

    assert outcome.results[3].status == "pending"
    assert outcome.results[4].status == "created"
    state = checkpoint.get(3)
    # Whether the create landed is unknown: the next run searches for it before creating again.
    assert (state.status, state.op, state.known_ids) == ("pending", "create", (1,))
    assert state.create_unverified
    assert find_created(client, ("zoe", "young"), set(state.known_ids)) == 1000


@pytest.mark.parametrize("names, expect", [
    (("zoe", "young"), 1001),
    (("zoe", ""), None),
    (("bob", "young"), None),
])
def test_find_created_matches_the_full_name_and_skips_known_ids(names, expect):
    client = FakeClient([profile(1, FirstName="Zoe", LastName="Young"),
                         profile(1001, FirstName=" ZOE ", LastName="young")])
    assert find_created(client, names, {1}) == expect


def test_client_not_found_on_a_tag_right_after_a_create_is_retried_after_a_pause(checkpoint, clock):
    client = FakeClient()
    client.script["add_tag"] = [RequestRejected("Client not found", 404)] * 2

    outcome = apply_plan(client, [create_plan(3, tags=["New"])], checkpoint, clock=clock)

    assert [c[0] for c in client.calls] == ["save", "add_tag", "add_tag", "add_tag"]
    assert clock.slept == [NOT_FOUND_PAUSE, NOT_FOUND_PAUSE]
    assert client.clients[client.next_id - 1]["Tags"] == ["New"]
    assert outcome.results[3].status == "created"


def test_client_not_found_on_a_tag_of_an_existing_client_fails_at_once(checkpoint, clock):
    client = FakeClient([profile(1)])
    client.script["add_tag"] = [RequestRejected("Client not found", 404)]

    outcome = apply_plan(client, [tag_plan(2, 1, adds=["New"])], checkpoint, clock=clock)

    assert len(client.ops("add_tag")) == 1
    assert clock.slept == []
    assert outcome.results[2].status == "failed"
    assert "Client not found" in checkpoint.get(2).error


def test_a_tag_call_whose_response_was_lost_is_verified_and_not_resent(checkpoint, clock):
    client = FakeClient([profile(1, Tags=["VIP", "Old"])])
    client.script["remove_tag"] = [LOST]

    outcome = apply_plan(client, [tag_plan(2, 1, removes=["Old"])], checkpoint, clock=clock)

    assert [c[0] for c in client.calls] == ["remove_tag", "get_client"]
    assert outcome.results[2].status == "updated"


# --------------------------------------------------------------------------- stops


def budget(frees_at=None) -> BudgetExhausted:
    return BudgetExhausted(used=500, limit=500, frees_at=frees_at)


def test_budget_exhausted_stops_the_run_and_leaves_later_rows_untouched(checkpoint, clock):
    a, b, c = profile(1), profile(2), profile(3)
    client = FakeClient([a, b, c])
    client.script["save"] = [None, budget(clock.time() + 3600)]
    plans = [update_plan(2, a, City="Austin"), update_plan(3, b, City="Austin"), update_plan(4, c, City="Austin")]

    outcome = apply_plan(client, plans, checkpoint, clock=clock)

    assert isinstance(outcome.stopped_by, BudgetExhausted)
    assert set(outcome.results) == {2}
    assert status_of(checkpoint) == {2: "updated", 3: "inflight"}   # re-verified by the next run
    assert client.clients[2]["City"] == "Boston" and client.clients[3]["City"] == "Boston"
    assert len(client.ops("save")) == 2
    assert clock.slept == []


def test_should_stop_stops_before_the_next_row(checkpoint, clock):
    a, b = profile(1), profile(2)
    client = FakeClient([a, b])
    done = []

    outcome = apply_plan(client, [update_plan(2, a, City="Austin"), update_plan(3, b, City="Austin")],
                         checkpoint, clock=clock, should_stop=lambda: bool(done),
                         on_row=lambda plan: done.append(plan.row))

    assert isinstance(outcome.stopped_by, Interrupted)
    assert done == [2]
    assert status_of(checkpoint) == {2: "updated"}
    assert len(client.ops("save")) == 1
