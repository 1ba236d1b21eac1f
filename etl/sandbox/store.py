"""The sandbox's account: API-shaped client records behind one lock, optionally in a file.

``Store.clients`` maps ClientId -> profile (see ``records``); ``Store.deleted`` holds
deleted clients (ClientId -> profile) with ``Store.deleted_at`` (epoch seconds), visible
through ``deletedOnly`` for 10 days by the store's clock. ``Store.diagnoses`` maps
ClientId -> list of diagnoses.

With ``state_path`` the whole account is written after every mutation (JSON, temp file +
``os.replace``, mode 0600), so it survives restarts; ``Store.load(path)`` reads it back.
Concurrent processes sharing one state file: last writer wins (each loads once at start).

Save semantics (``save_client``), as the doc and real traffic describe:

* ``ClientId`` given (not null, not 0) -> update that client; 404 "Client not found" if
  unknown (deleted clients are unknown).
* otherwise match a live client on first name + email, or first name + phone (names and
  emails compared case-insensitively, phones by their digits; the lowest ClientId wins)
  -> update it; else create, which needs FirstName and LastName (400 otherwise).
* **a save replaces every writable field** (``fields.WRITABLE``): one missing from the body
  is cleared (null; ``Archived`` -> false and ``BillingType`` -> 0, which cannot be null);
  custom fields missing from the body's ``CustomFields`` get ``Value`` null; unknown
  FieldIds are ignored; read-only fields are kept. ``LastUpdateDate`` = now.
* phones: a leading '+' is dropped; an empty MobilePhone gets the Phone; an empty Name
  becomes "First Last". Text fields sent as numbers are stored as strings; dates must be
  numbers (Unix ms) or null, else 400. Body keys are matched case-insensitively (as
  ASP.NET model binding does).

Order of GET clients: Name compared case-insensitively (``str.casefold``, so by code point:
"Łukasz" sorts after "Zoe"; IntakeQ's database collation may put accented letters with
their base letter), ties by ClientId.

Deviations: the real API's propagation lag after a create ("Client not found" for a
moment) is not emulated.
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from .. import fields
from ..clock import SystemClock
from ..state.files import write_json_atomic
from . import seed as seed_mod
from .records import MS_FIELDS, blank_profile, digits, ms, short_record

DELETED_VISIBLE_DAYS = 10
DAY_MS = 86_400_000


class Rejected(Exception):
    """An API error answer: status and the JSON ``Message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


NOT_FOUND = "Client not found"


@dataclass(frozen=True)
class Query:
    """The filters of GET clients (dates already as ms bounds: start inclusive, end exclusive)."""

    search: str | None = None
    created_from: float | None = None
    created_before: float | None = None
    updated_from: float | None = None
    updated_before: float | None = None
    custom: tuple = ()            # ((field_id_casefolded, value), ...)
    external_id: str | None = None
    deleted_only: bool = False


def copy_record(record: dict) -> dict:
    out = dict(record)
    out["Tags"] = list(record.get("Tags") or [])
    out["LinkedClients"] = [dict(x) for x in record.get("LinkedClients") or []]
    out["CustomFields"] = [dict(x) for x in record.get("CustomFields") or []]
    return out


