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


def fetch_live(client, edits: list[D.RowEdit], base: Base, extra_ids=()) -> Live:
    """Live data at the lowest cost, for the rows that need it.

    With a base: per-client look-ups when they cost no more than a full pull, plus one
    query for clients created since the base (to match new rows); else a full pull.
    Without a base: a full pull.

    ``client`` may read through kept reads (``reads.ReadThrough``): then only the look-ups
    not kept yet count as a cost, and a kept full pull costs nothing.
    """
    need = [e for e in edits if e.needs_live]
    ids = sorted({e.client_id for e in need if e.client_id is not None} | set(extra_ids))
    has_new = any(e.client_id is None for e in need)
    if not need and not ids:
        return Live({}, [], "no live data needed")
    # New rows are matched against every client (IntakeQ would match a create to one we do
    # not know and replace its whole profile), so a filtered base cannot serve them.
    if base.frame is not None and (base.complete or not has_new):
        full_cost = len(base.frame) // PAGE_SIZE + 1
        kept = client.cached_ids() if hasattr(client, "cached_ids") else set()
        if hasattr(client, "has_listing") and client.has_listing():
            full_cost = 0                  # a full pull kept by an earlier run
        if sum(1 for cid in ids if cid not in kept) <= full_cost:
            records = {}
            for cid in ids:
                found = client.get_client(cid)
                if found is not None:
                    records[int(found["ClientId"])] = found
            universe = list(records.values())
            how = f"{len(ids)} per-client look-up(s)"
            if has_new:
                since = api_day_before(base.taken_at or client.clock.time())
                created = list(client.iter_clients(date_created_start=since))
                universe += created
                records.update({int(r["ClientId"]): r for r in created})   # full profiles too
                how += f" + clients created since {since.isoformat()}"
            return Live(records, universe, how)
    everyone = list(client.iter_clients())
    records = {int(r["ClientId"]): r for r in everyone}
    why = ("no base" if base.frame is None else "new rows, and the base export was filtered"
           if has_new and not base.complete else "many rows changed")
    return Live(records, everyone, f"full pull of all clients ({why})")


def live_custom_fields(live: Live) -> dict | None:
    """FieldId → label of the custom fields live clients list (IntakeQ lists every field of
    the account on each client); None when no client was fetched."""
    from ..codec import custom_field_labels

    records = [r for r in list(live.records.values()) + list(live.universe) if "CustomFields" in r]
    return custom_field_labels(records) if records else None
