"""Apply a Plan through the API client, one journalled operation at a time.

For each row: mark the operation in flight in the checkpoint (committed), send it,
record the answer (committed). A save always sends the live full profile with the
changed fields merged in (``RowPlan.body``); tag calls follow the save.

Failures:

* a 4xx answer (``RequestRejected``) is final for the row: recorded with the API's
  message; the run goes on;
* a transient failure (5xx, timeout, lost connection: ``TransientApiError``) leaves the
  effect uncertain, so the operation is verified against live and sent again only if
  it did not land (a few times; a re-run always retries the row);
* a transient failure of that verifying read (``TRANSIENT_ERRORS``) leaves the row
  ``pending`` with its operation unverified (the next run verifies it first); the run
  goes on with the next row;
* ``BudgetExhausted`` stops the run cleanly (``importer.run_import`` plans again after a
  ``--wait``); a stop request (Ctrl-C) stops after the request in flight: the client
  sends nothing more (``Interrupted``), not even a retry or a verifying read; any other
  ``EtlError`` (auth, a wrong URL...) stops the run the same way, since the rows after
  it would meet it too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from ..clock import SystemClock, api_day_before
from ..errors import TRANSIENT_ERRORS, EtlError, Interrupted, RequestRejected, TransientApiError
from .checkpoint import Checkpoint
from .diff import CREATE, Change, RowPlan, merged_body, normalized, tag_op_field
from .matching import fold
from .reports import RowResult

TRANSIENT_TRIES = 3
NOT_FOUND_TRIES = 4          # "Client not found" right after a create: propagation lag
NOT_FOUND_PAUSE = 2.0


@dataclass
class ApplyOutcome:
    results: dict[int, RowResult] = field(default_factory=dict)
    created: dict[int, int] = field(default_factory=dict)   # row → the ClientId its create made
    stopped_by: Exception | None = None      # BudgetExhausted, Interrupted, or the EtlError that stopped it


    def with_client(self, plan: RowPlan) -> RowPlan:
        """``plan`` with the ClientId its create made, if it made one (the plan is not changed)."""
        created = self.created.get(plan.row)
        return plan if created is None else dataclasses.replace(plan, client_id=created)


class _RowFailed(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def apply_plan(client, plans: list[RowPlan], checkpoint: Checkpoint, *, tz: str = "UTC",
               clock=None, should_stop: Callable[[], bool] = lambda: False,
               on_row: Callable[[RowPlan], None] = lambda plan: None,
               known_ids: Callable[[RowPlan], set[int]] = lambda plan: set(),
               on_saved: Callable[[RowPlan], None] = lambda plan: None,
               on_created: Callable[[RowPlan], None] = lambda plan: None,
               on_sending: Callable[[RowPlan], None] = lambda plan: None,
               outcome: ApplyOutcome | None = None) -> ApplyOutcome:
    """Send every row's operations; returns each touched row's result.

    ``on_saved(plan)`` hears of each save that landed and, as a plan of ``Tags+<tag>`` /
    ``Tags-<tag>`` changes (``diff.tag_op_field``), of each row's completed tag calls: the
    import records both, to tell its own changes in IntakeQ from staff's. ``on_sending(plan)``
    is heard before a row's first request (the run's journal records its before images).

    Stops at the first ``BudgetExhausted``, ``Interrupted``, or any other ``EtlError`` that
    is not a row's own failure (``stopped_by``): the row in hand stays in the checkpoint as
    in flight or pending, and the caller plans again before going on (after a wait, the
    bodies planned before it would be stale). The rows done so far are in the outcome
    either way.
    """
    clock = clock or SystemClock()
    outcome = outcome if outcome is not None else ApplyOutcome()   # the caller's: kept if a bug escapes
    fresh = FreshProfiles(client, clock, tz)
    for plan in (p for p in plans if p.writes):
        if should_stop():
            outcome.stopped_by = Interrupted("stopped by Ctrl-C after the request in flight")
            break
        try:
            if plan.body is not None and plan.action != CREATE:
                fresh.refresh_if_old()
            on_sending(plan)
            outcome.results[plan.row] = _apply_row(client, plan, checkpoint, tz, clock, known_ids, on_saved,
                                                   on_created, fresh, outcome.created)
        except EtlError as exc:          # BudgetExhausted, Interrupted (Ctrl-C), or an error every later row would meet
            outcome.stopped_by = exc
            break
        finally:
            on_row(outcome.with_client(plan))
    return outcome


def _apply_row(client, plan: RowPlan, cp: Checkpoint, tz: str, clock, known_ids, on_saved,
               on_created=lambda plan: None, fresh: "FreshProfiles | None" = None,
               created: dict[int, int] | None = None) -> RowResult:
    fields = tuple(c.field for c in plan.changes) + (("Tags",) if plan.tag_adds or plan.tag_removes else ())
    client_id = plan.client_id
    try:
        if plan.action == CREATE:
            client_id = _create(client, plan, cp, clock, known_ids(plan))
            if created is not None:
                created[plan.row] = client_id
            on_created(dataclasses.replace(plan, client_id=client_id))
        elif plan.body is not None:
            _save(client, plan, cp, tz, fresh.body_for(plan) if fresh is not None else plan.body)
            on_saved(plan)
        for tag in plan.tag_adds:
            _tag(client, plan.row, client_id, tag, True, cp, clock, just_created=plan.action == CREATE)
        for tag in plan.tag_removes:
            _tag(client, plan.row, client_id, tag, False, cp, clock, just_created=False)
        if plan.action != CREATE and (plan.tag_adds or plan.tag_removes):
            on_saved(RowPlan(plan.row, client_id, plan.action, changes=[
                Change(tag_op_field(t, add), None, True)
                for add, tags in ((True, plan.tag_adds), (False, plan.tag_removes)) for t in tags]))
    except _RowFailed as exc:
        cp.finish(plan.row, exc.status, client_id=client_id, fields=fields, error=exc.message)
        return RowResult(plan.row, client_id, exc.status, fields, exc.message)
    except TRANSIENT_ERRORS as exc:
        return _left_unverified(plan.row, client_id, cp, fields, exc)
    # A row that also keeps values (an undo's conflicts) is not done: it says so.
    status = "created" if plan.action == CREATE else "conflict" if plan.conflicts else "updated"
    cp.finish(plan.row, status, client_id=client_id, fields=fields)
    return RowResult(plan.row, client_id, status, fields, plan.message)


def _left_unverified(row: int, client_id: int | None, cp: Checkpoint, fields: tuple, exc) -> RowResult:
    """The read verifying an uncertain write failed too: whether it landed is unknown.

    Guessing either way could lose an edit or create a client twice, so the row waits
    for a re-run, which checks live (for a create: searches by name) before sending.
    """
    message = (f"could not check whether a request took effect ({exc.message}); "
               "a re-run verifies and retries this row")
    cp.leave_unverified(row, fields=fields, error=message)
    return RowResult(row, client_id, "pending", fields, message)


# --------------------------------------------------------------------------- saves


REFRESH_SECONDS = 600.0     # how old planned profiles may get before IntakeQ is asked what changed


class FreshProfiles:
    """Keeps the bodies of a long run's saves from going stale.

    A save replaces the whole client, and its body is the live profile read while
    planning; at 10 requests a minute the 500th save goes out nearly an hour later, and a
    body that old would undo what staff changed meanwhile. So every ``REFRESH_SECONDS``
    of applying, one listing of the clients updated since (a request per 100 of them, not
    one per client) tells which planned clients changed: their bodies are merged again
    from the fresh profile, and a row whose changed field staff changed too becomes a
    conflict instead of a write.
    """

    def __init__(self, client, clock, tz: str):
        self.client, self.clock, self.tz = client, clock, tz
        self.as_of = clock.time()
        self.profiles: dict[int, dict] = {}

    def refresh_if_old(self) -> None:
        if self.clock.time() - self.as_of < REFRESH_SECONDS:
            return
        since = api_day_before(self.as_of)
        self.as_of = self.clock.time()
        for record in self.client.iter_clients(date_updated_start=since):
            self.profiles[int(record["ClientId"])] = record

    def body_for(self, plan: RowPlan) -> dict:
        record = self.profiles.get(plan.client_id)
        if record is None or record.get("LastUpdateDate") == plan.body.get("LastUpdateDate"):
            return plan.body
        from ..codec import clients_to_frame

        now = clients_to_frame([record], tz=self.tz).iloc[0]
        clashes = [c.field for c in plan.changes
                   if normalized(c.field, now.get(c.field)) not in (normalized(c.field, c.old),
                                                                     normalized(c.field, c.new))]
        if clashes:
            raise _RowFailed("conflict", f"{', '.join(clashes)} changed in IntakeQ while this run was "
                                         "sending: not written; run the same command again to see the conflict")
        return merged_body(record, plan.changes, self.tz)


def _save(client, plan: RowPlan, cp: Checkpoint, tz: str, body: dict) -> None:
    for _attempt in range(TRANSIENT_TRIES):
        cp.begin(plan.row, "save", client_id=plan.client_id)
        try:
            client.save_client(body)
            return
        except RequestRejected as exc:
            raise _RowFailed("failed", f"IntakeQ refused the save: {exc.message}") from None
        except TransientApiError:
            live = client.get_client(plan.client_id)
            if live is None:
                raise _RowFailed("failed", f"ClientId {plan.client_id} was not found in IntakeQ") from None
            if _landed(live, plan.changes, tz):
                return
            body = merged_body(live, plan.changes, tz)   # staff edits since stay kept
    raise _RowFailed("pending", "IntakeQ kept failing (5xx or timeouts); a re-run retries this row")


def _landed(live: dict, changes: list[Change], tz: str) -> bool:
    """Does the live profile already hold every changed value?"""
    from ..codec import clients_to_frame

    row = clients_to_frame([live], tz=tz).iloc[0]
    return all(normalized(c.field, row.get(c.field)) == normalized(c.field, c.new) for c in changes)


def _create(client, plan: RowPlan, cp: Checkpoint, clock, known: set[int]) -> int:
    for _attempt in range(TRANSIENT_TRIES):
        cp.begin(plan.row, "create", known_ids=known)
        try:
            saved = client.save_client(plan.body)
        except RequestRejected as exc:
            raise _RowFailed("failed", f"IntakeQ refused the new client: {exc.message}") from None
        except TransientApiError:
            found = find_created(client, plan, known)
            if found is None:
                continue
            saved = {"ClientId": found}
        client_id = int(saved["ClientId"])
        cp.set_client(plan.row, client_id)
        return client_id
    raise _RowFailed("pending", "IntakeQ kept failing (5xx or timeouts); a re-run retries this row")


def find_created(client, plan_or_values, known: set[int]) -> int | None:
    """The client a create made, if it landed: same first and last name, not known before.

    ``known`` holds the live clients that shared the name before the create was sent,
    so a new one is recognised even when the row has no email or phone.
    """
    first, last = plan_or_values.name_key if isinstance(plan_or_values, RowPlan) else plan_or_values
    # Search by the last name alone: the API matches it inside Name whatever Name holds.
    found = [r for r in client.iter_clients(search=last or first)
             if fold(r.get("FirstName")) == first and fold(r.get("LastName")) == last
             and int(r["ClientId"]) not in known]
    return max(int(r["ClientId"]) for r in found) if found else None


# --------------------------------------------------------------------------- tags


def _tag(client, row: int, client_id: int, tag: str, add: bool, cp: Checkpoint, clock,
         just_created: bool) -> None:
    op = "tag_add" if add else "tag_remove"
    send = client.add_tag if add else client.remove_tag
    not_found_left = NOT_FOUND_TRIES if just_created else 1
    transient_left = TRANSIENT_TRIES
    while True:
        cp.begin(row, op, client_id=client_id, detail=tag)
        try:
            send(client_id, tag)
            return
        except RequestRejected as exc:
            not_found_left -= 1
            if "not found" in exc.message.lower() and not_found_left > 0:
                clock.sleep(NOT_FOUND_PAUSE)
                continue
            raise _RowFailed("failed", f"IntakeQ refused the tag {'add' if add else 'removal'}: "
                                       f"{exc.message}") from None
        except TransientApiError:
            live = client.get_client(client_id)
            if live is not None and (tag in (live.get("Tags") or [])) == add:
                return
            transient_left -= 1
            if transient_left <= 0:
                raise _RowFailed("pending", "IntakeQ kept failing on a tag call; a re-run retries this row") from None
