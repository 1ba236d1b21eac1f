"""The synthetic account generator: deterministic, no real people.

``generate_account(n_clients, seed, now)`` returns the sandbox state document (the format
of the state file and of ``sample_data/account.json``). The same ``(n, seed, now)`` always
gives the same account; dates (created, updated, deleted) are spread over the two years
before ``now``. Names are combinations of common first and last names; emails use the
reserved ``example.com``/``example.org`` domains; phones use the fictional 555-01xx range.

The account carries what an export/import must survive: unicode (José, Zoë), commas,
quotes, a newline in AdditionalInformation, PostalCodes with leading zeros, formula-like
values (``=HYPERLINK("x")``, ``+1 555``, ``-dash``, ``@at``), phones in several formats,
dates of birth stored at 04:48:00.368 UTC or 05:00 UTC (not midnight) for some, awkward
tags (``a;b``, ``back\\slash``, unicode), linked clients, ~half with diagnoses, nulls
everywhere. Clients 1..10 each carry one of these on purpose, so even a 20-client
account has them all.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone

from .records import blank_profile, ms

FORMAT = "intakeq-sandbox/1"
DAY = 86_400.0

CUSTOM_FIELDS = [
    {"FieldId": "sotc", "Text": "Emergency Contact Name"},
    {"FieldId": "EmergencyContactPhone", "Text": "Emergency Contact Phone"},
    {"FieldId": "ReferralSource", "Text": "Referral Source"},
    {"FieldId": "FirstVisitDate", "Text": "First Visit Date"},
]

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
         "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
         "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Lisa", "Matthew", "Nancy",
         "Anthony", "Margaret", "Mark", "Sandra", "José", "Zoë", "Renée", "François", "Ana",
         "Chloé", "Łukasz", "Mei", "Aarav", "Fatima", "Noah", "Olivia", "Liam", "Emma",
         "Ava", "Sophia", "Lucas", "Mia", "Ethan", "Amelia", "paul", "Jo"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
        "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
        "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
        "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "O'Brien", "Núñez", "van der Berg",
        "Müller", "Smith-Jones", "D'Angelo", "Nguyen", "Kim", "Patel", "Paulson", "Zhang"]
ASCII = str.maketrans({"é": "e", "ë": "e", "ç": "c", "Ł": "L", "ú": "u", "ñ": "n",
                       "ü": "u", "'": "", " ": ""})
STREETS = ["Main", "Oak", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Pine"]
PLACES = [  # (City, StateShort, State, PostalCode, TimezoneId)
    ("Boston", "MA", "Massachusetts", "02134", "Eastern Standard Time"),
    ("Hoboken", "NJ", "New Jersey", "07030", "Eastern Standard Time"),
    ("Providence", "RI", "Rhode Island", "02903", "Eastern Standard Time"),
    ("Richmond", "va", "Virginia", "23220", "Eastern Standard Time"),
    ("Austin", "TX", "Texas", "78701", "Central Standard Time"),
    ("Chicago", "IL", "Illinois", "60614", "Central Standard Time"),
    ("Denver", "CO", "Colorado", "80202", "Mountain Standard Time"),
    ("Portland", "OR", "Oregon", "97205", "Pacific Standard Time"),
    ("San José", "CA", "California", "95112", "Pacific Standard Time"),
    ("Burlington", "VT", "Vermont", "05401", "Eastern Standard Time"),
]
PHONE_FORMATS = ["({a}) 555-01{b}", "{a}-555-01{b}", "{a}55501{b}", "1 {a} 555 01{b}",
                 "{a}.555.01{b}", "1{a}55501{b}"]
AREA = ["617", "201", "401", "804", "512", "312", "303", "503", "408", "802"]
TAGS = ["VIP", "New", "Insurance", "Waitlist", "Telehealth", "a;b", "back\\slash",
        "café ☕", "Sliding, Scale", 'say "hi"', "Ünïcödé"]
REFERRALS = ["Google", "Friend, family", "Psychology Today", "Doctor referral",
             '=HYPERLINK("x")', "-dash", "@at", "Instagram"]
INFO = ["Prefers mornings.\nCall before 5pm.", 'Says "hi", often', "Allergic to latex",
        "Needs wheelchair access, ramp", "=1+1", "Spanish-speaking; interpreter", "Zoë's notes"]
DIAGNOSES = [("F41.1", "Generalized anxiety disorder"),
             ("F32.9", "Major depressive disorder, single episode, unspecified"),
             ("F43.10", "Post-traumatic stress disorder, unspecified"),
             ("F90.0", "Attention-deficit hyperactivity disorder, predominantly inattentive type"),
             ("F10.20", "Alcohol dependence, uncomplicated"),
             ("Z63.0", "Problems in relationship with spouse or partner")]
GENDERS = ["Female", "Male", "Non-binary", None]
MARITAL = ["Single", "Married", "Divorced", "Widowed", None]
ACTIVITIES = ["Created Appt", "Intake Submitted", "Note Signed", "Invoice Paid", "Client Created"]
PRACTITIONERS = ["5f1a2b3c4d5e6f7a8b9c0d1e", "60aa0b0c0d0e0f1011121314", None]
PAYERS = [("Aetna", "60054"), ("Blue Cross Blue Shield", "00590"), ("Cigna", "62308"),
          ("UnitedHealthcare", "87726")]
# DateOfBirth offsets from midnight UTC, in seconds: mostly midnight, some not.
DOB_OFFSETS = [0.0, 0.0, 0.0, 4 * 3600 + 48 * 60 + 0.368, 5 * 3600.0]


def _pick(rng: random.Random, seq):
    """rng.choice, faster (one random() call): 100,000 clients build in a few seconds."""
    return seq[int(rng.random() * len(seq))]


def _below(rng: random.Random, start: int, stop: int | None = None) -> int:
    if stop is None:
        start, stop = 0, start
    return start + int(rng.random() * (stop - start))


def _phone(rng: random.Random) -> str:
    return _pick(rng, PHONE_FORMATS).format(a=_pick(rng, AREA), b=f"{_below(rng, 100):02d}")


def _dob(rng: random.Random, young=False) -> float:
    days = _below(rng, -10_000 if not young else 10_000, 16_500)  # 1942 .. 2015
    return ms(days * DAY + _pick(rng, DOB_OFFSETS))


def _uuid(rng: random.Random) -> str:
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _date_str(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


def make_client(rng: random.Random, client_id: int, now: float) -> dict:
    r = blank_profile(client_id, CUSTOM_FIELDS)
    first, last = _pick(rng, FIRST), _pick(rng, LAST)
    r["FirstName"], r["LastName"] = first, last
    r["Name"] = f"{first} {last}"
    if rng.random() < 0.15:
        r["MiddleName"] = _pick(rng, ["A.", "Marie", "Lee", "J"])
    if rng.random() < 0.9:
        user = f"{first}.{last}".translate(ASCII).lower()
        if rng.random() < 0.1:
            user = user.upper()
        r["Email"] = f"{user}{client_id}@{_pick(rng, ['example.com', 'example.org'])}"
    if rng.random() < 0.85:
        r["Phone"] = _phone(rng)
        r["MobilePhone"] = r["Phone"] if rng.random() < 0.7 else _phone(rng)
    if rng.random() < 0.2:
        r["HomePhone"] = _phone(rng)
    if rng.random() < 0.1:
        r["WorkPhone"] = _phone(rng)
    if rng.random() < 0.8:
        r["DateOfBirth"] = _dob(rng)
    r["Gender"] = _pick(rng, GENDERS)
    r["MaritalStatus"] = _pick(rng, MARITAL)
    r["Archived"] = rng.random() < 0.1
    if rng.random() < 0.75:
        city, short, state, postal, tz = _pick(rng, PLACES)
        street = f"{_below(rng, 1, 999)} {_pick(rng, STREETS)} St"
        r.update(StreetAddress=street, City=city, StateShort=short, State=state,
                 PostalCode=postal, Country="USA", TimezoneId=tz)
        if rng.random() < 0.5:
            r["Address"] = f"{street}, {city}, {short} {postal}, USA"
        if rng.random() < 0.15:
            r["UnitNumber"] = _pick(rng, ["2B", "Apt 4", "#12", "-dash"])
    elif rng.random() < 0.5:
        r["TimezoneId"] = "Eastern Standard Time"
    if rng.random() < 0.2:
        r["AdditionalInformation"] = _pick(rng, INFO)
    billing = _below(rng, 3)
    r["BillingType"] = billing
    if billing == 2:
        company, payer = _pick(rng, PAYERS)
        r.update(PrimaryInsuranceCompany=company, PrimaryInsurancePayerId=payer,
                 PrimaryInsurancePolicyNumber=f"{_below(rng, 10**9):09d}",
                 PrimaryInsuranceGroupNumber=_pick(rng, [f"G{_below(rng, 10**5):05d}", None]),
                 PrimaryInsuranceHolderName=r["Name"], PrimaryInsuranceRelationship="Self",
                 PrimaryRelationshipToInsured="Self", PrimaryInsurancePlan=_pick(rng, ["PPO", "HMO", None]),
                 PrimaryInsuredGender=r["Gender"], PrimaryInsuranceHolderDateOfBirth=r["DateOfBirth"],
                 PrimaryInsuredCity=r["City"], PrimaryInsuredZipCode=r["PostalCode"],
                 PrimaryInsuredState=r["StateShort"], PrimaryInsuredStreetAddress=r["StreetAddress"])
        if rng.random() < 0.2:
            company2, payer2 = _pick(rng, PAYERS)
            holder = f"{_pick(rng, FIRST)} {last}"
            r.update(SecondaryInsuranceCompany=company2, SecondaryInsurancePayerId=payer2,
                     SecondaryInsurancePolicyNumber=f"{_below(rng, 10**9):09d}",
                     SecondaryInsuranceHolderName=holder, SecondaryInsuranceRelationship="Spouse",
                     SecondaryRelationshipToInsured="Spouse",
                     SecondaryInsuranceHolderDateOfBirth=_dob(rng))
    r["PractitionerId"] = _pick(rng, PRACTITIONERS)
    if rng.random() < 0.3:
        r["ExternalClientId"] = f"EXT-{client_id:05d}"
    if rng.random() < 0.2:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
        r["StripeCustomerId"] = "cus_" + "".join(rng.choices(alphabet, k=14))
    if rng.random() < 0.05:
        r["SquareCustomerId"] = "SQ" + str(_below(rng, 10**10))
    if rng.random() < 0.1:
        r["CreditBalance"] = _pick(rng, [25.5, 100.0, -40.0, 0.01])
    created = now - rng.uniform(1, 730) * DAY
    updated = rng.uniform(created, now)
    r["DateCreated"], r["LastUpdateDate"] = ms(created), ms(updated)
    if rng.random() < 0.8:
        r["LastActivityDate"] = ms(rng.uniform(created, now))
        r["LastActivityName"] = _pick(rng, ACTIVITIES)
    r["Guid"] = _uuid(rng)
    r["Tags"] = rng.sample(TAGS, _pick(rng, [0, 0, 1, 1, 2, 3]))
    cf = r["CustomFields"]
    if rng.random() < 0.6:
        cf[0]["Value"] = f"{_pick(rng, FIRST)} {_pick(rng, LAST)}"
        cf[1]["Value"] = _phone(rng) if rng.random() < 0.9 else "+1 555"
    if rng.random() < 0.5:
        cf[2]["Value"] = _pick(rng, REFERRALS)
    if rng.random() < 0.5:
        cf[3]["Value"] = _date_str(created + rng.uniform(0, 30) * DAY)
    return r


def _showcase(clients: list[dict], now: float) -> None:
    """Put each awkward value on a known client, so small accounts have them all."""
    def on(i, **values):
        if i <= len(clients):
            clients[i - 1].update(values)

    on(1, PostalCode="02134", City="Boston", StateShort="MA", Country="USA")
    on(2, AdditionalInformation="Prefers mornings.\nCall before 5pm, \"not\" Fridays")
    on(3, Tags=["a;b", "back\\slash", "VIP", "café ☕"])
    if len(clients) >= 4:
        clients[3]["CustomFields"][2]["Value"] = '=HYPERLINK("x")'
        clients[3]["CustomFields"][1]["Value"] = "+1 555"
        clients[3]["UnitNumber"] = "-dash"
        clients[3]["AdditionalInformation"] = "@at"
    on(5, FirstName="José", Name=f"José {clients[4]['LastName']}" if len(clients) >= 5 else None)
    on(6, FirstName="Zoë", Name=f"Zoë {clients[5]['LastName']}" if len(clients) >= 6 else None,
       DateOfBirth=ms(7_200 * DAY + 4 * 3600 + 48 * 60 + 0.368))
    on(7, Phone="(617) 555-0100", MobilePhone=None, HomePhone="617.555.0101", Email=None)
    on(8, Archived=True, BillingType=2, MiddleName=None, Gender=None, MaritalStatus=None)
    if len(clients) >= 9:
        for item in clients[8]["CustomFields"]:
            item["Value"] = None
    on(10, StateShort="va", ExternalClientId="EXT-00010", Address=None)


def _link(clients: list[dict], rng: random.Random) -> None:
    n = len(clients)
    pairs = [(1, 2, 1, 2), (3, 4)] if n >= 4 else []
    for _ in range(max(0, n // 20)):
        a, b = _below(rng, 1, n + 1), _below(rng, 1, n + 1)
        if a != b:
            pairs.append((a, b))
    for pair in pairs:
        a, b = pair[0], pair[1]
        if len(pair) == 4:
            rel_ab, rel_ba = pair[2], pair[3]
        else:
            rel_ab, rel_ba = _pick(rng, [(3, 3), (1, 2), (4, 4), (6, 6), (5, 5)])
        ca, cb = clients[a - 1], clients[b - 1]
        if any(link["ClientNumber"] == b for link in ca["LinkedClients"]):
            continue
        ca["LinkedClients"].append({"ClientNumber": b, "RelationshipType": rel_ab})
        cb["LinkedClients"].append({"ClientNumber": a, "RelationshipType": rel_ba})
        if rel_ab == 1:  # a is b's parent
            cb["ParentClientId"] = a


def _diagnoses(rng: random.Random, created: float, now: float) -> list[dict]:
    out = []
    for code, description in rng.sample(DIAGNOSES, _pick(rng, [1, 1, 2, 3])):
        start = rng.uniform(created / 1000, now)
        day = datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m-%dT23:00:00Z")
        end = None
        if rng.random() < 0.3:
            end = datetime.fromtimestamp(rng.uniform(start, now), tz=timezone.utc).strftime("%Y-%m-%dT23:00:00Z")
        out.append({"Code": code, "Description": description, "Date": day, "EndDate": end,
                    "NoteId": _uuid(rng)})
    return out


def generate_account(n_clients: int, seed: int = 1, now: float | None = None) -> dict:
    """The state document of a synthetic account of ``n_clients`` live clients, ids 1..n."""
    import time

    now = float(round(time.time() if now is None else now, 3))
    rng = random.Random(seed)
    clients = [make_client(rng, i, now) for i in range(1, n_clients + 1)]
    _showcase(clients, now)
    _link(clients, rng)
    diagnoses = {}
    for r in clients:
        if rng.random() < 0.5:
            diagnoses[str(r["ClientId"])] = _diagnoses(rng, r["DateCreated"], now)
    return {"format": FORMAT, "custom_fields": [dict(f) for f in CUSTOM_FIELDS],
            "clients": clients, "deleted": [], "diagnoses": diagnoses, "next_id": n_clients + 1}
