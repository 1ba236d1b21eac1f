"""Export: full and incremental extraction of an account's clients, deleted clients and
diagnoses, to CSV / Parquet / XLSX with a manifest and a snapshot.

The library behind ``intakeq-etl export``; a notebook does what the CLI does with::

    from etl import Settings, export_clients
    result = export_clients(Settings.from_env(), out="exports/", incremental=True)
    result.clients          # the typed clients DataFrame (sorted by ClientId)
    result.manifest         # what manifest.json says

Requests (the API pages 100 clients):

* full: ⌈N/100⌉ GET clients?includeProfile=true (one more only when N % 100 == 0);
* incremental, from the newest complete snapshot and its watermark W:
  dateUpdatedStart = (W − 1 day) and dateCreatedStart = (W − 1 day) (the API filters by
  whole days; a create might not set LastUpdateDate), plus the deletedOnly pages. The
  rows are merged into the snapshot by ClientId, deleted ids dropped: the same content
  as a full export at the same moment, for ⌈U/100⌉ + 1 + deleted pages;
* ``include_deleted``: the deletedOnly pages (shared with an incremental run);
* ``include_diagnoses``: one request per client not yet current (see
  :mod:`etl.diagnoses_progress`), resumable across days.

Nothing is written until everything asked for is fetched; then every file goes to a
temporary name in ``out`` and is renamed into place, manifest.json last. When the
budget runs out while fetching clients, nothing is written; when it runs out while
fetching diagnoses, the clients file and the diagnoses that are complete are written
and :class:`~etl.errors.BudgetExhausted` is raised (exit 75) with ``.result`` set.
"""
from __future__ import annotations

import stat
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd

from . import fields
from .api.client import PAGE_SIZE
from .clock import SystemClock
from .config import Settings
from .diagnoses_progress import DiagnosesProgress
from .errors import BudgetExhausted, ConfigError, EtlError, PathError, RequestRejected
from .files import (StagedFiles, discard, folder_is_writable, make_private_dirs, others_can_read,
                    refuse_symlink, remove_stale_temps)
from .manifest import (MANIFEST_NAME, build_manifest, file_entry, iso_utc, new_export_id,
                       schema_version)
from .snapshots import SnapshotStore, conform_frame, watermark_epoch

FORMATS = ("csv", "parquet", "xlsx")
DAY = 86_400.0
MAX_SNAPSHOT_AGE_DAYS = 9
FRAME_CHUNK = 5_000  # records converted to a frame at a time (bounds peak memory)

Notify = Callable[[str], None]


@dataclass
class ExportResult:
    """What an export produced. ``manifest`` is the manifest.json content."""

    clients: pd.DataFrame
    deleted: pd.DataFrame | None
    diagnoses: pd.DataFrame | None
    manifest: dict
    out: Path | None = None
    files: list[Path] = field(default_factory=list)
    all_columns: pd.DataFrame | None = None   # every column (what the snapshot holds)

    @property
    def export_id(self) -> str:
        return self.manifest["export_id"]

    @property
    def mode(self) -> str:
        return self.manifest["mode"]

    @property
    def requests(self) -> int:
        return self.manifest["requests"]


@dataclass
class _Filters:
    search: str | None = None
    created_since: date | None = None
    updated_since: date | None = None
    custom: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None

    def any(self) -> bool:
        return bool(self.search or self.created_since or self.updated_since or self.custom
                    or self.external_id)

    def api_kwargs(self) -> dict:
        return {
            "search": self.search,
            "date_created_start": self.created_since,
            "date_updated_start": self.updated_since,
            "custom": dict(self.custom) or None,
            "external_client_id": self.external_id,
        }

    def for_manifest(self) -> dict:
        """Which filters were given. A search string, an external id and custom-field
        values can be client data (a name, an email): only their presence is recorded."""
        return {
            "search": bool(self.search),
            "created_since": self.created_since.isoformat() if self.created_since else None,
            "updated_since": self.updated_since.isoformat() if self.updated_since else None,
            "custom": sorted(self.custom),
            "external_id": bool(self.external_id),
        }


