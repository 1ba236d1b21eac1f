"""``intakeq-etl quota``: the ledger of this account's requests. Sends no request."""
from __future__ import annotations

import json

import click

from ..errors import format_epoch
from . import options


@click.command("quota", epilog=options.examples(
    "intakeq-etl quota",
    "intakeq-etl --sandbox quota --json",
))
@options.as_json(help="Print the numbers as one JSON object.")
@click.pass_obj
def quota(app, as_json: bool):
    """Show the daily request budget: used in the last 24 h, remaining, when the next frees up.

    Reads the local ledger only (no API call). The key (or --sandbox) only tells which
    account's ledger to read. Shows what running runs have reserved, and, when IntakeQ
    answered 429 for the day (its quota is shared with the practice's other integrations),
    0 remaining until the moment the server named, with "server says" beside the local count.
    """
    from ..api import Ledger

    settings = app.account_settings()
    settings.require_key()
    ledger = Ledger.for_settings(settings)
    try:
        usage = ledger.usage()
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps(usage_dict(usage, settings), indent=2))
    else:
        for label, value in usage_lines(usage):
            click.echo(f"{label + ':':<28}{value}")


def usage_dict(usage, settings) -> dict:
    return {
        "account": settings.account_id,
        "used_24h": usage.used_24h,
        "limit": usage.limit or None,
        "remaining": usage.remaining,
        "next_free_at": usage.next_free_at,
        "next_free_at_utc": format_epoch(usage.next_free_at) if usage.next_free_at else None,
        "per_minute": usage.per_minute,
        "used_last_minute": usage.used_last_minute,
        "reserved": usage.reserved,
        "reservations": [{"what": h.what, "pid": h.pid, "host": h.host, "unspent": h.unspent}
                         for h in usage.reservations],
        "local_remaining": usage.local_remaining,
        "server_says": None if usage.server_exhausted_until is None else {
            "remaining": 0,
            "frees_at": usage.server_exhausted_until,
            "frees_at_utc": format_epoch(usage.server_exhausted_until),
        },
    }


def usage_lines(usage) -> list[tuple[str, str]]:
    limit = str(usage.limit) if usage.limit else "none"
    remaining = str(usage.remaining) if usage.remaining is not None else "unlimited"
    if usage.server_exhausted_until is not None:
        local = ("unlimited" if usage.local_remaining is None else str(usage.local_remaining))
        remaining = ("0 (server says: IntakeQ answered 429 for the day; local count: "
                     f"{local} remaining)" if usage.server_disagrees else "0 (server says so too)")
    lines = [
        ("used in the last 24 h", str(usage.used_24h)),
        ("daily limit", limit),
        ("remaining", remaining),
    ]
    if usage.reservations:
        lines.append(("reserved by running runs", f"{usage.reserved}: "
                      + "; ".join(h.describe() for h in usage.reservations)))
    lines += [
        ("next request frees up", next_free_text(usage)),
        ("per-minute limit", f"{usage.per_minute} ({usage.used_last_minute} used in the last minute)"),
    ]
    return lines


def next_free_text(usage) -> str:
    if usage.server_exhausted_until is not None:
        return f"{format_epoch(usage.server_exhausted_until)} (per the server)"
    if usage.next_free_at is None:
        return "now" if usage.remaining != 0 else "unknown"
    when = format_epoch(usage.next_free_at)
    if usage.remaining:
        return f"{when} (requests are available now)"
    return when
