"""The clients table schema: pandera columns built from ``etl.fields``, and their checks.

Never stricter than IntakeQ: whatever the API returns validates. Every check has a
stable name that appears in validation reports:

Errors (the file cannot be imported as is)
    client_id_positive      ClientId is a positive whole number (empty = a new client)
    email_shape             Email looks like something@domain (quotes, plus signs allowed)
    billing_type_known      BillingType is 0, 1 or 2
    date_is_iso             date columns hold yyyy-MM-dd (the codec writes them so)
    tags_are_lists          Tags is a list of strings
    duplicate_client_id     no ClientId appears on two rows
    new_client_needs_name   a row without ClientId has FirstName and LastName
    (plus dtype checks, and the codec's cell checks: integer_parses, date_parses, ...)

Warnings (shown, do not fail validation)
    new_client_needs_contact  a new client has neither Email nor Phone (risk of duplicates)
    probable_typo_column      an unknown column that looks like a known one (``Emial``)
    postal_code_lost_zero     a US PostalCode of 4 digits (a spreadsheet dropped the 0)
    email_case_duplicate      an email equal to another row's except for letter case

``validate_clients(frame)`` runs everything at once (lazily) and returns Problems with
spreadsheet row numbers (header = row 1). ``ClientsSchema`` is the same schema as one
pandera model (``ClientsSchema.validate(frame, lazy=True)``).

``SCHEMA_VERSION`` changes when a check or a column's type changes: an export's manifest
records it, and an incremental export from a snapshot of another version runs full.
"""
from __future__ import annotations

import difflib

import numpy as np
import pandas as pd
import pandera.pandas as pa

from etl import fields
from etl.codec.model import ERROR, WARNING, Problem

from . import failure_cases

SCHEMA_VERSION = "1"

# A permissive email: a local part (quoted, or anything without '@'), an @, then a domain
# without spaces. Quotes and '+' pass; IntakeQ's own check is unknown, so stay loose.
EMAIL_PATTERN = r'^\s*(?:"[^"]+"|[^@"\s][^@]*)@[^@\s]+\s*$'
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
US_COUNTRIES = {"", "us", "usa", "u.s.", "u.s.a.", "united states", "united states of america"}

# check name -> (message, hint). Messages never contain client data.
CHECKS: dict[str, tuple[str, str]] = {
    "client_id_positive": ("ClientId must be a positive whole number",
                           "leave ClientId empty for a new client; never edit an existing one"),
    "email_shape": ("not an email address (something@domain)",
                    "fix the address or empty the cell"),
    "billing_type_known": ("BillingType must be 0, 1 or 2",
                           "0 = Unknown, 1 = SelfPay, 2 = Insurance"),
    "date_is_iso": ("not a yyyy-MM-dd date", "write the date as yyyy-MM-dd, e.g. 1990-03-05"),
    "tags_are_lists": ("tags could not be read", "separate tags with '; '"),
    "duplicate_client_id": ("the same ClientId is on more than one row",
                            "each client must appear once: delete or merge the extra rows"),
    "new_client_needs_name": ("a new client (no ClientId) needs FirstName and LastName",
                              "IntakeQ refuses to create a client without both names"),
    "new_client_needs_contact": ("a new client has neither Email nor Phone",
                                 "add one, or IntakeQ may not spot that the client already exists"),
    "probable_typo_column": ("unknown column, probably a misspelt known one",
                             "rename the header; as it is, the column is ignored on import"),
    "postal_code_lost_zero": ("a 4-digit US PostalCode: it has probably lost its leading zero",
                              "write the 0 back (e.g. 02134) and format the column as Text"),
    "email_case_duplicate": ("the same email as another row, differing only in letter case",
                             "check the two rows are not the same person"),
    "dtype": ("the column has the wrong data type", "read files with etl.codec.read_table"),
}

# ---------------------------------------------------------------- column checks
def _client_id_positive(s: pd.Series) -> pd.Series:
    return s > 0


def _email_shape(s: pd.Series) -> pd.Series:
    return s.str.match(EMAIL_PATTERN).fillna(False).astype(bool)


def _billing_type_known(s: pd.Series) -> pd.Series:
    return s.isin(list(fields.BILLING_TYPES))


def _date_is_iso(s: pd.Series) -> pd.Series:
    return s.str.match(DATE_PATTERN).fillna(False).astype(bool)


def _tags_are_lists(s: pd.Series) -> pd.Series:
    return pd.Series([isinstance(v, list) and all(isinstance(t, str) for t in v) for v in s.tolist()],
                     index=s.index, dtype=bool)