# --------------------------------------------------------------------------------------
# options

def parse_columns(columns) -> list[str] | None:
    """``"A,B"`` or a list → a column list (ClientId first, always); None = every column."""
    if columns is None:
        return None
    if isinstance(columns, str):
        names = [c.strip() for c in columns.split(",")]
    else:
        names = [str(c).strip() for c in columns]
    names = [n for n in names if n]
    if not names:
        raise ConfigError("--columns is empty: name at least one column, "
                          "e.g. --columns ClientId,Email")
    names = list(dict.fromkeys(names))
    if "ClientId" not in names:
        names.insert(0, "ClientId")
    return names


def parse_custom(custom) -> dict[str, str]:
    """``["sotc=Jane", "custom.Ref=Web"]`` or a dict → {FieldId: value}."""
    if not custom:
        return {}
    if isinstance(custom, dict):
        items = custom.items()
    else:
        items = []
        for item in map(str, custom):
            if "=" not in item:
                raise ConfigError("--custom wants FIELD=VALUE (e.g. --custom sotc=Yes), "
                                  f"not {item!r}")
            items.append(item.split("=", 1))
    out = {}
    for name, value in items:
        name = str(name).strip()
        if fields.is_custom(name):
            name = fields.custom_field_id(name)
        if not name:
            raise ConfigError("--custom wants FIELD=VALUE with a custom field id before '='")
        out[name] = str(value)
    return out


def _as_date(value, option: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{option} wants a date as yyyy-MM-dd, not {value!r}") from None


def check_timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {name!r}: use an IANA name such as "
                          "America/New_York or UTC") from None
    return name


# --------------------------------------------------------------------------------------
# progress

class _Progress:
    """A tqdm bar on stderr (pages, clients, throttle ETA), or nothing."""

    def __init__(self, enabled: bool, client):
        self.enabled = enabled
        self.client = client
        self._bar = None

    def start(self, desc: str, total: int | None, unit: str) -> None:
        self.close()
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                         dynamic_ncols=True)

    def update(self, n: int = 1, *, clients: int | None = None, remaining: int | None = None):
        if self._bar is None:
            return
        postfix = {}
        if clients is not None:
            postfix["clients"] = clients
        if remaining:
            try:
                eta = self.client.estimate_seconds(remaining)
            except Exception:  # pragma: no cover - estimate is best effort
                eta = None
            if eta:
                postfix["throttle_eta"] = f"{eta:.0f}s"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_default() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------
# records → typed frame

class _FrameBuilder:
    """Turns pages of API records into one typed frame, a chunk at a time."""

    def __init__(self, tz: str):
        self.tz = tz
        self.parts: list[pd.DataFrame] = []
        self.buffer: list[dict] = []
        self.labels: dict[str, str] = {}
        self.count = 0

    def add(self, records: Iterable[dict]) -> None:
        for record in records:
            self.buffer.append(record)
            self.count += 1
        if len(self.buffer) >= FRAME_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        from .codec import clients_to_frame, custom_field_labels

        self.labels.update(custom_field_labels(self.buffer))
        self.parts.append(clients_to_frame(self.buffer, tz=self.tz))
        self.buffer = []

    def frame(self) -> pd.DataFrame:
        self._flush()
        frame = combine_frames(self.parts)
        if not len(frame.columns):
            frame = empty_clients_frame()
        return frame


def empty_clients_frame() -> pd.DataFrame:
    """No clients: every registered column, typed (an empty account still has a header)."""
    return pd.DataFrame({f.name: pd.Series(dtype=f.dtype) for f in fields.FIELDS})


