"""Benchmark: `intakeq-etl export` of a large sandbox account, beside a minimal baseline.

Prints figures; not a test. Usage::

    python bench/bench_export.py                 # 100,000 clients, csv and parquet, 3 rounds
    python bench/bench_export.py --rows 20000 --formats csv --repeat 1

The sandbox (``intakeq-etl sandbox``, limits off) runs in its own process on 127.0.0.1,
so its serving is not charged to this process. Each measured run is a separate
subprocess, timed from spawn to exit, its peak RSS read from ``os.wait4`` (that child's
own rusage; started by a small launcher, since Linux carries a parent's peak across fork).
Each round runs every side once, in turn, each round starting with the next side
(``--repeat`` rounds, 3 by default); the report gives each side's median time (peak: the largest) and the ratio
of medians:

* fetch only: a ``requests`` loop over the same pages, parsing the JSON and nothing else;
  the time every side spends on the API. "net" figures are a side's median minus this;
* baseline: that loop, then ``pandas.json_normalize`` → ``to_csv`` (what a one-off
  script would do; no ledger, no types, no snapshot);
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
import statistics
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

# The same pages, fetched and parsed, nothing else: what both sides spend on the API.
FETCH_ONLY = textwrap.dedent("""
    import sys, requests
    base, key = sys.argv[1], sys.argv[2]
    s = requests.Session(); s.headers["X-Auth-Key"] = key
    n, page = 0, 1
    while True:
        r = s.get(base + "clients", params={"includeProfile": "true", "page": page}, timeout=120)
        r.raise_for_status()
        batch = r.json(); n += len(batch)
        if len(batch) < 100:
            break
        page += 1
    print(n)
""")


# The child is started by this small launcher, not forked from the bench: Linux carries a
# process's peak RSS (ru_maxrss) across fork and exec, so every child of a bench that holds
# a seeded sandbox would report at least the bench's own size. The launcher is forked from
# the bench (and inherits its peak), but the command it starts is forked from the launcher's
# fresh ~10 MB image: that command's own ru_maxrss is its real peak.
LAUNCHER = ("import os, subprocess, sys\n"
            "proc = subprocess.Popen(sys.argv[2:])\n"
            "_, status, usage = os.wait4(proc.pid, 0)\n"
            "with open(sys.argv[1], 'w') as fh: fh.write(str(usage.ru_maxrss))\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MB, exit code, stderr tail) of one child process."""
    import threading

    fd, peak_file = tempfile.mkstemp(prefix="bench-peak-")
    os.close(fd)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, peak_file, *cmd], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks, err_chunks = [], []      # read pipes while waiting

    def drain(stream, sink):
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.append(chunk)

    threads = [threading.Thread(target=drain, args=(proc.stdout, out_chunks)),
               threading.Thread(target=drain, args=(proc.stderr, err_chunks))]
    for t in threads:
        t.start()
    proc.wait()
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    try:
        peak_mb = int(Path(peak_file).read_text() or 0) / 1024.0  # Linux: kilobytes
    finally:
        os.unlink(peak_file)
    err = b"".join(err_chunks).decode(errors="replace")[-800:]
    return wall, peak_mb, proc.returncode, err


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "intakeq-etl"
    if script.exists():
        return [str(script)]
    found = shutil.which("intakeq-etl")
    return [found] if found else [sys.executable, "-m", "etl"]


