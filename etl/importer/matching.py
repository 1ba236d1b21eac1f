"""IntakeQ's create-or-match rule, and the one way names, emails and phones are compared.

IntakeQ matches a saved client without ClientId to an existing one by first name + email,
or first name + phone, and replaces that client's whole profile. The import applies the
same rule before sending a create (:class:`MatchIndex`), and recognises clients earlier
imports created (:func:`created_earlier`, ``apply.find_created``), all through
:func:`fold` and :func:`digits`.
"""
from __future__ import annotations

import re
from typing import Iterable

import pandas as pd


def plain(v):
    """A typed cell as a plain Python value; NA/NaN/"" → None."""
    if v is None:
        return None
    if isinstance(v, (list, tuple, set, frozenset)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    if isinstance(v, str) and v.strip() == "":
        return None
    if hasattr(v, "item") and not isinstance(v, pd.Timestamp):
        return v.item()
    return v


def fold(v) -> str:
    """A name or email as compared: trimmed and casefolded; None, NA, NaN and blank → ""."""
    v = plain(v)
    return str(v).strip().casefold() if v is not None else ""


_NON_DIGITS = re.compile(r"\D+")


def digits(v) -> str:
    """A phone as compared: its digits only; None, NA, NaN and blank → ""."""
    v = plain(v)
    return _NON_DIGITS.sub("", str(v)) if v is not None else ""


class MatchIndex:
    """IntakeQ's create-or-match rule: first name + email, or first name + phone."""

    def __init__(self):
        self.by_email: dict[tuple[str, str], int] = {}
        self.by_phone: dict[tuple[str, str], int] = {}

    def add(self, cid, first, email, phone) -> None:
        first = fold(first)
        if not first or cid is None:
            return
        if fold(email):
            self.by_email.setdefault((first, fold(email)), int(cid))
        if digits(phone):
            self.by_phone.setdefault((first, digits(phone)), int(cid))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | None) -> "MatchIndex":
        index = cls()
        if frame is None or "FirstName" not in frame.columns:
            return index
        emails = frame["Email"] if "Email" in frame.columns else pd.Series(None, index=frame.index)
        phones = frame["Phone"] if "Phone" in frame.columns else pd.Series(None, index=frame.index)
        for cid, first, email, phone in zip(frame.index, frame["FirstName"], emails, phones):
            index.add(cid, plain(first), plain(email), plain(phone))
        return index

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "MatchIndex":
        index = cls()
        for r in records:
            index.add(r.get("ClientId"), r.get("FirstName"), r.get("Email"), r.get("Phone"))
        return index

    def find_values(self, values: dict) -> tuple[int | None, str | None]:
        first = fold(values.get("FirstName"))
        if not first:
            return None, None
        email = fold(values.get("Email"))
        if email and (first, email) in self.by_email:
            return self.by_email[(first, email)], "first name + email"
        phone = digits(values.get("Phone"))
        if phone and (first, phone) in self.by_phone:
            return self.by_phone[(first, phone)], "first name + phone"
        return None, None

    def find(self, row: pd.Series) -> tuple[int | None, str | None]:
        return self.find_values({k: plain(row.get(k)) for k in ("FirstName", "Email", "Phone")})


def created_earlier(values: dict, created: dict, created_here: dict, live: dict
                     ) -> tuple[int | None, str | None, str | None]:
    """A new row (IntakeQ's rule matched nothing) named like a client an earlier import
    created: from this same file whatever its contact (the admin edited the row's email
    after its import: the file's ClientId cell is still empty), from any file when the row
    has neither email nor phone.

    Returns (ClientId, how, None) for exactly one such live client, (None, None, message)
    when several, else (None, None, None).
    """
    name = (fold(values.get("FirstName")), fold(values.get("LastName")))
    if fold(values.get("Email")) or digits(values.get("Phone")):
        created, how = created_here, "an earlier run of this file created a client with this name"
    else:
        how = "an earlier import created a client with this name"
    ids = sorted(i for i in created.get(name, ()) if i in live)
    if len(ids) == 1:
        return ids[0], how, None
    if len(ids) > 1:
        return None, None, (f"earlier imports created {len(ids)} clients with this name (ClientIds "
                            f"{', '.join(map(str, ids))}): put the right ClientId in the row")
    return None, None, None