def combine_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate typed frames (columns in registry order, registry dtypes), sorted by ClientId."""
    parts = [p for p in parts if len(p.columns)]
    if not parts:
        return pd.DataFrame()
    columns = fields.order_columns([c for p in parts for c in p.columns])
    nonempty = [p for p in parts if len(p)]
    if not nonempty:
        frame = parts[0].iloc[0:0]
        for column in columns:
            if column not in frame.columns:
                frame[column] = pd.Series(dtype=fields.KIND_DTYPES[fields.kind_of(column)])
        return conform_frame(frame[columns]).reset_index(drop=True)
    if len(nonempty) == 1:
        frame = nonempty[0]
    else:
        frame = pd.concat(nonempty, ignore_index=True, sort=False)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series([pd.NA] * len(frame), dtype="object", index=frame.index)
    frame = conform_frame(frame[columns])
    return sort_by_client_id(frame)


def sort_by_client_id(frame: pd.DataFrame) -> pd.DataFrame:
    if "ClientId" not in frame.columns or frame.empty:
        return frame.reset_index(drop=True)
    return frame.sort_values("ClientId", kind="stable", na_position="last").reset_index(drop=True)


def _epoch_ms(value) -> float | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).timestamp() * 1000.0


def _ids(records: Iterable[dict]) -> list[int]:
    out = []
    for record in records:
        try:
            out.append(int(record.get("ClientId", record.get("ClientNumber"))))
        except (TypeError, ValueError):
            continue
    return out


# --------------------------------------------------------------------------------------
# the export

class _Run:
    """One export run: its options, client, timings, and what it fetched."""

    def __init__(self, client, settings: Settings, *, clock, progress: _Progress,
                 notify: Notify):
        self.client = client
        self.settings = settings
        self.clock = clock
        self.progress = progress
        self.notify = notify
        self.requests_at_start = getattr(client, "requests_sent", 0)

    @property
    def requests(self) -> int:
        return getattr(self.client, "requests_sent", 0) - self.requests_at_start

    def pages(self, desc: str, expected_records: int | None = None,
              **query) -> Iterator[list[dict]]:
        expected_pages = None
        if expected_records is not None:
            expected_pages = expected_records // PAGE_SIZE + 1
        self.progress.start(desc, expected_pages, "page")
        seen = 0
        done = 0
        try:
            for page in self.client.iter_pages(**query):
                seen += len(page)
                done += 1
                remaining = max(expected_pages - done, 0) if expected_pages else None
                self.progress.update(1, clients=seen, remaining=remaining)
                yield page
        finally:
            self.progress.close()

    def fetch(self, desc: str, expected_records: int | None = None, **query) -> list[dict]:
        records: list[dict] = []
        for page in self.pages(desc, expected_records, **query):
            records.extend(page)
        return records

    def build(self, desc: str, tz: str, expected_records: int | None = None,
              **query) -> tuple[pd.DataFrame, dict[str, str], int]:
        builder = _FrameBuilder(tz)
        for page in self.pages(desc, expected_records, **query):
            builder.add(page)
        return builder.frame(), builder.labels, builder.count


def export_clients(settings_or_client, *, out=None, format: str = "csv",
                   incremental: bool = False, full_refresh: bool = False,
                   include_deleted: bool = False, include_diagnoses: bool = False,
                   columns=None, search: str | None = None, created_since=None,
                   updated_since=None, custom=None, external_id: str | None = None,
                   timezone: str = "UTC", formula_guard: bool = True,
                   progress: bool | None = None, notify: Notify | None = None,
                   clock=None, save_snapshot: bool = True) -> ExportResult:
    """Export the account's clients (and, if asked, deleted clients and diagnoses).

    ``settings_or_client``: a :class:`~etl.config.Settings` (a client is made and closed
    here) or an :class:`~etl.api.IntakeQClient`. ``out``: the directory to write
    ``clients.<format>``, ``deleted_clients.<format>``, ``diagnoses.<format>`` and
    ``manifest.json`` to (None: write no files, return the frames; the snapshot is still
    stored unless ``save_snapshot=False``). ``progress``: a tqdm bar on stderr (None:
    only when stderr is a terminal). ``notify``: called with one-line, data-free
    messages (mode and why, what was written).

    Raises :class:`~etl.errors.BudgetExhausted` when the daily budget runs out (with
    ``.result`` set if diagnoses were cut short and the rest was written), and other
    :class:`~etl.errors.EtlError` for what a user can fix.
    """
    format = (format or "csv").lower()
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}: use csv, parquet or xlsx")
    timezone_name = check_timezone(timezone or "UTC")
    wanted_columns = parse_columns(columns)
    filters = _Filters(search=search or None,
                       created_since=_as_date(created_since, "--created-since"),
                       updated_since=_as_date(updated_since, "--updated-since"),
                       custom=parse_custom(custom), external_id=external_id or None)
    if incremental and filters.any() and not full_refresh:
        raise ConfigError("--incremental cannot be combined with --search, --created-since, "
                          "--updated-since, --custom or --external-id (an incremental export "
                          "is always of the whole account); drop one of them")
    notify = notify or (lambda message: None)
    out_dir = Path(out).expanduser() if out is not None else None
    if out_dir is not None:
        prepare_out_dir(out_dir, format, notify)     # before any request: a bad --out costs none

    own_client = isinstance(settings_or_client, Settings)
    if own_client:
        from .api import IntakeQClient

        clock = clock or SystemClock()
        client = IntakeQClient(settings_or_client, clock=clock)
    else:
        client = settings_or_client
        clock = clock or getattr(client, "clock", None) or SystemClock()
    settings: Settings = client.settings
    if progress is None:
        progress = progress_default()
    run = _Run(client, settings, clock=clock, progress=_Progress(bool(progress), client),
               notify=notify)
    try:
        return _export(run, out_dir=out_dir, format=format, incremental=incremental,
                       full_refresh=full_refresh, include_deleted=include_deleted,
                       include_diagnoses=include_diagnoses, columns=wanted_columns,
                       filters=filters, tz=timezone_name, formula_guard=formula_guard,
                       save_snapshot=save_snapshot)
    finally:
        run.progress.close()
        if own_client:
            client.close()


def _choose_mode(run: _Run, store: SnapshotStore, *, incremental: bool, full_refresh: bool,
                 filters: _Filters, tz: str, now: float) -> tuple[str, str, str | None]:
    """("full"|"incremental", why, base export id)."""
    if not incremental:
        if filters.any():
            return "full", "filtered export (--search/--created-since/... given)", None
        return "full", "full export (--incremental not given)", None
    if full_refresh:
        return "full", "full export: --full-refresh given", None
    newest = store.newest(complete_only=True)
    if newest is None:
        return "full", "full export: no earlier complete snapshot of this account", None
    export_id, meta = newest
    age_days = (now - (watermark_epoch(meta) or 0.0)) / DAY
    if age_days > MAX_SNAPSHOT_AGE_DAYS:
        return ("full", f"full export: the last snapshot is {age_days:.1f} days old (more than "
                f"{MAX_SNAPSHOT_AGE_DAYS}: deleted clients may have expired from the API)", None)
    if meta.get("timezone", "UTC") != tz:
        return ("full", f"full export: the last snapshot used timezone {meta.get('timezone')}, "
                f"this run {tz}", None)
    if meta.get("base_url") and meta.get("base_url") != settings_base(run.settings):
        return "full", "full export: the last snapshot came from another base URL", None
    if str(meta.get("schema_version", schema_version())) != schema_version():
        return "full", "full export: the last snapshot was made with another schema version", None
    if not store.exists(export_id):
        return "full", "full export: the last snapshot is missing", None
    return "incremental", f"incremental from export {export_id}", export_id


def settings_base(settings: Settings) -> str:
    """The base URL that identifies the account's server in snapshot meta.

    The port of a loopback URL is dropped: the embedded sandbox (``--sandbox``) listens on
    a new free port each run, yet serves the same account from the state dir.
    """
    from urllib.parse import urlsplit, urlunsplit

    from .config import is_loopback
    from .manifest import public_base_url

    url = public_base_url(settings.base_url)
    parts = urlsplit(url)
    if is_loopback(parts.hostname):
        return urlunsplit((parts.scheme, parts.hostname, parts.path, "", ""))
    return url


def _export(run: _Run, *, out_dir: Path | None, format: str, incremental: bool,
            full_refresh: bool, include_deleted: bool, include_diagnoses: bool,
            columns: list[str] | None, filters: _Filters, tz: str, formula_guard: bool,
            save_snapshot: bool) -> ExportResult:
    settings = run.settings
    started = run.clock.time()
    watermark = started
    export_id = new_export_id(started)
    store = SnapshotStore(settings)

    mode, reason, base_id = _choose_mode(run, store, incremental=incremental,
                                         full_refresh=full_refresh, filters=filters, tz=tz,
                                         now=started)
    run.notify(reason)
    try:
        frame, labels, deleted_records, (mode, reason, base_id) = _fetch_clients(
            run, store, (mode, reason, base_id), watermark=watermark, tz=tz, filters=filters,
            include_deleted=include_deleted)
    except BudgetExhausted as exc:
        where = f"nothing was written to {out_dir}" if out_dir else "nothing was written"
        raise _budget_error(exc, f"{where}; run the same command again then") from exc

    complete = not filters.any()
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(
                "--columns names columns this account does not have: " + ", ".join(missing)
                + ". Known columns: " + ", ".join(map(str, frame.columns)))

    warnings = _warnings(frame)
    if warnings:
        run.notify(f"{len(warnings)} schema problem(s) in the API's data; the clients are "
                   "exported anyway and listed in manifest.json by ClientId")

    deleted_frame = None
    if include_deleted:
        deleted_frame = _deleted_frame(deleted_records or [], frame, tz)

    diagnoses_frame = None
    diagnoses_info = None
    budget_exc = None
    if include_diagnoses:
        diagnoses_frame, diagnoses_info, budget_exc = _diagnoses(run, frame, complete=complete)

    status = "complete" if budget_exc is None else "diagnoses_incomplete"
    rows = {"clients": int(len(frame))}
    if deleted_frame is not None:
        rows["deleted_clients"] = int(len(deleted_frame))
    if diagnoses_frame is not None:
        rows["diagnoses"] = int(len(diagnoses_frame))

    manifest_args = dict(
        export_id=export_id, started=started, base_url=settings.base_url, mode=mode,
        mode_reason=reason, based_on=base_id, status=status, rows=rows,
        custom_fields=labels or {}, warnings=warnings, watermark=watermark,
        filters=filters.for_manifest(), columns=columns, format=format, timezone_name=tz,
        formula_guard=formula_guard, diagnoses=diagnoses_info,
        snapshot=export_id if save_snapshot else None,
    )
    snapshot_meta = {
        "watermark": iso_utc(watermark), "watermark_epoch": watermark, "complete": complete,
        "timezone": tz,
        "custom_fields": labels or {}, "base_url": settings_base(settings), "mode": mode,
        "schema_version": schema_version(), "filters": filters.for_manifest(),
    }

    written: list[Path] = []
    if out_dir is not None:
        manifest, written = _write(run, out_dir, format, frame, deleted_frame, diagnoses_frame,
                                   columns, formula_guard, manifest_args,
                                   store if save_snapshot else None, export_id, snapshot_meta)
    else:
        if save_snapshot:
            store.save(export_id, frame, {**snapshot_meta, "finished": iso_utc(run.clock.time())})
        manifest = build_manifest(finished=run.clock.time(), requests=run.requests, files=[],
                                  **manifest_args)

    result = ExportResult(clients=frame if not columns else frame[columns],
                          deleted=deleted_frame, diagnoses=diagnoses_frame, manifest=manifest,
                          out=out_dir, files=written, all_columns=frame)
    if budget_exc is not None:
        left = diagnoses_info["remaining"]
        err = _budget_error(budget_exc, f"diagnoses of {left} client(s) still to fetch; the "
                            "clients file and the diagnoses fetched so far were written; run "
                            "the same command again then to continue")
        err.result = result
        raise err from budget_exc
    return result


def _fetch_clients(run: _Run, store: SnapshotStore, mode_reason_base, *, watermark: float, tz: str,
                   filters: _Filters, include_deleted: bool):
    """The clients frame (incremental merge or full pull), custom-field labels and, when
    asked or already fetched, the deleted clients. An incremental run may fall back to
    full: the (mode, reason, base id) returned say what was done."""
    mode, reason, base_id = mode_reason_base
    newest_any = store.newest(complete_only=False)
    expected = int(newest_any[1].get("rows", 0)) if newest_any else None
    frame = labels = deleted_records = None
    if mode == "incremental":
        frame, labels, deleted_records, fallback = _incremental(run, store, base_id, watermark, tz)
        if fallback:
            mode, reason, base_id = "full", fallback, None
            run.notify(reason)
    if mode == "full":
        frame, labels, _ = run.build("clients", tz, expected, include_profile=True,
                                     **filters.api_kwargs())
    if include_deleted and deleted_records is None:
        deleted_records = run.fetch("deleted clients", include_profile=True, deleted_only=True)
    return frame, labels, deleted_records, (mode, reason, base_id)


def _budget_error(exc: BudgetExhausted, extra: str) -> BudgetExhausted:
    message = exc.message
    if exc.frees_at is None:
        message += " (retry tomorrow)"
    err = BudgetExhausted(f"{message}; {extra}", used=exc.used, limit=exc.limit,
                          frees_at=exc.frees_at)
    return err


def _incremental(run: _Run, store: SnapshotStore, base_id: str, watermark: float, tz: str):
    """Updated + created since (snapshot watermark − 1 day), merged into the snapshot."""
    base, meta = store.load(base_id)
    since = datetime.fromtimestamp(watermark_epoch(meta) - DAY, tz=timezone.utc).date()
    records: dict[int, dict] = {}
    unkeyed: list[dict] = []
    for desc, query in (("updated clients", {"date_updated_start": since}),
                        ("created clients", {"date_created_start": since})):
        for page in run.pages(desc, None, include_profile=True, **query):
            for record in page:
                try:
                    key = int(record["ClientId"])
                except (KeyError, TypeError, ValueError):
                    unkeyed.append(record)
                    continue
                records.setdefault(key, record)
    deleted_records = run.fetch("deleted clients", include_profile=True, deleted_only=True)
    deleted_ids = set(_ids(deleted_records))

    builder = _FrameBuilder(tz)
    builder.add(list(records.values()) + unkeyed)
    changed = builder.frame()
    labels = {**meta.get("custom_fields", {})}
    if builder.labels:
        if set(builder.labels) != set(meta.get("custom_fields", {})):
            return None, None, deleted_records, (
                "full export: the account's custom fields changed since the last snapshot")
        labels = builder.labels

    parts = []
    if len(base):
        keep = ~base["ClientId"].isin(set(records) | deleted_ids)
        parts.append(base[keep])
    if len(changed):
        parts.append(changed[~changed["ClientId"].isin(deleted_ids)])
    if not parts:
        parts = [base]
    merged = combine_frames(parts)
    run.notify(f"{len(records)} client(s) updated or created and {len(deleted_ids)} deleted "
               f"since {since.isoformat()}")
    return merged, labels, deleted_records, None


def _deleted_frame(records: list[dict], clients: pd.DataFrame, tz: str) -> pd.DataFrame:
    builder = _FrameBuilder(tz)
    builder.add(records)
    frame = builder.frame()
    if frame.empty and not len(frame.columns):
        frame = clients.iloc[0:0].copy()
    return sort_by_client_id(frame)


def _warnings(frame: pd.DataFrame) -> list[dict]:
    """Schema problems of the API's data, by ClientId and check, without values."""
    from schemas.clients import validate_clients

    problems = validate_clients(frame)
    ids = frame["ClientId"] if "ClientId" in frame.columns else None
    out = []
    for problem in problems:
        client_id = None
        row = getattr(problem, "row", None)
        if row is not None and ids is not None:
            index = int(row) - 2  # spreadsheet row, header = 1
            if 0 <= index < len(ids) and not pd.isna(ids.iloc[index]):
                client_id = int(ids.iloc[index])
        out.append({
            "client_id": client_id,
            "column": getattr(problem, "column", None),
            "check": getattr(problem, "check", None),
            "severity": getattr(problem, "severity", "error"),
        })
    return out


