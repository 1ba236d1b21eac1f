"""Full or incremental, and why: decided before any request, revised once after the fetch.

An incremental run builds on the newest complete snapshot of the account. It is a full
export instead, and :attr:`Mode.reason` says why (on stderr and in the manifest's
``mode_reason``), when there is no such snapshot, it is more than
``MAX_SNAPSHOT_AGE_DAYS`` old (IntakeQ forgets deleted clients after 10 days), with
``--full-refresh``, or when the timezone, base URL or schema version differ; and, found
only by fetching, when the account's custom fields changed (:func:`after_fetch`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..clock import DAY
from ..config import Settings
from ..state.snapshots import SnapshotStore, watermark_epoch
from .manifest import public_base_url, schema_version
from .options import ExportOptions

MAX_SNAPSHOT_AGE_DAYS = 9

FULL = "full"
INCREMENTAL = "incremental"


@dataclass(frozen=True)
class Mode:
    """How this run fetches: ``name`` (``"full"`` or ``"incremental"``), ``reason`` (one
    line for people), and for an incremental run the export id it builds on."""

    name: str
    reason: str
    base_id: str | None = None

    @classmethod
    def full(cls, reason: str) -> "Mode":
        return cls(FULL, reason)

    @classmethod
    def incremental_from(cls, export_id: str) -> "Mode":
        return cls(INCREMENTAL, f"incremental from export {export_id}", export_id)

    @property
    def incremental(self) -> bool:
        return self.name == INCREMENTAL


def choose_mode(store: SnapshotStore, opts: ExportOptions, settings: Settings, *,
                now: float) -> Mode:
    """The mode before any request: full unless asked, and unless a snapshot says otherwise."""
    if not opts.incremental:
        if opts.filters.any():
            return Mode.full("filtered export (--search/--created-since/... given)")
        return Mode.full("full export (--incremental not given)")
    if opts.full_refresh:
        return Mode.full("full export: --full-refresh given")
    newest = store.newest(complete_only=True)
    if newest is None:
        return Mode.full("full export: no earlier complete snapshot of this account")
    export_id, meta = newest
    age_days = (now - (watermark_epoch(meta) or 0.0)) / DAY
    if age_days > MAX_SNAPSHOT_AGE_DAYS:
        return Mode.full(f"full export: the last snapshot is {age_days:.1f} days old (more than "
                         f"{MAX_SNAPSHOT_AGE_DAYS}: deleted clients may have expired from the API)")
    if meta.get("timezone", "UTC") != opts.timezone:
        return Mode.full(f"full export: the last snapshot used timezone {meta.get('timezone')}, "
                         f"this run {opts.timezone}")
    if meta.get("base_url") and meta.get("base_url") != settings_base(settings):
        return Mode.full("full export: the last snapshot came from another base URL")
    if str(meta.get("schema_version", schema_version())) != schema_version():
        return Mode.full("full export: the last snapshot was made with another schema version")
    if not store.exists(export_id):
        return Mode.full("full export: the last snapshot is missing")
    return Mode.incremental_from(export_id)


def after_fetch(mode: Mode, snapshot_labels: dict, fetched_labels: dict) -> Mode:
    """An incremental run whose changed clients carry other custom fields than its snapshot
    cannot merge them (the columns differ): a full export instead."""
    if mode.incremental and fetched_labels and set(fetched_labels) != set(snapshot_labels):
        return Mode.full("full export: the account's custom fields changed since the last snapshot")
    return mode


def settings_base(settings: Settings) -> str:
    """The base URL that identifies the account's server in snapshot meta.

    The port of a loopback URL is dropped: the embedded sandbox (``--sandbox``) listens on
    a new free port each run, yet serves the same account from the state dir.
    """
    from urllib.parse import urlsplit, urlunsplit

    from ..config import is_loopback

    url = public_base_url(settings.base_url)
    parts = urlsplit(url)
    if is_loopback(parts.hostname):
        return urlunsplit((parts.scheme, parts.hostname, parts.path, "", ""))
    return url