def _text(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise Rejected(400, "The request is invalid.")


class Store:
    def __init__(self, custom_fields: list[dict] | None = None, clients=None, *, clock=None,
                 diagnoses: dict | None = None, deleted=None, deleted_at: dict | None = None,
                 next_id: int | None = None, state_path: Path | str | None = None):
        self.clock = clock or SystemClock()
        self.custom_fields: list[dict] = [dict(f) for f in (custom_fields or seed_mod.CUSTOM_FIELDS)]
        self.clients: dict[int, dict] = {}
        for r in (clients.values() if isinstance(clients, dict) else clients or []):
            self.clients[int(r["ClientId"])] = r
        self.deleted: dict[int, dict] = {int(k): v for k, v in (deleted or {}).items()}
        self.deleted_at: dict[int, float] = {int(k): float(v) for k, v in (deleted_at or {}).items()}
        self.diagnoses: dict[int, list[dict]] = {int(k): v for k, v in (diagnoses or {}).items()}
        ids = list(self.clients) + list(self.deleted)
        self.next_id = max(next_id or 1, max(ids, default=0) + 1)
        self.state_path = Path(state_path) if state_path else None
        self.lock = threading.RLock()
        self.version = 0
        self._sorted: list[int] | None = None
        self._cache: dict[Query, list[int]] = {}

    # ---- construction and persistence -------------------------------------------------
    @classmethod
    def seeded(cls, n_clients: int, seed: int = 1, *, clock=None, state_path=None) -> "Store":
        """A synthetic account of ``n_clients`` (ids 1..n), dates relative to the clock's now."""
        clock = clock or SystemClock()
        doc = seed_mod.generate_account(n_clients, seed, now=clock.time())
        return cls.from_document(doc, clock=clock, state_path=state_path)

    @classmethod
    def from_document(cls, doc: dict, *, clock=None, state_path=None) -> "Store":
        if doc.get("format") != seed_mod.FORMAT:
            raise ValueError(f"not a sandbox state document (format {doc.get('format')!r})")
        deleted = {int(d["Client"]["ClientId"]): d["Client"] for d in doc.get("deleted", [])}
        deleted_at = {int(d["Client"]["ClientId"]): d["DeletedAt"] / 1000 for d in doc.get("deleted", [])}
        return cls(doc["custom_fields"], doc["clients"], clock=clock, diagnoses=doc.get("diagnoses"),
                   deleted=deleted, deleted_at=deleted_at, next_id=doc.get("next_id"),
                   state_path=state_path)

    @classmethod
    def load(cls, path: Path | str, *, clock=None) -> "Store":
        with open(path, encoding="utf-8") as fh:
            return cls.from_document(json.load(fh), clock=clock, state_path=path)

    def to_document(self) -> dict:
        with self.lock:
            return {
                "format": seed_mod.FORMAT,
                "custom_fields": self.custom_fields,
                "clients": [self.clients[i] for i in sorted(self.clients)],
                "deleted": [{"DeletedAt": ms(self.deleted_at[i]), "Client": self.deleted[i]}
                            for i in sorted(self.deleted)],
                "diagnoses": {str(k): v for k, v in sorted(self.diagnoses.items())},
                "next_id": self.next_id,
            }

    def persist(self, path: Path | str | None = None) -> None:
        """Write the account to ``path`` (default ``state_path``): atomic, 0600."""
        path = Path(path) if path else self.state_path
        if path is None:
            return
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, self.to_document(), compact=True)

    def _changed(self) -> None:
        self.version += 1
        self._sorted = None
        self._cache.clear()
        self.persist()

    def now_ms(self) -> float:
        return ms(self.clock.time())

    # ---- reads ---------------------------------------------------------------------------
    def sorted_ids(self) -> list[int]:
        with self.lock:
            if self._sorted is None:
                self._sorted = _sort(self.clients)
            return self._sorted

    def query_ids(self, q: Query) -> list[int]:
        """ClientIds matching ``q``, sorted by Name (case-insensitive), ties by ClientId."""
        with self.lock:
            if q.deleted_only:  # depends on the clock: not cached
                cutoff = self.clock.time() - DELETED_VISIBLE_DAYS * 86_400
                pool = {i: r for i, r in self.deleted.items() if self.deleted_at[i] >= cutoff}
                return [i for i in _sort(pool) if _matches(pool[i], q)]
            if q == Query():
                return self.sorted_ids()
            found = self._cache.get(q)
            if found is None:
                found = [i for i in self._candidates(q) if _matches(self.clients[i], q)]
                if len(self._cache) >= 256:  # many distinct searches: start over
                    self._cache.clear()
                self._cache[q] = found
            return found

    def _candidates(self, q: Query) -> list[int]:
        """Every sorted id, or just the one a numeric search names (an exact ClientId match)."""
        s = q.search
        if s is not None and s.isascii() and s.isdigit():
            return [int(s)] if int(s) in self.clients else []
        return self.sorted_ids()

    def page(self, q: Query, page: int, include_profile: bool, size: int = 100) -> list[dict]:
        with self.lock:
            ids = self.query_ids(q)[(page - 1) * size: page * size]
            pool = self.deleted if q.deleted_only else self.clients
            if include_profile:
                return [copy_record(pool[i]) for i in ids]
            return [short_record(pool[i]) for i in ids]

    def get(self, client_id: int) -> dict | None:
        with self.lock:
            r = self.clients.get(int(client_id))
            return copy_record(r) if r is not None else None

    def get_diagnoses(self, client_id: int) -> list[dict]:
        with self.lock:
            if client_id not in self.clients:
                raise Rejected(404, NOT_FOUND)
            return [dict(d) for d in self.diagnoses.get(client_id, [])]

    # ---- API writes ----------------------------------------------------------------------
    def save_client(self, body) -> dict:
        """POST clients: update or create; returns the saved profile. Raises Rejected."""
        if not isinstance(body, dict):
            raise Rejected(400, "The request is invalid.")
        body = _canonical_keys(body)
        with self.lock:
            raw_id = body.get("ClientId")
            target = None
            if raw_id not in (None, 0, "0", ""):
                try:
                    client_id = int(raw_id)
                except (TypeError, ValueError):
                    raise Rejected(400, "The request is invalid.") from None
                target = self.clients.get(client_id)
                if target is None:
                    raise Rejected(404, NOT_FOUND)
            else:
                target = self._match(body)
            values = self._writable_values(body)
            now = self.now_ms()
            if target is None:
                if not (values.get("FirstName") or "").strip() or not (values.get("LastName") or "").strip():
                    raise Rejected(400, "Fields FirstName and LastName are mandatory.")
                target = self._new_record(now)
                self.clients[target["ClientId"]] = target
            target.update(values)
            target["CustomFields"] = self._custom_values(body.get("CustomFields"))
            target["LastUpdateDate"] = now
            self._changed()
            return copy_record(target)

    def _match(self, body: dict) -> dict | None:
        first = (_text(body.get("FirstName")) or "").strip().casefold()
        if not first:
            return None
        email = (_text(body.get("Email")) or "").strip().casefold()
        phone = digits(fields.server_phone(_text(body.get("Phone"))))
        for client_id in sorted(self.clients):
            r = self.clients[client_id]
            if (r.get("FirstName") or "").strip().casefold() != first:
                continue
            if email and (r.get("Email") or "").strip().casefold() == email:
                return r
            if phone and digits(r.get("Phone")) == phone:
                return r
        return None

    def _writable_values(self, body: dict) -> dict:
        values = {}
        for name in fields.WRITABLE:
            value = body.get(name)
            kind = fields.BY_NAME[name].kind
            if kind == "bool":
                value = bool(value) if not isinstance(value, str) else value.strip().lower() == "true"
            elif kind == "enum":
                try:
                    value = int(value) if value not in (None, "") else 0
                except (TypeError, ValueError):
                    raise Rejected(400, "The request is invalid.") from None
            elif name in MS_FIELDS:
                if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
                    value = float(value)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise Rejected(400, f"The value of {name} is not a valid date (Unix milliseconds).")
                value = None if value is None else float(round(value))
            else:
                value = _text(value)
            values[name] = value
        for name in fields.PHONE_FIELDS:
            values[name] = fields.server_phone(values[name])
        if not (values.get("MobilePhone") or "").strip() and values.get("Phone"):
            values["MobilePhone"] = values["Phone"]
        if not (values.get("Name") or "").strip():
            parts = [(values.get(k) or "").strip() for k in ("FirstName", "LastName")]
            values["Name"] = " ".join(p for p in parts if p) or None
        return values

    def _custom_values(self, items) -> list[dict]:
        given = {}
        for item in items or []:
            if isinstance(item, dict):
                item = _canonical_keys(item, ("FieldId", "Text", "Value"))
                if item.get("FieldId") is not None:
                    given[str(item["FieldId"])] = _text(item.get("Value"))
        return [{"FieldId": f["FieldId"], "Text": f["Text"], "Value": given.get(f["FieldId"])}
                for f in self.custom_fields]

    def _new_record(self, now: float) -> dict:
        client_id = self.next_id
        self.next_id += 1
        r = blank_profile(client_id, self.custom_fields)
        r["Guid"] = str(uuid.uuid4())
        r["DateCreated"] = r["LastUpdateDate"] = now
        return r

    def add_tag(self, client_id, tag) -> None:
        client_id, tag = _tag_args(client_id, tag)
        with self.lock:
            r = self.clients.get(client_id)
            if r is None:
                raise Rejected(404, NOT_FOUND)
            if tag not in r["Tags"]:
                r["Tags"].append(tag)
                r["LastUpdateDate"] = self.now_ms()
                self._changed()

    def remove_tag(self, client_id, tag) -> None:
        client_id, tag = _tag_args(client_id, tag)
        with self.lock:
            r = self.clients.get(client_id)
            if r is None:
                raise Rejected(404, NOT_FOUND)
            if tag in r["Tags"]:
                r["Tags"].remove(tag)
                r["LastUpdateDate"] = self.now_ms()
                self._changed()

    # ---- staff helpers (what a person does in IntakeQ's UI) -------------------------------
    def staff_edit(self, client_id: int, **values) -> dict:
        """Change any fields (incl. read-only ones, Tags, ``custom={"sotc": ...}`` or
        ``**{"custom.sotc": ...}``); bumps LastUpdateDate unless it is given."""
        with self.lock:
            r = self.clients.get(int(client_id))
            if r is None:
                raise KeyError(client_id)
            self._apply_staff(r, values)
            self._changed()
            return copy_record(r)

    def add_client(self, **values) -> dict:
        """Create a client as staff would (no name rules enforced); returns its profile."""
        with self.lock:
            r = self._new_record(self.now_ms())
            self.clients[r["ClientId"]] = r
            self._apply_staff(r, values, bump=False)
            self._changed()
            return copy_record(r)

    def delete_client(self, client_id: int) -> None:
        """Delete: gone from the list, visible through deletedOnly for 10 days."""
        with self.lock:
            client_id = int(client_id)
            r = self.clients.pop(client_id)
            self.deleted[client_id] = r
            self.deleted_at[client_id] = self.clock.time()
            self._changed()

    def set_diagnoses(self, client_id: int, diagnoses: list[dict]) -> None:
        with self.lock:
            client_id = int(client_id)
            if client_id not in self.clients and client_id not in self.deleted:
                raise KeyError(client_id)
            self.diagnoses[client_id] = [
                {"Code": d.get("Code"), "Description": d.get("Description"), "Date": d.get("Date"),
                 "EndDate": d.get("EndDate"), "NoteId": d.get("NoteId")} for d in diagnoses]
            self._changed()

    def _apply_staff(self, r: dict, values: dict, bump: bool = True) -> None:
        custom = dict(values.pop("custom", None) or {})
        for key in [k for k in values if fields.is_custom(k)]:
            custom[fields.custom_field_id(key)] = values.pop(key)
        for name, value in values.items():
            if name in MS_FIELDS and value is not None:
                value = float(value)
            if name == "Tags":
                value = list(value or [])
            r[name] = value
        for item in r["CustomFields"]:
            if item["FieldId"] in custom:
                item["Value"] = custom[item["FieldId"]]
        if ("FirstName" in values or "LastName" in values) and "Name" not in values:
            r["Name"] = " ".join(p for p in (r.get("FirstName"), r.get("LastName")) if p) or None
        if bump and "LastUpdateDate" not in values:
            r["LastUpdateDate"] = self.now_ms()