def _diagnoses(run: _Run, frame: pd.DataFrame, *, complete: bool):
    """Fetch what is not current (never fetched first), until done or the budget ends."""
    clients = []
    updated = frame["LastUpdateDate"] if "LastUpdateDate" in frame.columns else None
    for i, client_id in enumerate(frame["ClientId"]):
        if pd.isna(client_id):
            continue
        last_update = _epoch_ms(updated.iloc[i]) if updated is not None else None
        clients.append((int(client_id), last_update))
    updated_by_id = dict(clients)
    budget_exc = None
    fetched = not_found = 0
    with DiagnosesProgress.for_settings(run.settings) as progress_store:
        plan = progress_store.plan(clients)
        run.notify(f"diagnoses: {plan.current} client(s) current, {plan.never_fetched} never "
                   f"fetched, {plan.stale} updated since their fetch")
        run.progress.start("diagnoses", len(plan.todo), "client")
        try:
            for n, client_id in enumerate(plan.todo):
                try:
                    rows = run.client.diagnoses(client_id)
                except RequestRejected as exc:
                    if exc.status != 404:
                        raise
                    # Deleted since the list was fetched (or just created: the API lags).
                    # Not recorded: it stays "never fetched" and goes first next time.
                    not_found += 1
                else:
                    progress_store.record(client_id, updated_by_id.get(client_id), rows,
                                          run.clock.time())
                    fetched += 1
                run.progress.update(1, remaining=len(plan.todo) - n - 1)
        except BudgetExhausted as exc:
            budget_exc = exc
        finally:
            run.progress.close()
        if not_found:
            run.notify(f"diagnoses: {not_found} client(s) not found (deleted meanwhile?); "
                       "tried again next run")
        if complete and budget_exc is None:
            progress_store.forget_except(updated_by_id)
        stored = progress_store.rows(updated_by_id)
    rows = []
    for client_id, _ in clients:
        for row in stored.get(client_id, []):
            rows.append({"ClientId": client_id, **row})
    remaining = len(plan.todo) - fetched
    info = {
        "clients": len(clients),
        "current": plan.current + fetched,
        "fetched_this_run": fetched,
        "not_found": not_found,
        "remaining": remaining,
        "complete": remaining == 0,
        "with_rows": len([c for c, _ in clients if stored.get(c)]),
    }
    return diagnoses_to_frame(rows), info, budget_exc


