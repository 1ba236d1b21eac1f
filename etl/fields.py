"""The one registry of client fields: API name, kind, and whether a file may change it.

Everything that needs to know about a column asks here: the codec (how a kind is
written in CSV/Parquet/XLSX), the schemas (dtype and checks), the diff (what may be
sent on a save), the sandbox (which fields a save replaces).

Rules
-----
* **writable** fields are the ones the API's "Save Client" body documents (plus
  ``BillingType``, a profile field the API returns): an admin's edit of such a column is
  sent on save. ``Tags`` are changed through the tag endpoints only.
* **read-only** fields are computed by IntakeQ or not documented as accepted on save:
  edits to them are reported as ignored and never sent. A save still echoes the live
  value of every field (the API replaces the whole client).
* Fields the API returns that nobody registered (new undocumented ones) are kept as
  read-only text columns: nothing the API sends is dropped.
* Custom fields are columns named ``custom.<FieldId>``; they are writable text. Their
  labels travel in the export's manifest.

Kinds and their in-memory (DataFrame) dtype
-------------------------------------------
========  ======================  ===============================================
kind      dtype                   API value
========  ======================  ===============================================
int       Int64                   integer (ClientId, ParentClientId)
enum      Int64                   integer code (BillingType: 0 Unknown, 1 SelfPay, 2 Insurance)
float     Float64                 number (CreditBalance)
bool      boolean                 true/false (Archived)
text      string                  string; "" and null are both "empty" (NA)
date      string "yyyy-MM-dd"     Unix ms; the calendar date in the practice's timezone
instant   datetime64[ns, UTC]     Unix ms (DateCreated, LastUpdateDate, ...)
tags      object (list of str)    list of strings; never NA, possibly []
linked    string                  LinkedClients list, shown as "123:Parent; 211:Spouse"
========  ======================  ===============================================
"""
from __future__ import annotations

from dataclasses import dataclass

CUSTOM_PREFIX = "custom."

# Text is Arrow-backed on every supported pandas (pandas 2's plain "string" holds one Python
# object per cell: about 4× the memory of the Arrow buffers the readers already have).
TEXT_DTYPE = "string[pyarrow]"

KIND_DTYPES = {
    "int": "Int64",
    "enum": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "text": TEXT_DTYPE,
    "date": TEXT_DTYPE,
    "instant": "datetime64[ns, UTC]",
    "tags": "object",
    "linked": TEXT_DTYPE,
}

