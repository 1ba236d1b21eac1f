"""``intakeq-etl map SOURCE``: a commented mapping proposed from another system's file.

:func:`propose` reads nothing and sends nothing: given the source's headers and cells (as
text) and the account's custom-field labels, it writes the TOML of a mapping
(``etl.importer.mapping``) to start from, and never guesses silently: every line has a
comment saying why it is there, and every column it could not place is listed under
``[ignore]`` with a ``# TODO``.

* headers: an IntakeQ field written another way (``First Name``, ``E-mail``), a custom
  field's label, a common synonym (``DOB``, ``Sex``, ``Mobile``, ``Zip``), a label it starts
  like (``Referral`` for ``Referral Source``), or a near spelling;
* dates: the format of the column's cells (``%d/%m/%Y`` when a first number is over 12,
  ``%m/%d/%Y`` when a second one is), flagged where a date reads both ways (``03/04/1980``);
* ``[values]`` tables for the enum-like fields (Gender, MaritalStatus, BillingType), with
  the usual codes filled in and the others left as TODO lines.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from .. import fields as F
from .mapping import is_mappable, label_index, normalised, suggestion

# Common headers of other systems (normalised: lower case, letters and digits) -> field.
SYNONYMS = {
    **dict.fromkeys(["first", "given", "givenname", "forename", "fname"], "FirstName"),
    **dict.fromkeys(["last", "surname", "familyname", "lname"], "LastName"),
    **dict.fromkeys(["middle", "middleinitial", "mi"], "MiddleName"),
    **dict.fromkeys(["mail", "emailaddress"], "Email"),
    **dict.fromkeys(["mobile", "cell", "cellphone", "mobilenumber", "cellnumber", "mobileno"], "MobilePhone"),
    **dict.fromkeys(["phonenumber", "telephone", "tel", "phoneno", "primaryphone"], "Phone"),
    **dict.fromkeys(["home", "homenumber", "homephonenumber"], "HomePhone"),
    **dict.fromkeys(["work", "officephone", "workphonenumber", "businessphone"], "WorkPhone"),
    **dict.fromkeys(["dob", "birthdate", "birthday", "born"], "DateOfBirth"),
    **dict.fromkeys(["sex", "gendersex"], "Gender"),
    **dict.fromkeys(["marital", "maritalstatus", "civilstatus"], "MaritalStatus"),
    **dict.fromkeys(["street", "address1", "addressline1", "street1"], "StreetAddress"),
    **dict.fromkeys(["address2", "addressline2", "unit", "apt", "apartment", "suite"], "UnitNumber"),
    **dict.fromkeys(["town"], "City"),
    **dict.fromkeys(["state", "province", "region", "st"], "StateShort"),
    **dict.fromkeys(["zip", "zipcode", "postcode", "postal"], "PostalCode"),
    **dict.fromkeys(["billing", "payment", "paymenttype", "paytype"], "BillingType"),
    **dict.fromkeys(["mrn", "chartnumber", "patientid", "externalid", "recordnumber"], "ExternalClientId"),
    **dict.fromkeys(["insurance", "insurancecompany", "insurer", "payer", "carrier"], "PrimaryInsuranceCompany"),
    **dict.fromkeys(["policynumber", "memberid", "policy", "insuranceid"], "PrimaryInsurancePolicyNumber"),
    **dict.fromkeys(["groupnumber", "insurancegroup"], "PrimaryInsuranceGroupNumber"),
    **dict.fromkeys(["labels", "groups", "tag"], "Tags"),
}

# The enum-like fields and their usual codes (casefolded source value -> IntakeQ value).
VALUE_CODES = {
    "Gender": {"m": "Male", "male": "Male", "man": "Male", "f": "Female", "female": "Female",
               "woman": "Female", "w": "Female", "nb": "Non-binary", "nonbinary": "Non-binary",
               "non-binary": "Non-binary", "x": "Non-binary"},
    "MaritalStatus": {"s": "Single", "single": "Single", "m": "Married", "married": "Married",
                      "d": "Divorced", "divorced": "Divorced", "w": "Widowed", "widowed": "Widowed",
                      "sep": "Separated", "separated": "Separated"},
    "BillingType": {"self": "SelfPay", "selfpay": "SelfPay", "self-pay": "SelfPay", "self pay": "SelfPay",
                    "cash": "SelfPay", "private": "SelfPay", "ins": "Insurance", "insurance": "Insurance",
                    "unknown": "Unknown", "0": "Unknown", "1": "SelfPay", "2": "Insurance"},
}
MAX_VALUES = 30        # a column with more distinct values is not enum-like: no table proposed

_SLASH = re.compile(r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})\s*$")
_ISO = re.compile(r"^\s*\d{4}-\d{2}-\d{2}(?:[ T]00:00(?::00)?)?\s*$")


@dataclass
class Placed:
    source: str
    target: str | None              # as written in the mapping (a field, or a custom label)
    why: str
    date: tuple[str, str] | None = None            # (strftime, why)
    values: dict[str, str | None] = field(default_factory=dict)   # source value -> IntakeQ value (None: TODO)
    counts: Counter = field(default_factory=Counter)


def place_header(header: str, labels: dict | None) -> tuple[str | None, str]:
    """(the target a header probably means, why), or (None, why not)."""
    key = normalised(header)
    if key in ("clientid", "id", "clientnumber"):
        return None, "another system's id? IntakeQ's ClientId is its own: ExternalClientId can hold it"
    if (header in F.BY_NAME and is_mappable(header)) or F.is_custom(header):
        return header, "already an IntakeQ column name"
    fields_by_key = {normalised(n): n for n in F.KNOWN_NAMES if is_mappable(n)}
    labels_by_key = {normalised(label): label for label in (labels or {}).values() if label}
    if key in fields_by_key:
        return fields_by_key[key], f"IntakeQ's {fields_by_key[key]}, written another way"
    if key in labels_by_key:
        return labels_by_key[key], "the label of a custom field of the account"
    if key in SYNONYMS:
        return SYNONYMS[key], "a common name for it in other systems"
    starts = [k for k in labels_by_key if len(key) >= 4 and (k.startswith(key) or key.startswith(k))]
    if starts:
        return labels_by_key[starts[0]], f"close to the custom field label {labels_by_key[starts[0]]!r}: check"
    near = suggestion(header, labels)
    if near and (near not in F.BY_NAME or is_mappable(near)):
        return near, f"spelt like {near}: check"
    return None, "no IntakeQ field or custom label looks like it"


def guess_date_format(cells) -> tuple[str | None, str]:
    """(strftime format, why) of a column of date cells; None when no format is needed
    (yyyy-MM-dd) or none was found. Flags dates that read both ways."""
    cells = [c.strip() for c in cells if c and c.strip()]
    if not cells:
        return None, "the column is empty: no date format to guess"
    if all(_ISO.match(c) for c in cells):
        return None, "yyyy-MM-dd already"
    parts = [m.groups() for m in map(_SLASH.match, cells) if m]
    if len(parts) < len(cells):
        bad = len(cells) - len(parts)
        return None, f"TODO: {bad} of {len(cells)} cells are not N/N/YYYY dates; write the format by hand"
    sep = Counter(p[1] for p in parts).most_common(1)[0][0]
    year = "%Y" if all(len(p[3]) == 4 for p in parts) else "%y"
    day_first = [p for p in parts if int(p[0]) > 12]
    month_first = [p for p in parts if int(p[2]) > 12]
    both_ways = [p for p in parts if int(p[0]) <= 12 and int(p[2]) <= 12 and p[0] != p[2]]
    def like(kind):
        return _example(kind, sep, year)

    if day_first and month_first:
        return None, (f"TODO: the column mixes day-first dates (like {like('day')}) and month-first ones "
                      f"(like {like('month')}); fix the file or choose one")
    both = (f"; {len(both_ways)} read both ways (as {like('both')} would): read as %s first "
            f"({like('both')} = %s)") if both_ways else ""
    if day_first:
        fmt = f"%d{sep}%m{sep}{year}"
        why = (f"day first: {len(day_first)} of {len(parts)} dates have a first number over 12 "
               f"(like {like('day')})")
        return fmt, why + (both % ("day", _spelled(like("both"), True)) if both else "")
    if month_first:
        fmt = f"%m{sep}%d{sep}{year}"
        why = (f"month first: {len(month_first)} of {len(parts)} dates have a second number over 12 "
               f"(like {like('month')})")
        return fmt, why + (both % ("month", _spelled(like("both"), False)) if both else "")
    return f"%d{sep}%m{sep}{year}", (f"TODO AMBIGUOUS: every date reads both ways (as {like('both')} would); "
                                    f"day first is a guess: check one date you know, and write "
                                    f"%m{sep}%d{sep}{year} if it is month first")


_EXAMPLES = {"day": ("25", "04"), "month": ("04", "25"), "both": ("03", "04")}


def _example(kind: str, sep: str, year: str) -> str:
    """A made-up date of the column's shape (``kind``: day first, month first, or reads both
    ways). Never a cell of the file: a mapping is shared, and its dates are birth dates."""
    a, b = _EXAMPLES[kind]
    return f"{a}{sep}{b}{sep}{'2001' if year == '%Y' else '01'}"


MONTHS = ("January February March April May June July August September October November December").split()


def _spelled(example: str, day_first: bool) -> str:
    a, b, y = re.split(r"\D", example)
    day, month = (int(a), int(b)) if day_first else (int(b), int(a))
    return f"{day} {MONTHS[month - 1]} {y}"


def propose_values(target: str, cells) -> dict[str, str | None]:
    """Source value -> IntakeQ value for an enum-like field (None: unknown, a TODO)."""
    codes = VALUE_CODES.get(target, {})
    out: dict[str, str | None] = {}
    for value in sorted({c.strip() for c in cells if c and c.strip()}):
        out[value] = codes.get(value.casefold())
    return out


def propose(headers, columns: dict, labels: dict | None, *, source_name: str, labels_from: str) -> tuple[str, dict]:
    """The TOML text of a mapping for a file with ``headers`` (``columns``: header -> its
    cells as text, None for empty), and a summary (counts, for the terminal)."""
    placed: list[Placed] = []
    taken: dict[str, str] = {}                  # resolved target -> source that took it
    labels_cols = label_index(labels)
    for header in headers:
        target, why = place_header(header, labels)
        if target is not None:
            resolved = target if target in F.BY_NAME or F.is_custom(target) else labels_cols.get(normalised(target))
            if resolved in taken:
                why = f"also looks like {target}, which {taken[resolved]!r} takes"
                target = None
            else:
                taken[resolved] = header
        p = Placed(header, target, why)
        cells = columns.get(header, [])
        if target is not None:
            kind = F.kind_of(target) if target in F.BY_NAME else "text"
            if kind == "date" or (target not in F.BY_NAME and "date" in normalised(target)):
                p.date = guess_date_format(cells)
            if target in VALUE_CODES:
                values = propose_values(target, cells)
                if len(values) <= MAX_VALUES:
                    p.values = values
                    p.counts = Counter(c.strip() for c in cells if c and c.strip())
        placed.append(p)
    return _toml(placed, source_name=source_name, labels_from=labels_from), _summary(placed)


def _q(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (a header may hold a newline, a tab,
    a control character)."""
    return json.dumps(text, ensure_ascii=False)