def diagnoses_to_frame(rows: list[dict]) -> pd.DataFrame:
    """The diagnoses table (ClientId, Code, Description, Date, EndDate, NoteId)."""
    from .codec import diagnoses_to_frame as codec_diagnoses

    return codec_diagnoses(rows)


def prepare_out_dir(out_dir: Path, format: str, notify: Notify) -> None:
    """Make ``out_dir`` ready before any request, or say in one line why it cannot be used.

    A missing folder is created owner-only (0700). An existing one keeps its mode (it is
    the user's: a shared or group folder, a read-only backup, the working folder): one
    that others can read gets a warning (the files are 0600 anyway), one that is not
    writable is refused rather than made writable.
    """
    try:
        if not out_dir.exists():
            make_private_dirs(out_dir)
            return
        if not out_dir.is_dir():
            raise ConfigError(f"cannot use --out {out_dir}: it is a file, not a folder")
        mode = f"{stat.S_IMODE(out_dir.stat().st_mode):04o}"
        if not folder_is_writable(out_dir):
            raise PathError(
                f"cannot use --out {out_dir}: the folder is not writable (mode {mode}); intakeq-etl "
                "does not change the mode of a folder it did not create: choose another folder, "
                "or make this one writable")
        for name in (*output_names(format), MANIFEST_NAME):
            refuse_symlink(out_dir / name, "--out:")
        if others_can_read(out_dir):
            notify(f"warning: --out {out_dir} can be read by others (mode {mode}); its mode is "
                   "left as it is, the files are written owner-only (0600)")
    except OSError as exc:
        raise ConfigError(f"cannot use --out {out_dir}: {exc.strerror or exc}") from None


