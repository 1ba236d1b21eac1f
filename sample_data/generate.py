"""Write sample_data/account.json: the 300-client synthetic account (no real people).

    python sample_data/generate.py [--clients 300] [--seed 1] [--out sample_data/account.json]

The account comes from ``etl.sandbox.seed.generate_account`` with a fixed "now"
(ANCHOR), so the file is the same on every run. It is in the sandbox's state-file
format: ``intakeq-etl sandbox --state sample_data/account.json`` serves it (careful: the
sandbox writes its changes back to that file; copy it first).
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from etl.sandbox.seed import generate_account

ANCHOR = datetime(2025, 10, 1, tzinfo=timezone.utc).timestamp()  # dates spread over 2 years before
HERE = Path(__file__).resolve().parent


def build(clients: int = 300, seed: int = 1) -> dict:
    doc = generate_account(clients, seed, now=ANCHOR)
    doc["generator"] = {"script": "sample_data/generate.py", "clients": clients, "seed": seed, "now": ANCHOR}
    return doc


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "account.json")
    args = parser.parse_args(argv)
    doc = build(args.clients, args.seed)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(doc['clients'])} clients, seed {args.seed})")


if __name__ == "__main__":
    main()
