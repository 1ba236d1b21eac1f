"""Benchmark: read + validate a generated clients CSV, beside a plain pandas.read_csv(dtype=str).

    python bench/bench_validate.py [--rows 100000] [--repeat 3] [--source export|synthetic]
    python bench/bench_validate.py --rows 1000000 --repeat 1

Prints figures; it is not a test. The file (by default the sandbox account's profiles, as
an export of it holds them: 71 columns, custom fields, tags) is written by the codec
itself to bench/out/. Each measurement runs in a fresh subprocess so
peak memory (ru_maxrss) is its own; time is the best of --repeat runs.
Targets (issues 3, 14): read + validate <= 4x the baseline time and <= 3 s for 100,000 rows;
peak RSS <= 2 GB for 1,000,000 rows.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FIRST = ["Ana", "Bo", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Iker", "Jo", "Zoë"]
LAST = ["O'Neil", "Smith", "Nguyen", "García", "Müller", "Kowalski", "Lee", "Doe, Jr."]
TAGS = ["new", "vip", "insurance; pending", "waitlist", "=risky", "back\\slash", "follow-up"]


def synthetic_records(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    base = 1_700_000_000_000.0
    recs = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        recs.append({
            "ClientId": i + 1, "Name": f"{first} {last}", "FirstName": first, "LastName": last,
            "MiddleName": None, "Email": f"user{i}@example.org", "Phone": f"+1555{i:07d}",
            "DateOfBirth": float(rng.randint(-1_500_000_000_000, 1_100_000_000_000)),
            "Gender": rng.choice(["Female", "Male", None]), "MaritalStatus": rng.choice(["Single", "Married", None]),
            "Tags": rng.sample(TAGS, rng.randint(0, 3)), "Archived": rng.random() < 0.1,
            "HomePhone": None, "WorkPhone": None, "MobilePhone": f"555{i:07d}",
            "Address": f"{i} Main St, Springfield, MA 0{rng.randint(1000, 9999)}, USA", "UnitNumber": None,
            "StreetAddress": f"{i} Main St", "City": "Springfield", "StateShort": "MA", "Country": "USA",
            "PostalCode": f"0{rng.randint(1000, 9999)}",
            "AdditionalInformation": "notes, with \"quotes\"\nand a newline",
            "BillingType": rng.choice([0, 1, 2]), "PractitionerId": "abc123", "ExternalClientId": f"{i:06d}",
            "PrimaryInsuranceCompany": "Acme", "PrimaryInsurancePolicyNumber": f"P{i}",
            "PrimaryInsuranceGroupNumber": None, "PrimaryInsuranceHolderName": None,
            "PrimaryInsuranceRelationship": None, "PrimaryInsuranceHolderDateOfBirth": None,
            "DateCreated": base + i * 1000.5, "LastUpdateDate": base + i * 2000.0, "LastActivityDate": None,
            "ClientNumber": str(i + 1), "CreditBalance": 0.0, "LastActivityName": "Created Appt",
            "ParentClientId": None,
            "LinkedClients": [{"ClientNumber": i + 2, "RelationshipType": 3}] if i % 7 == 0 else [],
            "Guid": f"00000000-0000-0000-0000-{i:012d}", "State": "MA", "TimezoneId": "America/New_York",
            "CustomFields": [
                {"FieldId": "sotc", "Text": "Source", "Value": rng.choice(["web", "referral", None])},
                {"FieldId": "EmergencyContactName", "Text": "Emergency contact",
                 "Value": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},
                {"FieldId": "abcd", "Text": "First visit", "Value": "2017-03-15"},
                {"FieldId": "x9", "Text": "Notes", "Value": None},
            ],
        })
    return recs


def export_records(n: int) -> list[dict]:
    """The profiles of the sandbox's synthetic account (``Store.seeded(n)``): what a real
    export of it holds, with every column IntakeQ sends (71 with the custom fields)."""
    from etl.sandbox import Store

    return [record for _, record in sorted(Store.seeded(n, seed=1).clients.items())]


def _status_mb(key: str) -> float:
    """VmHWM (peak) / VmRSS of this process in MB, from /proc (ru_maxrss survives exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, path: str) -> dict:
    import pandas  # noqa: F401  (imports are not part of the measured time or memory)
    import pyarrow  # noqa: F401

    if mode != "baseline":
        import etl.codec  # noqa: F401
        import etl.schemas.clients  # noqa: F401
    start_rss = _status_mb("VmRSS")
    if mode == "baseline":
        import pandas as pd

        t0 = time.perf_counter()
        df = pd.read_csv(path, dtype=str)
        seconds = time.perf_counter() - t0
        rows, errors = len(df), 0
    else:
        from etl.codec import read_table
        from etl.schemas.clients import validate_table

        t0 = time.perf_counter()
        table = read_table(path)
        t1 = time.perf_counter()
        problems = validate_table(table)
        seconds = time.perf_counter() - t0
        rows, errors = len(table.frame), sum(p.severity == "error" for p in problems)
        return {"seconds": seconds, "read_seconds": t1 - t0, "validate_seconds": seconds - (t1 - t0),
                "peak_mb": _status_mb("VmHWM"), "start_mb": start_rss, "rows": rows, "errors": errors}
    return {"seconds": seconds, "peak_mb": _status_mb("VmHWM"), "start_mb": start_rss,
            "rows": rows, "errors": errors}


def run(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", mode, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", choices=("export", "synthetic"), default="export",
                    help="export: the sandbox account's profiles, as an export writes them (71 columns); "
                         "synthetic: the small generator above (45 columns)")
    ap.add_argument("--measure", nargs=2, metavar=("MODE", "PATH"))
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    from etl.codec import clients_to_frame, write_table

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"clients-{args.source}-{args.rows}.csv"
    t0 = time.perf_counter()
    frame = clients_to_frame(export_records(args.rows) if args.source == "export" else synthetic_records(args.rows))
    t1 = time.perf_counter()
    write_table(frame, path)
    t2 = time.perf_counter()
    print(f"generated {args.rows:,} clients x {len(frame.columns)} columns: "
          f"records->frame {t1 - t0:.2f} s, frame->CSV {t2 - t1:.2f} s, {path.stat().st_size / 1e6:.1f} MB")
    base = min((run("baseline", path) for _ in range(args.repeat)), key=lambda r: r["seconds"])
    ours = min((run("validate", path) for _ in range(args.repeat)), key=lambda r: r["seconds"])
    print(f"baseline pandas.read_csv(dtype=str): {base['seconds']:.2f} s, peak RSS {base['peak_mb']:.0f} MB "
          f"(after imports {base['start_mb']:.0f} MB)")
    print(f"read_table + validate_table:         {ours['seconds']:.2f} s "
          f"(read {ours['read_seconds']:.2f} s, validate {ours['validate_seconds']:.2f} s), "
          f"peak RSS {ours['peak_mb']:.0f} MB (after imports {ours['start_mb']:.0f} MB), errors {ours['errors']}")
    ratio = ours["seconds"] / base["seconds"]
    mem = (ours["peak_mb"] - ours["start_mb"]) / max(base["peak_mb"] - base["start_mb"], 1)
    print(f"time ratio {ratio:.2f}x (target <= 4x), absolute {ours['seconds']:.2f} s (target <= 3 s at 100k); "
          f"memory growth ratio {mem:.2f}x; peak {ours['peak_mb']:.0f} MB"
          + (f" (target <= 2048 MB at 1M: {'ok' if ours['peak_mb'] <= 2048 else 'MISSED'})" if args.rows >= 1_000_000
             else ""))


if __name__ == "__main__":
    main()