def _toml(placed: list[Placed], *, source_name: str, labels_from: str) -> str:
    mapped = [p for p in placed if p.target is not None]
    width = max((len(_q(p.source)) for p in mapped), default=0)
    lines = [f"# A mapping for {source_name}, proposed by `intakeq-etl map`: check every line, then",
             f"#   intakeq-etl validate {source_name} --map THIS_FILE",
             f"#   intakeq-etl import {source_name} --map THIS_FILE --dry-run",
             f"# Custom fields: {labels_from}.",
             "# Lines marked TODO need a decision; nothing here was guessed without a comment saying why.",
             "",
             "[columns]            # source header = IntakeQ field, custom.<FieldId>, or a custom field's label"]
    for p in mapped:
        lines.append(f"{_q(p.source).ljust(width)} = {_q(p.target)}   # {p.why}")
    dated = [p for p in mapped if p.date is not None]
    lines += ["", "[dates]              # strftime per source column (overrides --date-format for it)"]
    for p in dated:
        fmt, why = p.date
        lines.append(f"{_q(p.source)} = {_q(fmt)}   # {why}" if fmt else f"# {_q(p.source)}: {why}")
    for p in mapped:
        if not p.values:
            continue
        lines += ["", f"[values.{_key(p.target)}]   # {p.source}: source value = IntakeQ value"]
        for value, target in p.values.items():
            rows = p.counts.get(value, 0)
            if target is None:
                lines.append(f"# {_q(value)} = \"\"   # TODO: {rows} row(s); what is it in IntakeQ? (an "
                             "uncovered value stops the import)")
            else:
                lines.append(f"{_q(value)} = {_q(target)}   # {rows} row(s); the usual code")
    lines += ["", "[constants]          # a value for every row (optional)",
              '# Tags = "migrated"   # e.g. a tag on every client this migration creates or updates']
    ignored = [p for p in placed if p.target is None]
    lines += ["", "[ignore]", "columns = ["]
    for p in ignored:
        lines.append(f"  {_q(p.source)},   # TODO: {p.why}; map it in [columns], or leave it out")
    lines.append("]")
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _q(name)


def _summary(placed: list[Placed]) -> dict:
    return {
        "columns": len(placed),
        "mapped": sum(1 for p in placed if p.target is not None),
        "ignored": [p.source for p in placed if p.target is None],
        "dates": {p.source: p.date[0] for p in placed if p.date is not None},
        "todo": sum(1 for p in placed if p.target is None)
        + sum(1 for p in placed if p.date and (p.date[0] is None or "TODO" in p.date[1]))
        + sum(1 for p in placed for v in p.values.values() if v is None),
        "values": [p.target for p in placed if p.values],
    }
