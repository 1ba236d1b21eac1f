"""Benchmark: import planning (`intakeq-etl import FILE --dry-run`) beside a minimal baseline.

Prints figures; not a test. Usage::

    python bench/bench_import.py                    # 100,000 clients, 1% of rows edited
    python bench/bench_import.py --rows 10000
    python bench/bench_import.py --rows 1000000 --repeat 1   # the 1M size (by hand; CI runs the default)
    python bench/bench_import.py --profile prof.out # also run the dry run once under cProfile

A sandbox with its limits off (per_minute=0, per_day=0) is started in this process on
127.0.0.1 and seeded with ``Store.seeded(N)``. Then:

1. the export that the import starts from, made here without HTTP (``--export-via-cli``:
   ``intakeq-etl export --out DIR --quiet`` instead, the slow way): the store's records go
   through the export's own frame builder and its own writing step (``_after_fetch``: the
   CSV, the snapshot that the import uses as its base, the manifest beside the file), as
   if they had been fetched page by page;
2. this script edits ``City`` in 1% of the rows of the exported CSV (every 100th row;
   everything else is left byte for byte as exported);
Each of the steps below is a separate subprocess.

3. baseline, timed: ``pandas.read_csv(dtype=str)`` of the edited file and of the exported
   file, a ``merge`` on ClientId, and a compare of every common column;
4. the CLI, timed: ``intakeq-etl import FILE --dry-run --quiet`` — read + validate + diff +
   the live reads it needs, no write, and the plan with its review files (xlsx, html);
5. the same with ``--no-review`` (its reads kept by step 4 removed first), for what the
   review files cost.

Steps 3 to 5 run ``--repeat`` times (3 by default) in alternating rounds, each dry run
reading afresh (the reads kept by the one before are removed); the report gives each side's
median time, the ratio of medians, and the largest peak.

Wall time is measured from spawn to exit, peak RSS from ``os.wait4`` (that child's own
rusage, started by ``bench_export``'s small launcher: a child forked from this process, which
holds the seeded sandbox, would report at least this process's size). The dry run's reads
are counted in the sandbox's request log.

Targets (issues 5, 14): CLI time ≤ 3 × baseline; peak memory ≤ 500 MB at 100,000 rows and
≤ 3 GB at 1,000,000; reads with a base ≤ min(k, ⌈N/100⌉ + 1) + 2 for k changed rows.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_export import cli_command, run_measured  # noqa: E402  (same measuring as the export bench)

EDIT_EVERY = 100          # 1% of rows
NEW_CITY = "Springfield"  # not a city the seed uses, so every edit is a real change

BASELINE = textwrap.dedent("""
    import sys, pandas as pd
    edited, base = sys.argv[1], sys.argv[2]
    a = pd.read_csv(edited, dtype=str, keep_default_na=False)
    b = pd.read_csv(base, dtype=str, keep_default_na=False)
    m = a.merge(b, on="ClientId", how="left", suffixes=("", "_base"), indicator=True)
    changed = pd.Series(False, index=m.index)
    for col in a.columns:
        if col != "ClientId" and col in b.columns:
            changed |= m[col] != m[col + "_base"]
    print(int(changed.sum()), int((m["_merge"] != "both").sum()))