# ---- helpers -------------------------------------------------------------------------------
_CANON = {name.lower(): name for name in fields.KNOWN_NAMES + ("CustomFields",)}


def _canonical_keys(body: dict, names=None) -> dict:
    canon = _CANON if names is None else {n.lower(): n for n in names}
    out = {}
    for key, value in body.items():
        name = canon.get(str(key).lower(), key)
        if name not in out or key == name:
            out[name] = value
    return out


def _tag_args(client_id, tag) -> tuple[int, str]:
    if tag is None or (isinstance(tag, str) and tag == ""):
        raise Rejected(400, "Tag is required.")
    try:
        return int(client_id), str(tag)
    except (TypeError, ValueError):
        raise Rejected(404, NOT_FOUND) from None


def _sort(pool: dict) -> list[int]:
    return sorted(pool, key=lambda i: ((pool[i].get("Name") or "").casefold(), i))


def _matches(r: dict, q: Query) -> bool:
    if q.search is not None:
        s = q.search
        if s.isascii() and s.isdigit():
            if r["ClientId"] != int(s):
                return False
        elif s.casefold() not in (r.get("Name") or "").casefold() and \
                s.casefold() not in (r.get("Email") or "").casefold():
            return False
    for value, lo, hi in ((r.get("DateCreated"), q.created_from, q.created_before),
                          (r.get("LastUpdateDate"), q.updated_from, q.updated_before)):
        if lo is not None and (value is None or value < lo):
            return False
        if hi is not None and (value is None or value >= hi):
            return False
    if q.external_id is not None and r.get("ExternalClientId") != q.external_id:
        return False
    for field_id, wanted in q.custom:
        actual = next((c.get("Value") for c in r.get("CustomFields") or ()
                       if str(c.get("FieldId")).casefold() == field_id), None)
        if actual != wanted:
            return False
    return True


def day_bounds(text: str, *, end: bool) -> float:
    """'yyyy-MM-dd' (UTC day) -> ms: its start, or the start of the next day for an end.

    A full ISO date-time is also accepted and used as the exact instant (end inclusive)."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000
        return start + DAY_MS if end else start
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)  # raises ValueError
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() * 1000 + (1 if end else 0)