def start_sandbox_process(n: int, work: Path) -> tuple[subprocess.Popen, str, str]:
    """``intakeq-etl sandbox`` with ``n`` clients and no limits, in its own process: its
    serving does not share this process's interpreter (nor the GIL) with the measuring.
    Returns (process, base URL, key); stop it with :func:`stop_sandbox_process`."""
    cmd = cli_command() + ["sandbox", "--state", str(work / "sandbox.json"), "--clients", str(n),
                           "--per-minute", "0", "--per-day", "0"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INTAKEQ_")},
           "INTAKEQ_ETL_STATE_DIR": str(work / "sandbox-state")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base_url = key = None
    for line in proc.stdout:
        if "INTAKEQ_BASE_URL=" in line:
            base_url = line.split("=", 1)[1].strip()
        elif "INTAKEQ_API_KEY=" in line:
            key = line.split("=", 1)[1].strip()
            break
    if not (base_url and key):
        proc.kill()
        raise SystemExit(f"the sandbox did not start (exit {proc.wait()})")
    return proc, base_url, key


def stop_sandbox_process(proc: subprocess.Popen) -> None:
    proc.terminate()        # SIGTERM: a Ctrl-C (SIGINT) is ignored when this bench runs as a background job
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", "--rows", dest="clients", type=int, default=100_000)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; each round runs every side once, in turn; medians are reported")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    t0 = time.perf_counter()
    sandbox, base_url, key = start_sandbox_process(args.clients, work)
    print(f"sandbox (own process): {args.clients:,} clients, up in {time.perf_counter() - t0:.1f} s "
          f"at {base_url}", flush=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKEQ_")}
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    def cli_env(label, i):
        return {**base_env, "INTAKEQ_BASE_URL": base_url, "INTAKEQ_API_KEY": key,
                "INTAKEQ_MAX_PER_MINUTE": "100000000", "INTAKEQ_MAX_PER_DAY": "0",
                "INTAKEQ_ETL_STATE_DIR": str(work / f"state-{label}-{i}")}

    sides = {"fetch only": lambda i: ([sys.executable, "-c", FETCH_ONLY, base_url, key], base_env),
             "baseline (csv)": lambda i: ([sys.executable, "-c", BASELINE, base_url, key,
                                          str(work / f"baseline-{i}.csv")], base_env)}
    for fmt in formats:
        sides[f"intakeq-etl ({fmt})"] = lambda i, fmt=fmt: (
            cli_command() + ["export", "--out", str(work / f"out-{fmt}-{i}"), "--format", fmt, "--quiet"],
            cli_env(fmt, i))
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in sides}
    try:
        order = list(sides)
        for i in range(args.repeat):                 # alternate: one noisy moment hits one run of each
            for label in order[i % len(order):] + order[:i % len(order)]:   # and no side always goes first
                make = sides[label]
                cmd, env = make(i)
                wall, peak, code, err = run_measured(cmd, env)
                if code != 0:
                    print(f"{label}: exit {code}\n{err}", flush=True)
                    return 1
                runs[label].append((wall, peak))
                print(f"round {i + 1}: {label:<22} {wall:8.2f} s   peak {peak:8.1f} MB", flush=True)
    finally:
        stop_sandbox_process(sandbox)
        shutil.rmtree(work, ignore_errors=True)

    med = {label: (statistics.median(w for w, _ in r), max(p for _, p in r)) for label, r in runs.items()}
    fetch = med["fetch only"][0]
    base_wall = med["baseline (csv)"][0]
    base_net = base_wall - fetch
    print()
    print(f"medians of {args.repeat} alternating runs; net = minus the fetch-only loop ({fetch:.2f} s)")
    print(f"{'run':<22} {'time':>8} {'× base':>7} {'net s':>7} {'net × base net':>15} {'peak MB':>8}"
          "   targets: ≤ 1.5×, ≤ 1024 MB")
    for label, (wall, peak) in med.items():
        if label == "fetch only":
            print(f"{label:<22} {wall:8.2f} {'':>7} {'':>7} {'':>15} {peak:8.1f}")
            continue
        ratio = wall / base_wall if base_wall else float("nan")
        net = wall - fetch
        net_ratio = net / base_net if base_net > 0 else float("nan")
        flag = "" if label.startswith("baseline") else (
            "  ok" if ratio <= 1.5 and peak <= 1024 else "  MISSED")
        print(f"{label:<22} {wall:8.2f} {ratio:7.2f} {net:7.2f} {net_ratio:15.2f} {peak:8.1f}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
