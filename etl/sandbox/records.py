"""API-shaped client records: the blank profile, value coercion, the short record.

A profile holds every field of ``etl.fields`` (in registry order) plus ``CustomFields``
listing *all* of the account's custom fields (``Value`` null when empty), as real
traffic shows. Instants and dates are Unix milliseconds written as floats
(``1744432686643.0``), ``null`` when unset. ``ClientNumber`` is ``str(ClientId)``
(the doc's short record shows ``ClientNumber: "32"``).
"""
from __future__ import annotations

import re

from .. import fields

MS_FIELDS = fields.DATE_FIELDS + fields.INSTANT_FIELDS
SHORT_KEYS = ("Name", "Email", "Phone", "ClientNumber")
_DIGITS = re.compile(r"\D+")


def blank_profile(client_id: int, custom_fields: list[dict]) -> dict:
    record = dict.fromkeys(fields.KNOWN_NAMES)
    record.update(ClientId=client_id, ClientNumber=str(client_id), Tags=[], Archived=False,
                  BillingType=0, CreditBalance=0.0, LinkedClients=[])
    record["CustomFields"] = [{"FieldId": f["FieldId"], "Text": f["Text"], "Value": None}
                              for f in custom_fields]
    return record


def short_record(record: dict) -> dict:
    return {key: record.get(key) for key in SHORT_KEYS}


def ms(epoch_seconds: float | None) -> float | None:
    """Epoch seconds -> Unix ms as the API writes them (a float of whole ms)."""
    if epoch_seconds is None:
        return None
    return float(round(epoch_seconds * 1000))


def digits(value) -> str:
    return _DIGITS.sub("", str(value or ""))

