"""The progress a person sees, tested in a pseudo-terminal (issue 13 §2).

The CLI runs in-process with stderr on the slave side of a pty (80×24) and a FakeClock
in place of the system clock (no test sleeps for the per-minute limit); a thread drains
the master side. Checked: the bar appears; its ETA at the start of a throttled run is
the time the run then takes (in fake seconds); the throttle's wait counts down on the
bar; notes are lines of their own, never written into the bar; nothing is drawn when
stderr is not a terminal, or with --quiet.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading
import time

import pytest

import etl.api.client
from etl.cli import cli
from etl.cli.ui import clock_text
from etl.clock import FakeClock
from etl.sandbox import Faults

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A pty of 80 columns: ``stderr`` is a text file on its slave side; ``output`` what was
    drawn on it (read by a thread, so a long run never fills the pty's buffer)."""

    def __init__(self, cols: int = 80, rows: int = 24):
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.stderr = os.fdopen(os.dup(self.slave), "w", encoding="utf-8", buffering=1)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self._chunks.append(data)

    def close(self) -> str:
        self.stderr.close()
        os.close(self.slave)
        self._reader.join(timeout=10)
        os.close(self.master)
        return b"".join(self._chunks).decode("utf-8", "replace")


def run_in_terminal(monkeypatch, cli_env: dict, *args, env: dict | None = None, terminal: bool = True):
    """Run ``intakeq-etl ARGS`` with stderr on a pty (or a plain file) and a FakeClock;
    returns (exit code, what stderr received, the clock)."""
    clock = FakeClock(time.time())
    monkeypatch.setattr(etl.api.client, "SystemClock", lambda: clock)
    for name, value in {**cli_env, **(env or {})}.items():
        monkeypatch.setenv(name, value)
    term = Terminal() if terminal else None
    stderr = term.stderr if term is not None else \
        open(cli_env["INTAKEQ_ETL_STATE_DIR"] + ".log", "w+", encoding="utf-8")     # a scheduler's log
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        try:
            cli.main(args=[str(a) for a in args], prog_name="intakeq-etl", standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code
    finally:
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    if term is not None:
        return code, term.close(), clock
    stderr.seek(0)
    text = stderr.read()
    stderr.close()
    return code, text, clock


def segments(output: str) -> list[str]:
    """What stood on the terminal line by line and redraw by redraw (split on CR and LF)."""
    return [s.strip() for s in re.split(r"[\r\n]", ANSI.sub("", output)) if s.strip()]


def test_the_eta_at_the_start_of_a_throttled_run_is_the_time_it_takes(monkeypatch, cli_env, tmp_path, sandbox):
    # 1 page, then 20 diagnoses at 8 a minute: 7 now, 8 a minute later, 5 two minutes later.
    code, output, clock = run_in_terminal(monkeypatch, cli_env, "export", "--out", tmp_path / "out",
                                          "--include-diagnoses", env={"INTAKEQ_MAX_PER_MINUTE": "8"})
    assert code == 0, output
    shown = segments(output)
    # The first export has no total: pages fetched and clients so far, no rate.
    listing = [s for s in shown if s.startswith("clients:")]
    assert listing and all("fetched" in s for s in listing), shown
    assert not any(re.search(r"\d(page|client)s?/s", s) for s in shown), "a tqdm rate was drawn"
    # The diagnoses bar opens with the tool's ETA, before any of its requests.
    bars = [s for s in shown if s.startswith("diagnoses:") and "/20 clients" in s]
    assert bars, shown
    start = next(s for s in bars if "ETA" in s)
    first_eta = re.search(r"ETA (\d+:\d\d)", start)
    assert first_eta and "0/20" in start, start
    minutes, seconds = first_eta.group(1).split(":")
    eta = int(minutes) * 60 + int(seconds)
    took = sum(clock.slept)             # all the run's (fake) time is its waits
    assert took == pytest.approx(120, abs=1)
    assert abs(eta - took) <= 0.1 * took, (eta, took)
    # During the waits the bar counts down, second by second.
    countdown = [int(m) for s in bars for m in re.findall(r"waiting (\d+) s for the per-minute limit", s)]
    assert countdown[:3] == [60, 59, 58], bars[:12]
    assert max(clock.slept) <= 1.0          # sliced, so the countdown moves every second
    # Closing lines are lines of their own.
    assert any(s.startswith("export ") and "20 clients" in s for s in shown)


def test_notes_said_while_the_bar_is_drawn_are_lines_of_their_own(monkeypatch, cli_env, tmp_path, sandbox):
    sandbox.configure(faults=Faults(seed=3, fail_before=0.3))     # retries: a note each
    try:
        code, output, _ = run_in_terminal(monkeypatch, cli_env, "export", "--out", tmp_path / "out",
                                          "--include-diagnoses")
    finally:
        sandbox.configure(faults=Faults())
    assert code == 0, output
    shown = segments(output)
    notes = [s for s in shown if "note:" in s]
    assert notes, shown
    for line in notes:
        assert line.startswith("note: "), f"a note was written into another line: {line!r}"
        assert "%|" not in line and "ETA" not in line
    # ... written while a bar was drawn, which was drawn again below them.
    first_bar = min(i for i, s in enumerate(shown) if "%|" in s)
    later_notes = [i for i, s in enumerate(shown) if "note:" in s and i > first_bar]
    assert later_notes, shown
    assert any("%|" in s for s in shown[later_notes[0] + 1:]), shown


def test_import_shows_the_eta_of_its_writes(monkeypatch, cli_env, tmp_path, sandbox, run_cli):
    out = tmp_path / "out"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 0
    path = out / "clients.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    email = header.index("Email")
    edited = [lines[0]]
    for n, line in enumerate(lines[1:], 1):
        cells = line.split(",")
        if n <= 12 and len(cells) == len(header):
            cells[email] = f"changed{n}@example.org"
        edited.append(",".join(cells))
    path.write_text("\n".join(edited) + "\n", encoding="utf-8")
    code, output, clock = run_in_terminal(monkeypatch, cli_env, "import", path, "--yes",
                                          env={"INTAKEQ_MAX_PER_MINUTE": "5"})
    assert code == 0, output
    bars = [s for s in segments(output) if s.startswith("import:") and "%|" in s]
    assert bars, segments(output)
    start = next(s for s in bars if "ETA" in s)
    first_eta = re.search(r"ETA (\d+):(\d\d)", start)
    assert first_eta and " 0/" in start, start
    eta = int(first_eta.group(1)) * 60 + int(first_eta.group(2))
    took = sum(clock.slept)
    assert took > 0 and abs(eta - took) <= 0.1 * took, (eta, took, start)


@pytest.mark.parametrize("how", ["not a terminal", "--quiet"])
def test_nothing_is_drawn_in_a_log_or_with_quiet(monkeypatch, cli_env, tmp_path, sandbox, how):
    args = ["export", "--out", tmp_path / "out", "--include-diagnoses"]
    if how == "--quiet":
        args.append("--quiet")
    code, output, _ = run_in_terminal(monkeypatch, cli_env, *args, env={"INTAKEQ_MAX_PER_MINUTE": "8"},
                                      terminal=how == "--quiet")
    assert code == 0, output
    assert "\r" not in output.replace("\r\n", "\n") and "\x1b[" not in output   # (a pty ends lines CR LF)
    assert "%|" not in output and "ETA" not in output and "for the per-minute limit" not in output
    if how == "--quiet":      # the summary still prints; the notes and messages do not
        shown = segments(output)
        assert len(shown) == 1 and shown[0].startswith("export ") and "20 clients" in shown[0], shown
    else:                     # a log gets the waits as notes, one a line
        assert "note: waiting 60 s: the API allows 8 requests a minute" in output.splitlines()


def test_the_eta_reads_minutes_and_seconds():
    assert [clock_text(s) for s in (0, 59.6, 120, 3599, 3600, 7384)] == \
        ["0:00", "1:00", "2:00", "59:59", "1:00:00", "2:03:04"]


def test_quiet_means_the_same_in_validate_and_import(run_cli, tmp_path):
    out = tmp_path / "out"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 0
    loud = run_cli("validate", out / "clients.csv")
    quiet = run_cli("validate", out / "clients.csv", "--quiet")
    assert loud.exit_code == quiet.exit_code == 0
    assert any(line.startswith("base: ") for line in loud.output.splitlines())
    assert quiet.output.splitlines() == [line for line in loud.output.splitlines()
                                         if not line.startswith(("base: ", "sheet: ", "note: "))]
    imported = run_cli("import", out / "clients.csv", "--yes", "--quiet")
    assert imported.exit_code == 0
    lines = imported.output.splitlines()
    assert any(line.startswith("plan: ") for line in lines) and any(line.startswith("result: ") for line in lines)
    assert not any(line.startswith("note: ") for line in lines)