""")


def edit_rows(source: Path, dest: Path, every: int) -> int:
    """Copy the exported CSV, City of every ``every``-th row set to NEW_CITY; returns k."""
    with open(source, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(1 << 16)
        terminator = "\r\n" if "\r\n" in sample else "\n"
        fh.seek(0)
        reader = csv.reader(fh)
        header = next(reader)
        city = header.index("City")
        k = 0
        with open(dest, "w", newline="", encoding="utf-8-sig") as out:
            writer = csv.writer(out, lineterminator=terminator)
            writer.writerow(header)
            for i, row in enumerate(reader):
                if i % every == 0:
                    row[city] = NEW_CITY
                    k += 1
                writer.writerow(row)
    return k


def export_in_process(store, env: dict, out: Path) -> None:
    """What ``intakeq-etl export --out OUT`` writes (CSV, snapshot, manifest), made from the
    store's records without HTTP: the export's frame builder and writing step, in this process
    (seconds per 100,000 clients instead of minutes of paging through the sandbox)."""
    from etl.config import Settings
    from etl.export.fetch import Fetched, Run
    from etl.export.frames import FrameBuilder
    from etl.export.hooks import ExportHooks
    from etl.export.mode import choose_mode
    from etl.export.options import ExportOptions
    from etl.export.pipeline import _after_fetch
    from etl.sandbox.store import copy_record
    from etl.state.snapshots import SnapshotStore

    class Offline:          # what an export's Run asks of its client
        requests_sent = 0

        def __init__(self, settings):
            self.settings = settings

    settings = Settings.from_env(env)
    opts = ExportOptions(out=out, format="csv")
    run = Run(Offline(settings), clock=store.clock, hooks=ExportHooks())
    snapshots = SnapshotStore(settings)
    started = store.clock.time()
    builder = FrameBuilder(opts.timezone)
    ids = store.sorted_ids()
    for at in range(0, len(ids), 100):          # pages of 100, as the API serves them
        builder.add([copy_record(store.clients[i]) for i in ids[at:at + 100]])
    fetched = Fetched(choose_mode(snapshots, opts, settings, now=started), builder.frame(),
                      builder.labels, None)
    del builder
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    _after_fetch(run, opts, snapshots, started, fetched)


def peak_target_mb(n: int) -> int:
    """Issue 14: the dry run's peak RSS ≤ 500 MB at 100,000 rows, ≤ 3 GB at 1,000,000."""
    return 500 if n <= 100_000 else 3 * 1024


def lookup_seconds(server, ids) -> float:
    """Mean wall time of one per-client look-up against the sandbox, from this process."""
    import requests

    session = requests.Session()
    session.headers["X-Auth-Key"] = server.api_key
    started = time.perf_counter()
    for cid in ids:
        r = session.get(server.base_url + "clients", params={"search": str(cid), "includeProfile": "true"},
                        timeout=120)
        r.raise_for_status()
    session.close()
    return (time.perf_counter() - started) / len(ids)


