"""What an export is asked to do: one :class:`ExportOptions`, checked when it is made.

The CLI builds one from its flags; a notebook passes the same names as keywords to
:func:`etl.export.export_clients`. A bad value is a :class:`~etl.errors.ConfigError`
raised before any request (in the order the CLI always checked them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from .. import fields
from ..codec.formats import FORMATS
from ..errors import ConfigError


@dataclass
class Filters:
    """The API's own client filters. None of them given: the export is of the whole account."""

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


@dataclass
class ExportOptions:
    """Every option of an export (the CLI's flags), normalised when made.

    ``out``: the folder to write to (None: write no files, return the frames; the snapshot
    is still stored unless ``save_snapshot`` is False). ``columns``: ``"A,B"`` or a list
    (ClientId first, always; None: every column). ``custom``: ``["FIELD=VALUE", ...]`` or
    a dict. ``created_since``/``updated_since``: a date, a datetime or ``yyyy-MM-dd``.
    """

    out: Path | str | None = None
    format: str = "csv"
    incremental: bool = False
    full_refresh: bool = False
    include_deleted: bool = False
    include_diagnoses: bool = False
    columns: list[str] | str | None = None
    search: str | None = None
    created_since: date | str | None = None
    updated_since: date | str | None = None
    custom: dict[str, str] | list[str] | None = None
    external_id: str | None = None
    timezone: str = "UTC"
    formula_guard: bool = True
    save_snapshot: bool = True

    def __post_init__(self):
        from ..codec.records import zone

        self.format = (self.format or "csv").lower()
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}: use csv, parquet or xlsx")
        self.timezone = self.timezone or "UTC"
        zone(self.timezone)                     # a ConfigError names a bad one
        self.columns = parse_columns(self.columns)
        self.search = self.search or None
        self.created_since = _as_date(self.created_since, "--created-since")
        self.updated_since = _as_date(self.updated_since, "--updated-since")
        self.custom = parse_custom(self.custom)
        self.external_id = self.external_id or None
        if self.incremental and self.filters.any() and not self.full_refresh:
            raise ConfigError("--incremental cannot be combined with --search, --created-since, "
                              "--updated-since, --custom or --external-id (an incremental export "
                              "is always of the whole account); drop one of them")
        if self.out is not None:
            self.out = Path(self.out).expanduser()

    @property
    def filters(self) -> Filters:
        return Filters(search=self.search, created_since=self.created_since,
                       updated_since=self.updated_since, custom=self.custom,
                       external_id=self.external_id)

    @property
    def complete(self) -> bool:
        """A complete snapshot (of the whole account): what an incremental run builds on."""
        return not self.filters.any()


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


def check_columns(columns: list[str] | None, custom_ids=(), *, all_custom_known: bool = False,
                  after: str = "nothing was sent") -> None:
    """Refuse, before any request, a --columns name that is neither a registered column nor
    a custom field (``custom.<FieldId>``) of the newest snapshot, with a "did you mean".

    A ``custom.`` name the snapshot does not know may be a field added since: it is
    checked again after the first page (every profile lists all the account's custom
    fields: ``all_custom_known``), before the rest is fetched.
    """
    if not columns:
        return
    custom = {fields.custom_column(c) for c in custom_ids}
    known = list(fields.KNOWN_NAMES) + sorted(custom)
    unknown = [c for c in columns if c not in known and (all_custom_known or not fields.is_custom(c))]
    if not unknown:
        return
    raise ConfigError("--columns names columns this account does not have: " + with_hints(unknown, known)
                      + "; " + after)


def with_hints(unknown: list[str], known: list[str]) -> str:
    """``Emial (did you mean Email?), Xyz``: each unknown name with the known one it is
    probably (the same but for case, else the closest spelling)."""
    import difflib

    folded = {k.casefold(): k for k in known}
    hints = []
    for name in unknown:
        match = folded.get(name.casefold()) or next(
            iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None)
        hints.append(f"{name} (did you mean {match}?)" if match else name)
    return ", ".join(hints)


def check_custom_filters(custom: dict[str, str], custom_ids) -> None:
    """Refuse, before any request, a --custom filter on a field the newest snapshot does not
    list (a filter on a field the account lacks would spend the requests on an empty
    listing). Without a snapshot nothing is known: the filter is sent as given."""
    known = list(custom_ids)
    if not custom or not known:
        return
    unknown = [f for f in custom if f not in known]
    if not unknown:
        return
    raise ConfigError("--custom names fields the newest export of this account does not have: "
                      + with_hints(unknown, known) + " (known: " + ", ".join(known) + "; a field added since? "
                      "run a full export first); nothing was sent")


def new_custom_columns(columns: list[str] | None, custom_ids) -> list[str]:
    """``custom.`` names of --columns that the snapshot's custom fields do not hold."""
    known = {fields.custom_column(c) for c in custom_ids}
    return [c for c in columns or () if fields.is_custom(c) and c not in known]


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