def output_names(format: str) -> list[str]:
    return [f"{stem}.{format}" for stem in OUTPUT_STEMS]


def _write(run: _Run, out_dir: Path, format: str, frame, deleted_frame, diagnoses_frame,
           columns, formula_guard, manifest_args, store, export_id, snapshot_meta):
    try:
        return _write_files(run, out_dir, format, frame, deleted_frame, diagnoses_frame, columns,
                            formula_guard, manifest_args, store, export_id, snapshot_meta)
    except OSError as exc:   # disk full, permissions, a folder removed meanwhile
        where = f" ({exc.filename})" if exc.filename else ""
        raise EtlError(f"cannot write the export{where}: {exc.strerror or exc}; the previous "
                       f"export in {out_dir} is intact") from None


def _write_files(run: _Run, out_dir: Path, format: str, frame, deleted_frame, diagnoses_frame,
                 columns, formula_guard, manifest_args, store, export_id, snapshot_meta):
    from .codec import write_table

    make_private_dirs(out_dir)          # removed meanwhile: created again; an existing one keeps its mode
    remove_stale_temps(out_dir)
    tables = [("clients", frame[columns] if columns else frame, None)]
    if deleted_frame is not None:
        tables.append(("deleted_clients",
                       deleted_frame[[c for c in columns if c in deleted_frame.columns]]
                       if columns else deleted_frame, None))
    if diagnoses_frame is not None:
        tables.append(("diagnoses", diagnoses_frame, fields.DIAGNOSIS_KINDS))
    with StagedFiles(out_dir) as batch:
        files = []
        for stem, table, kinds in tables:
            name = f"{stem}.{format}"
            tmp = batch.path(name)
            # The id inside the file: a copy moved away from its manifest still names its export.
            write_table(table, tmp, format=format, formula_guard=formula_guard, kinds=kinds,
                        export_id=export_id)
            files.append(file_entry(name, tmp, rows=int(len(table))))
        if store is not None:
            store.save(export_id, frame, {**snapshot_meta, "finished": iso_utc(run.clock.time())})
        manifest = build_manifest(finished=run.clock.time(), requests=run.requests, files=files,
                                  **manifest_args)
        batch.write_json(MANIFEST_NAME, manifest)
        written = batch.commit(last=[MANIFEST_NAME])
    _remove_outputs_not_in(out_dir, {p.name for p in written})
    run.notify(f"wrote {', '.join(p.name for p in written)} to {out_dir}")
    return manifest, written


OUTPUT_STEMS = ("clients", "deleted_clients", "diagnoses")


def _remove_outputs_not_in(out_dir: Path, keep: set[str]) -> None:
    """Files an earlier export left in the folder (another format, or a table this run did
    not write) would sit unlisted beside the new manifest: remove them."""
    for stem in OUTPUT_STEMS:
        for ext in ("csv", "parquet", "xlsx"):
            name = f"{stem}.{ext}"
            if name not in keep:
                discard(out_dir / name)