def profile_dry_run(cmd_env: dict, path: Path, out: Path, top: int = 30) -> None:
    """Run the dry run once more under cProfile and print the hot spots."""
    import pstats

    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "etl", "import", str(path),
           "--dry-run", "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=cmd_env, capture_output=True, text=True)
    print(f"\ncProfile run: exit {proc.returncode}, {time.perf_counter() - started:.1f} s; "
          f"profile in {out}", flush=True)
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", "--rows", dest="clients", type=int, default=100_000,
                        help="clients in the account and rows in the file (CI: the default; 1000000 by hand)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also run the dry run under cProfile, write the stats here and print them")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; each runs the baseline, the dry run and the dry run --no-review in turn; "
                             "medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--export-via-cli", action="store_true",
                        help="set up with a real `intakeq-etl export` over HTTP (slow: minutes at 100,000)")
    args = parser.parse_args(argv)
    n = args.clients

    from etl.sandbox import SandboxServer, Store

    t0 = time.perf_counter()
    store = Store.seeded(n, seed=1)
    server = SandboxServer(store, per_minute=0, per_day=0).start()
    print(f"sandbox: {n:,} clients seeded in {time.perf_counter() - t0:.1f} s at {server.base_url}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("INTAKEQ_")},
               "INTAKEQ_BASE_URL": server.base_url, "INTAKEQ_API_KEY": server.api_key,
               "INTAKEQ_MAX_PER_MINUTE": "100000000", "INTAKEQ_MAX_PER_DAY": "0",
               "INTAKEQ_ETL_STATE_DIR": str(work / "state")}

        export_dir = work / "export"
        if args.export_via_cli:
            wall, peak, code, err = run_measured(cli_command() + ["export", "--out", str(export_dir), "--quiet"],
                                                 env)
            if code != 0:
                print(f"export: exit {code}\n{err}")
                return 1
            print(f"export (setup)           {wall:8.2f} s   peak {peak:8.1f} MB", flush=True)
        else:
            t0 = time.perf_counter()
            export_in_process(store, env, export_dir)
            print(f"export (setup, in this process, no HTTP) {time.perf_counter() - t0:8.2f} s", flush=True)

        exported = export_dir / "clients.csv"
        base_copy = work / "base.csv"
        shutil.copyfile(exported, base_copy)
        k = edit_rows(base_copy, exported, EDIT_EVERY)   # the edited file stays beside its manifest
        print(f"edited City in {k:,} of {n:,} rows", flush=True)

        reads_file = exported.parent / (exported.stem + ".reads.sqlite")
        sides = {
            "baseline": [sys.executable, "-c", BASELINE, str(exported), str(base_copy)],
            "import --dry-run": cli_command() + ["import", str(exported), "--dry-run", "--quiet"],
            "  the same, --no-review": cli_command() + ["import", str(exported), "--dry-run", "--quiet",
                                                         "--no-review"],
        }
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in sides}
        log, err = [], ""
        for i in range(args.repeat):                  # alternate: one noisy moment hits one run of each
            for label, cmd in sides.items():
                reads_file.unlink(missing_ok=True)    # every dry run reads afresh
                server.log.clear()
                wall, peak, code, out = run_measured(cmd, env)
                if code != 0:
                    print(f"{label.strip()}: exit {code}\n{out}")
                    return 1
                if label == "import --dry-run":
                    log, err = list(server.log), out
                runs[label].append((wall, peak))
                print(f"round {i + 1}: {label.strip():<28} {wall:8.2f} s   peak {peak:8.1f} MB", flush=True)
        med = {label: (statistics.median(w for w, _ in r), max(p for _, p in r)) for label, r in runs.items()}
        b_wall, b_peak = med["baseline"]
        i_wall, i_peak = med["import --dry-run"]
        r_wall, r_peak = med["  the same, --no-review"]
        said = [line for line in err.splitlines() if "live" in line.lower() or "base" in line.lower()
                or "look-up" in line]

        reads = [e for e in log if e.method == "GET"]
        writes = [e for e in log if e.method in ("POST", "PUT", "DELETE")]
        target_reads = min(k, math.ceil(n / 100) + 1) + 2
        time_ratio = i_wall / b_wall if b_wall else float("nan")

        print()
        print(f"medians of {args.repeat} alternating runs (peak: the largest)")
        print(f"{'run':<30} {'time s':>8} {'× base':>7} {'peak MB':>9}")
        print(f"{'baseline':<30} {b_wall:8.2f} {1.0:7.2f} {b_peak:9.1f}")
        print(f"{'import --dry-run':<30} {i_wall:8.2f} {time_ratio:7.2f} {i_peak:9.1f}")
        print(f"{'  the same, --no-review':<30} {r_wall:8.2f} {r_wall / b_wall:7.2f} {r_peak:9.1f}   "
              f"(the review files: {i_wall - r_wall:+.2f} s)")
        print(f"memory ratio: {i_peak / b_peak:.2f} × baseline")
        target_mb = peak_target_mb(n)
        print(f"targets: time ≤ 3.00 × baseline -> {'ok' if time_ratio <= 3 else 'MISSED'}; "
              f"peak ≤ {target_mb} MB -> {'ok' if i_peak <= target_mb else 'MISSED'}")
        print(f"reads: {len(reads):,} (target ≤ min(k={k:,}, ⌈N/100⌉+1={math.ceil(n / 100) + 1:,}) + 2 "
              f"= {target_reads:,}) -> {'ok' if len(reads) <= target_reads else 'MISSED'}; writes: {len(writes)}")
        if said:
            print("the dry run said (stderr, lines about base/live):")
            for line in said[-6:]:
                print("   ", line)

        # What the dry run spent waiting on the sandbox: time a few look-ups like its own
        # (GET clients?search=<id>&includeProfile=true; the sandbox scans every client for each).
        per_read = lookup_seconds(server, [i * EDIT_EVERY + EDIT_EVERY // 2 for i in range(20)])
        waits = per_read * len(reads)
        planning = max(i_wall - waits, 0.0)
        print(f"sandbox look-up: {per_read * 1000:.1f} ms each (measured here) -> ~{waits:.1f} s of the dry run "
              f"were API waits; planning without them ≈ {planning:.2f} s = {planning / b_wall:.2f} × baseline")

        if args.profile:
            server.log.clear()
            reads_file.unlink(missing_ok=True)        # profile the reads too
            profile_dry_run(env, exported, args.profile)
    finally:
        server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
