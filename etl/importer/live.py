"""Live data for an import: only the clients the file's edits need, at the lowest cost."""
from __future__ import annotations

from dataclasses import dataclass

from ..api.client import PAGE_SIZE
from ..clock import api_day_before
from . import diff as D
from .base import Base


@dataclass
class Live:
    records: dict[int, dict]
    universe: list[dict]               # live clients known for matching new rows
    strategy: str


@dataclass(frozen=True)
class ReadPlan:
    """How live data will be read, and what it costs (in requests), before any is sent."""

    ids: list[int]                     # clients to look up one by one
    has_new: bool                      # new rows: clients created since the base are listed
    per_client: bool                   # False: a full pull
    cost: int | None                   # requests (None: a full pull of an unknown size)


def plan_reads(client, edits: list[D.RowEdit], base: Base, extra_ids=()) -> ReadPlan:
    """The cheapest way to read what ``edits`` need (see :func:`fetch_live`)."""
    need = [e for e in edits if e.needs_live]
    ids = sorted({e.client_id for e in need if e.client_id is not None} | set(extra_ids))
    has_new = any(e.client_id is None for e in need)
    if not need and not ids:
        return ReadPlan([], False, True, 0)
    kept_listing = hasattr(client, "has_listing") and client.has_listing()
    # New rows are matched against every client (IntakeQ would match a create to one we do
    # not know and replace its whole profile), so a filtered base cannot serve them.
    if base.frame is not None and (base.complete or not has_new):
        full_cost = 0 if kept_listing else len(base.frame) // PAGE_SIZE + 1   # a kept full pull is free
        kept = client.cached_ids() if hasattr(client, "cached_ids") else set()
        lookups = sum(1 for cid in ids if cid not in kept)
        per_client = lookups + (1 if has_new else 0)      # + the listing of clients created since
        if per_client <= full_cost:
            return ReadPlan(ids, has_new, True, per_client)
        return ReadPlan(ids, has_new, False, full_cost)
    return ReadPlan(ids, has_new, False, 0 if kept_listing else None)


def fetch_live(client, edits: list[D.RowEdit], base: Base, extra_ids=(), reads: ReadPlan | None = None) -> Live:
    """Live data at the lowest cost, for the rows that need it.

    With a base: per-client look-ups when they cost no more than a full pull, plus one
    query for clients created since the base (to match new rows); else a full pull.
    Without a base: a full pull.

    ``client`` may read through kept reads (``reads.ReadThrough``): then only the look-ups
    not kept yet count as a cost, and a kept full pull costs nothing.
    """
    reads = reads or plan_reads(client, edits, base, extra_ids)
    if not reads.ids and reads.per_client and not reads.has_new:
        return Live({}, [], "no live data needed")
    if reads.per_client:
        records = {}
        for cid in reads.ids:
            found = client.get_client(cid)
            if found is not None:
                records[int(found["ClientId"])] = found
        universe = list(records.values())
        how = f"{len(reads.ids)} per-client look-up(s)"
        if reads.has_new:
            since = api_day_before(base.taken_at or client.clock.time())
            created = list(client.iter_clients(date_created_start=since))
            universe += created
            records.update({int(r["ClientId"]): r for r in created})   # full profiles too
            how += f" + clients created since {since.isoformat()}"
        return Live(records, universe, how)
    everyone = list(client.iter_clients())
    records = {int(r["ClientId"]): r for r in everyone}
    why = ("no base" if base.frame is None else "new rows, and the base export was filtered"
           if reads.has_new and not base.complete else "many rows changed")
    return Live(records, everyone, f"full pull of all clients ({why})")


def live_custom_fields(live: Live) -> dict | None:
    """FieldId → label of the custom fields live clients list (IntakeQ lists every field of
    the account on each client); None when no client was fetched."""
    from ..codec import custom_field_labels

    records = [r for r in list(live.records.values()) + list(live.universe) if "CustomFields" in r]
    return custom_field_labels(records) if records else None