BILLING_TYPES = {0: "Unknown", 1: "SelfPay", 2: "Insurance"}
RELATIONSHIP_TYPES = {0: "None", 1: "Parent", 2: "Child", 3: "Spouse", 4: "Sibling",
                      5: "Other", 6: "Partner"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    writable: bool
    documented: bool = True
    phone: bool = False

    @property
    def dtype(self) -> str:
        return KIND_DTYPES[self.kind]


def _f(name, kind="text", writable=True, **kw) -> Field:
    return Field(name, kind, writable, **kw)


# In export column order. ClientId is the key: never "changed", always identifies.
FIELDS: tuple[Field, ...] = (
    _f("ClientId", "int", writable=False),
    _f("Name"),
    _f("FirstName"),
    _f("LastName"),
    _f("MiddleName"),
    _f("Email"),
    _f("Phone", phone=True),
    _f("DateOfBirth", "date"),
    _f("Gender"),
    _f("MaritalStatus"),
    _f("Tags", "tags", writable=False),  # changed through the tag endpoints only
    _f("Archived", "bool"),
    _f("HomePhone", phone=True),
    _f("WorkPhone", phone=True),
    _f("MobilePhone", phone=True),
    _f("Address"),
    _f("UnitNumber"),
    _f("StreetAddress"),
    _f("City"),
    _f("StateShort"),
    _f("Country"),
    _f("PostalCode"),
    _f("AdditionalInformation"),
    _f("BillingType", "enum"),
    _f("PractitionerId"),
    _f("ExternalClientId"),
    _f("PrimaryInsuranceCompany"),
    _f("PrimaryInsurancePolicyNumber"),
    _f("PrimaryInsuranceGroupNumber"),
    _f("PrimaryInsuranceHolderName"),
    _f("PrimaryInsuranceRelationship"),
    _f("PrimaryInsuranceHolderDateOfBirth", "date"),
    _f("SecondaryInsuranceCompany"),
    _f("SecondaryInsurancePolicyNumber"),
    _f("SecondaryInsuranceGroupNumber"),
    _f("SecondaryInsuranceHolderName"),
    _f("SecondaryInsuranceRelationship"),
    _f("SecondaryInsuranceHolderDateOfBirth", "date"),
    _f("StripeCustomerId"),
    _f("SquareCustomerId"),
    # Read-only: computed by IntakeQ.
    _f("ClientNumber", "text", writable=False),
    _f("DateCreated", "instant", writable=False),
    _f("LastUpdateDate", "instant", writable=False),
    _f("LastActivityDate", "instant", writable=False),
    _f("LastActivityName", writable=False),
    _f("CreditBalance", "float", writable=False),
    _f("ParentClientId", "int", writable=False),
    _f("LinkedClients", "linked", writable=False),
    # Seen in real traffic, not in the doc: kept, never sent from a file.
    _f("Guid", writable=False, documented=False),
    _f("State", writable=False, documented=False),
    _f("TimezoneId", writable=False, documented=False),
    _f("PrimaryInsurancePayerId", writable=False, documented=False),
    _f("PrimaryRelationshipToInsured", writable=False, documented=False),
    _f("PrimaryInsurancePlan", writable=False, documented=False),
    _f("PrimaryInsuredGender", writable=False, documented=False),
    _f("PrimaryInsuredCity", writable=False, documented=False),
    _f("PrimaryInsuredZipCode", writable=False, documented=False),
    _f("PrimaryInsuredState", writable=False, documented=False),
    _f("PrimaryInsuredStreetAddress", writable=False, documented=False),
    _f("SecondaryInsurancePayerId", writable=False, documented=False),
    _f("SecondaryRelationshipToInsured", writable=False, documented=False),
    _f("SecondaryInsurancePlan", writable=False, documented=False),
    _f("SecondaryInsuredGender", writable=False, documented=False),
    _f("SecondaryInsuredCity", writable=False, documented=False),
    _f("SecondaryInsuredZipCode", writable=False, documented=False),
    _f("SecondaryInsuredState", writable=False, documented=False),
    _f("SecondaryInsuredStreetAddress", writable=False, documented=False),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
KNOWN_NAMES: tuple[str, ...] = tuple(BY_NAME)
WRITABLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.writable)
READ_ONLY: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.writable)
PHONE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.phone)
DATE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "date")
INSTANT_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "instant")
# Not columns of their own: CustomFields becomes custom.<FieldId> columns.
STRUCTURED_API_KEYS = ("CustomFields",)

DIAGNOSIS_COLUMNS = ("ClientId", "Code", "Description", "Date", "EndDate", "NoteId")


def is_custom(column: str) -> bool:
    return column.startswith(CUSTOM_PREFIX)


def custom_column(field_id: str) -> str:
    return CUSTOM_PREFIX + str(field_id)


def custom_field_id(column: str) -> str:
    return column[len(CUSTOM_PREFIX):]


def field_for(column: str) -> Field:
    """The Field of any column: registered, custom (writable text) or unknown (read-only text)."""
    found = BY_NAME.get(column)
    if found is not None:
        return found
    if is_custom(column):
        return Field(column, "text", writable=True, documented=False)
    return Field(column, "text", writable=False, documented=False)


def kind_of(column: str) -> str:
    return field_for(column).kind


def is_writable(column: str) -> bool:
    return field_for(column).writable


def order_columns(columns) -> list[str]:
    """Registry order first, then unknown API fields (sorted), then custom fields (sorted)."""
    cols = list(dict.fromkeys(columns))
    known = [c for c in KNOWN_NAMES if c in cols]
    unknown = sorted(c for c in cols if c not in BY_NAME and not is_custom(c))
    custom = sorted(c for c in cols if is_custom(c))
    return known + unknown + custom


def server_phone(value: str | None) -> str | None:
    """A phone as IntakeQ stores it: a leading '+' is dropped ("+1844..." -> "1844...")."""
    if value is None:
        return None
    value = value.strip()
    return value[1:] if value.startswith("+") else value

# Kinds of the diagnoses table (export only, read-only). The API sends Date/EndDate as
# ISO 8601 text ("2021-12-08T23:00:00Z"); they are kept as instants so nothing is lost.
DIAGNOSIS_KINDS: dict[str, str] = {
    "ClientId": "int",
    "Code": "text",
    "Description": "text",
    "Date": "instant",
    "EndDate": "instant",
    "NoteId": "text",
}
