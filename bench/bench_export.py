"""Benchmark: `intakeq-etl export` of a large sandbox account, beside a minimal baseline.

Prints figures; not a test. Usage::

    python bench/bench_export.py                 # 100,000 clients, csv and parquet
    python bench/bench_export.py --clients 20000 --formats csv

A sandbox with its limits off (per_minute=0, per_day=0) is started in this process on
127.0.0.1. Each measured run is a separate subprocess, timed from spawn to exit, its peak
RSS read from ``os.wait4`` (that child's own rusage):

* baseline: a minimal loop of ``requests`` over the pages → ``pandas.json_normalize`` →
  ``to_csv`` (what a one-off script would do; no ledger, no types, no snapshot);
* the CLI, exactly as a user runs it: ``intakeq-etl export --out DIR --format F --quiet``
  with INTAKEQ_BASE_URL/KEY, INTAKEQ_MAX_PER_MINUTE=100000000, INTAKEQ_MAX_PER_DAY=0 and a
  fresh temporary INTAKEQ_ETL_STATE_DIR (start-up, ledger, validation and snapshot
  included).

Targets (issue "Export"): CLI time ≤ 1.5 × baseline, peak memory ≤ 1 GB.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE = textwrap.dedent("""
    import sys, requests, pandas as pd
    base, key, out = sys.argv[1], sys.argv[2], sys.argv[3]
    s = requests.Session(); s.headers["X-Auth-Key"] = key
    records, page = [], 1
    while True:
        r = s.get(base + "clients", params={"includeProfile": "true", "page": page}, timeout=120)
        r.raise_for_status()
        batch = r.json(); records.extend(batch)
        if len(batch) < 100:
            break
        page += 1
    pd.json_normalize(records).to_csv(out, index=False)
    print(len(records))
""")


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MB, exit code, stderr tail) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read pipes while waiting: os.wait4 gives this child's own rusage
    out_chunks, err_chunks = [], []
    import threading

    def drain(stream, sink):
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.append(chunk)

    threads = [threading.Thread(target=drain, args=(proc.stdout, out_chunks)),
               threading.Thread(target=drain, args=(proc.stderr, err_chunks))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    err = b"".join(err_chunks).decode(errors="replace")[-800:]
    return wall, peak_mb, proc.returncode, err


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "intakeq-etl"
    if script.exists():
        return [str(script)]
    found = shutil.which("intakeq-etl")
    return [found] if found else [sys.executable, "-m", "etl"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is kept")
    args = parser.parse_args(argv)

    from etl.sandbox import SandboxServer, Store

    t0 = time.perf_counter()
    store = Store.seeded(args.clients, seed=1)
    server = SandboxServer(store, per_minute=0, per_day=0).start()
    print(f"sandbox: {args.clients:,} clients seeded in {time.perf_counter() - t0:.1f} s "
          f"at {server.base_url}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    results = []
    try:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKEQ_")}

        def best(label, make_cmd, make_env):
            runs = []
            for i in range(args.repeat):
                cmd, env = make_cmd(i), make_env(i)
                wall, peak, code, err = run_measured(cmd, env)
                if code != 0:
                    print(f"{label}: exit {code}\n{err}", flush=True)
                    raise SystemExit(1)
                runs.append((wall, peak))
            wall = min(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            results.append((label, wall, peak))
            print(f"{label:<22} {wall:8.2f} s   peak {peak:8.1f} MB", flush=True)
            return wall, peak

        base_wall, _ = best(
            "baseline (csv)",
            lambda i: [sys.executable, "-c", BASELINE, server.base_url, server.api_key,
                       str(work / f"baseline-{i}.csv")],
            lambda i: base_env)

        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            def env_for(i, fmt=fmt):
                state = work / f"state-{fmt}-{i}"
                return {**base_env, "INTAKEQ_BASE_URL": server.base_url,
                        "INTAKEQ_API_KEY": server.api_key,
                        "INTAKEQ_MAX_PER_MINUTE": "100000000", "INTAKEQ_MAX_PER_DAY": "0",
                        "INTAKEQ_ETL_STATE_DIR": str(state)}

            best(f"intakeq-etl ({fmt})",
                 lambda i, fmt=fmt: cli_command() + ["export", "--out", str(work / f"out-{fmt}-{i}"),
                                                     "--format", fmt, "--quiet"],
                 env_for)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'run':<22} {'time':>8}   {'× baseline':>10}   {'peak MB':>8}   targets: ≤ 1.5×, ≤ 1024 MB")
    for label, wall, peak in results:
        ratio = wall / base_wall if base_wall else float("nan")
        flag = "" if label.startswith("baseline") else (
            "  ok" if ratio <= 1.5 and peak <= 1024 else "  MISSED")
        print(f"{label:<22} {wall:8.2f}   {ratio:10.2f}   {peak:8.1f}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