# ---------------------------------------------------------------- table checks (row masks)
def _blank(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(True, index=df.index)
    s = df[column]
    if isinstance(s.dtype, pd.StringDtype) or s.dtype == object:
        return s.isna() | (s.astype("string").str.strip() == "").fillna(True)
    return s.isna()


def _new_rows(df: pd.DataFrame) -> pd.Series:
    return _blank(df, "ClientId")


def duplicate_client_id_rows(df: pd.DataFrame) -> pd.Series:
    """True on every row whose ClientId is on another row too."""
    if "ClientId" not in df:
        return pd.Series(False, index=df.index)
    ids = df["ClientId"]
    return (ids.duplicated(keep=False) & ids.notna()).astype(bool)


def new_client_without_name_rows(df: pd.DataFrame) -> pd.Series:
    return (_new_rows(df) & (_blank(df, "FirstName") | _blank(df, "LastName"))).astype(bool)


def new_client_without_contact_rows(df: pd.DataFrame) -> pd.Series:
    return (_new_rows(df) & _blank(df, "Email") & _blank(df, "Phone")).astype(bool)


# ---------------------------------------------------------------- the schema
# Column checks by column name; every date column also gets date_is_iso.
COLUMN_CHECKS: dict[str, list[pa.Check]] = {
    "ClientId": [pa.Check(_client_id_positive, name="client_id_positive")],
    "Email": [pa.Check(_email_shape, name="email_shape")],
    "BillingType": [pa.Check(_billing_type_known, name="billing_type_known")],
    "Tags": [pa.Check(_tags_are_lists, name="tags_are_lists")],
}
DATE_CHECKS = [pa.Check(_date_is_iso, name="date_is_iso")]


def _column(field: fields.Field) -> pa.Column:
    """A registry field as a column: its kind's dtype (the codec produces it, nothing is
    coerced), optional, empty allowed except Tags (the codec reads an empty cell as [])."""
    checks = COLUMN_CHECKS.get(field.name, []) + (DATE_CHECKS if field.kind == "date" else [])
    return pa.Column(field.dtype, checks=checks, nullable=field.kind != "tags", required=False)


# One column per etl.fields entry, and the custom.<FieldId> text columns. Unknown columns
# are allowed (kept read-only, and warned about when they look like a misspelt known one).
COLUMNS: dict[str, pa.Column] = {
    **{f.name: _column(f) for f in fields.FIELDS},
    r"custom\..+": pa.Column(fields.TEXT_DTYPE, regex=True, nullable=True, required=False),
}

# What validate_clients asks pandera: the columns only. It runs the table checks itself
# (faster, and its messages name the other row of a duplicate and the missing name).
COLUMN_SCHEMA = pa.DataFrameSchema(COLUMNS, strict=False, coerce=False)


class ClientsSchema(pa.DataFrameModel):
    """Clients table: one column per fields.FIELDS entry (all optional, nullable),
    custom.<FieldId> text columns, unknown columns allowed; and the two table checks."""

    class Config:
        strict = False  # unknown columns are kept (read-only) and warned about if typos
        coerce = False  # the codec produces the dtypes; pandera checks them

    @pa.dataframe_check(name="duplicate_client_id")
    def _duplicate_client_id(cls, df: pd.DataFrame) -> pd.Series:
        return ~duplicate_client_id_rows(df)

    @pa.dataframe_check(name="new_client_needs_name")
    def _new_client_needs_name(cls, df: pd.DataFrame) -> pd.Series:
        return ~new_client_without_name_rows(df)

    @classmethod
    def build_schema_(cls, **kwargs) -> pa.DataFrameSchema:
        """The model's table checks and :data:`COLUMNS` (they come from the registry, so
        they are not written out as annotations). Pandera builds it once and keeps it."""
        return super().build_schema_(**kwargs).add_columns(COLUMNS)


def _problem(check, row, column, value, severity=ERROR, message=None, hint=None) -> Problem:
    msg, h = CHECKS.get(check, (check, ""))
    return Problem(row=row, column=column, value=None if value is None else str(value),
                   check=check, message=message or msg, hint=h if hint is None else hint,
                   severity=severity)


def _cell(df, column, pos):
    if column not in df:
        return None
    v = df[column].iloc[pos]
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v


def _pandera_problems(df: pd.DataFrame, row_numbers) -> list[Problem]:
    cases = failure_cases(COLUMN_SCHEMA, df)
    if cases is None:
        return []
    problems = []
    for case in cases.itertuples(index=False):
        check = str(case.check)
        column = None if pd.isna(case.column) else str(case.column)
        index = case.index
        if check.startswith("dtype("):
            problems.append(_problem("dtype", None, column, None,
                                     message=f"the column has type {case.failure_case}, "
                                             f"expected {check[6:-1]}"))
            continue
        if index is None or pd.isna(index):
            problems.append(_problem(check, None, column, case.failure_case))
            continue
        pos = df.index.get_loc(index)
        if check == "not_nullable":
            problems.append(_problem(check, int(row_numbers[pos]), column, None,
                                     message="the cell must not be empty", hint=""))
            continue
        value = case.failure_case
        if isinstance(value, list):
            value = "; ".join(map(str, value))
        problems.append(_problem(check, int(row_numbers[pos]), column, value))
    return problems


def _table_problems(df: pd.DataFrame, row_numbers) -> list[Problem]:
    problems = []
    dup = np.flatnonzero(duplicate_client_id_rows(df).to_numpy())
    if len(dup):
        ids = df["ClientId"].iloc[dup].tolist()
        groups: dict = {}
        for pos, cid in zip(dup, ids):
            groups.setdefault(int(cid), []).append(int(row_numbers[pos]))
        for pos, cid in zip(dup, ids):
            others = [r for r in groups[int(cid)] if r != int(row_numbers[pos])]
            problems.append(_problem(
                "duplicate_client_id", int(row_numbers[pos]), "ClientId", cid,
                message="the same ClientId is also on row " + ", ".join(map(str, others))))
    for pos in np.flatnonzero(new_client_without_name_rows(df).to_numpy()):
        missing = [c for c in ("FirstName", "LastName") if _blank(df, c).iloc[pos]]
        problems.append(_problem("new_client_needs_name", int(row_numbers[pos]), missing[0], None,
                                 message="a new client (no ClientId) needs "
                                         + " and ".join(missing)))
    for pos in np.flatnonzero(new_client_without_contact_rows(df).to_numpy()):
        problems.append(_problem("new_client_needs_contact", int(row_numbers[pos]), "Email", None,
                                 severity=WARNING))
    return problems


def _warnings(df: pd.DataFrame, row_numbers) -> list[Problem]:
    problems = []
    known = list(fields.KNOWN_NAMES)
    lower = {k.lower(): k for k in known}
    for column in df.columns:
        if column in fields.BY_NAME or fields.is_custom(column):
            continue
        match = lower.get(str(column).lower().replace(" ", "")) or next(
            iter(difflib.get_close_matches(str(column), known, n=1, cutoff=0.8)), None)
        if match is None and str(column).lower().startswith("custom") and not fields.is_custom(column):
            match = "custom.<FieldId>"
        if match:
            problems.append(_problem("probable_typo_column", None, str(column), None, WARNING,
                                     message=f"unknown column {column!r}: did you mean {match!r}?"))
    if "PostalCode" in df:
        postal = df["PostalCode"].astype("string").str.strip()
        four = postal.str.fullmatch(r"\d{4}(-\d{4})?").fillna(False).astype(bool)
        if "Country" in df:
            country = df["Country"].astype("string").str.strip().str.lower().fillna("")
            four &= country.isin(US_COUNTRIES)
        for pos in np.flatnonzero(four.to_numpy()):
            problems.append(_problem("postal_code_lost_zero", int(row_numbers[pos]), "PostalCode",
                                     _cell(df, "PostalCode", pos), WARNING))
    if "Email" in df:
        email = df["Email"].astype("string").str.strip()
        folded = email.str.lower()
        present = email.notna()
        both = present & folded.duplicated(keep=False)
        if both.any():
            sub = pd.DataFrame({"raw": email[both], "low": folded[both]})
            variants = sub.groupby("low")["raw"].nunique()
            mixed = set(variants[variants > 1].index)
            for pos in np.flatnonzero((both & folded.isin(mixed)).to_numpy()):
                key = folded.iloc[pos]
                raw = email.iloc[pos]
                others = [int(row_numbers[p]) for p in np.flatnonzero((folded == key).fillna(False).to_numpy())
                          if email.iloc[p] != raw]
                problems.append(_problem("email_case_duplicate", int(row_numbers[pos]), "Email",
                                         _cell(df, "Email", pos), WARNING,
                                         message="the same email as row " + ", ".join(map(str, others))
                                                 + ", differing only in letter case"))
    return problems


def validate_clients(frame: pd.DataFrame, *, row_numbers=None) -> list[Problem]:
    """Every error and warning of a typed clients frame, with spreadsheet row numbers.

    ``row_numbers[i]`` is the spreadsheet row of frame row ``i`` (default ``i + 2``; pass
    ``Table.row_numbers`` for files with blank rows).
    """
    df = frame.reset_index(drop=True)
    rows = np.arange(len(df), dtype=np.int64) + 2 if row_numbers is None else np.asarray(row_numbers)
    problems = _pandera_problems(df, rows) + _table_problems(df, rows) + _warnings(df, rows)
    problems.sort(key=lambda p: (p.row or 0, p.severity != ERROR, p.column or "", p.check))
    return problems


def validate_table(table) -> list[Problem]:
    """A read Table's cell problems plus :func:`validate_clients` of its frame.

    A row whose ClientId cell could not be read is not a new client: the new-client
    checks (names, contact) are not reported for it, only the unreadable ClientId.
    """
    bad_id = {p.row for p in table.problems if p.column == "ClientId" and p.is_error}
    schema = [p for p in validate_clients(table.frame, row_numbers=table.row_numbers)
              if not (p.row in bad_id and p.check.startswith("new_client_"))]
    return sorted(list(table.problems) + schema,
                  key=lambda p: (p.row or 0, p.severity != ERROR, p.column or "", p.check))
