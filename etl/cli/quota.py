"""``intakeq-etl quota``: the ledger of this account's requests. Sends no request."""
from __future__ import annotations

import json

import click

from ..errors import format_epoch
from . import options


@click.command("quota")
@options.as_json(help="Print the numbers as one JSON object.")
@click.pass_obj
def quota(app, as_json: bool):
    """Show the daily request budget: used in the last 24 h, remaining, when the next frees up.

    Reads the local ledger only (no API call). The key (or --sandbox) only tells which
    account's ledger to read.
    """
    from ..api import Ledger

    settings = app.settings()
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
    }


def usage_lines(usage) -> list[tuple[str, str]]:
    limit = str(usage.limit) if usage.limit else "none"
    remaining = str(usage.remaining) if usage.remaining is not None else "unlimited"
    return [
        ("used in the last 24 h", str(usage.used_24h)),
        ("daily limit", limit),
        ("remaining", remaining),
        ("next request frees up", next_free_text(usage)),
        ("per-minute limit", f"{usage.per_minute} ({usage.used_last_minute} used in the last minute)"),
    ]


def next_free_text(usage) -> str:
    if usage.next_free_at is None:
        return "now" if usage.remaining != 0 else "unknown"
    when = format_epoch(usage.next_free_at)
    if usage.remaining:
        return f"{when} (requests are available now)"
    return when
