"""The runbooks, followed literally (issue 13 §3).

* Every ```console block of a runbook is a transcript of a real session against the
  sandbox: ``$ command`` lines, then what it printed; ``$ echo $?`` then a number is the
  exit code the command before it must end with (0 when not given). The commands run in
  one shell, in a fresh folder with a fresh state dir, and each printed line must appear
  in what the command prints now (export ids, dates and times may differ; ``…`` in a line
  stands for any text).
* nightly-export.md: its env file, job script and crontab line, typed as written into a
  fresh $HOME, run the way cron runs them (no venv on PATH), twice: a full export, then an
  incremental one; its systemd unit starts the same script and reads the same env file.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = sorted((ROOT / "runbooks").glob("*.md"))
VENV_BIN = Path(sys.executable).parent
MARK = "@@runbook-step"

VARYING = [
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}"), "<export-id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<date>"),
    (re.compile(r"\d{2}:\d{2}:\d{2}"), "<time>"),
]


def fenced_blocks(text: str, info: str) -> list[str]:
    """The bodies of the ```<info> blocks of a markdown text."""
    return re.findall(rf"^```{re.escape(info)}[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S)


@dataclass
class Step:
    command: str
    printed: list[str] = field(default_factory=list)
    exit_code: int = 0


def transcript_steps(block: str) -> list[Step]:
    steps: list[Step] = []
    expect_code = False
    for line in block.splitlines():
        if line.startswith("$ "):
            command = line[2:].strip()
            expect_code = command == "echo $?"
            if not expect_code:
                steps.append(Step(command))
        elif expect_code:
            steps[-1].exit_code = int(line.strip())
            expect_code = False
        elif line.strip() and steps:
            steps[-1].printed.append(line.rstrip())
    return steps


def normalised(line: str) -> str:
    for pattern, placeholder in VARYING:
        line = pattern.sub(placeholder, line)
    return line.strip()


def shown(expected: str, lines: list[str]) -> bool:
    if "…" not in expected:
        return normalised(expected) in {normalised(line) for line in lines}
    parts = [re.escape(normalised(part)) for part in expected.split("…")]
    pattern = re.compile(".*".join(parts))
    return any(pattern.search(normalised(line)) for line in lines)


def run_transcript(steps: list[Step], folder: Path) -> list[tuple[list[str], int]]:
    """Every step in one shell (``cd`` and ``export`` carry over): its lines and exit code."""
    script = "\n".join(f'echo "{MARK}"\n{step.command} 2>&1 </dev/null\necho "{MARK} $?"' for step in steps)
    env = {key: value for key, value in os.environ.items() if not key.startswith("INTAKEQ_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["INTAKEQ_ETL_STATE_DIR"] = str(folder / "state")      # a transcript may set its own
    env["COLUMNS"] = "100"
    done = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    runs: list[tuple[list[str], int]] = []
    lines: list[str] = []
    for line in done.stdout.splitlines():
        if line == MARK:
            lines = []
        elif line.startswith(MARK + " "):
            runs.append((lines, int(line.split()[-1])))
        else:
            lines.append(line)
    assert len(runs) == len(steps), done.stdout + done.stderr
    return runs


TRANSCRIPTS = [(path.name, n, block) for path in RUNBOOKS
               for n, block in enumerate(fenced_blocks(path.read_text(encoding="utf-8"), "console"), 1)]


def test_the_migration_guides_have_sandbox_transcripts():
    names = {name for name, _, _ in TRANSCRIPTS}
    assert {"nightly-export.md", "spreadsheet-round-trip.md", "data-migration.md"} <= names, names


@pytest.mark.parametrize("name, n, block", TRANSCRIPTS, ids=[f"{name}-{n}" for name, n, _ in TRANSCRIPTS])
def test_a_runbook_transcript_is_what_the_sandbox_prints(name, n, block, tmp_path):
    steps = transcript_steps(block)
    assert steps and all(s.command for s in steps)
    assert any("--sandbox" in s.command for s in steps), "a transcript runs against the sandbox"
    for step, (lines, code) in zip(steps, run_transcript(steps, tmp_path)):
        assert code == step.exit_code, f"{step.command}: exit {code}, documented {step.exit_code}\n" + \
            "\n".join(lines)
        for expected in step.printed:
            assert shown(expected, lines), f"{step.command}: {expected!r} not printed; printed:\n" + \
                "\n".join(lines)


# --------------------------------------------------------------------------- the nightly job


NIGHTLY = (ROOT / "runbooks" / "nightly-export.md").read_text(encoding="utf-8")


def nightly_block(starting: str, info: str = "sh") -> str:
    found = [b for b in fenced_blocks(NIGHTLY, info) if b.lstrip().startswith(starting)]
    assert len(found) == 1, f"one ```{info} block starting {starting!r} in nightly-export.md"
    return found[0]


def test_the_nightly_job_runs_from_cron_as_written(tmp_path, sandbox):
    home = tmp_path / "home"
    home.mkdir()
    shell = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}    # cron's: no venv
    # 1. Install: the runbook's venv, here a link to the one running the tests.
    venv_bin = nightly_venv(home)
    venv_bin.mkdir(parents=True)
    (venv_bin / "intakeq-etl").symlink_to(VENV_BIN / "intakeq-etl")
    # 2. The folders and the env file, as typed; the key and URL of the test sandbox in it.
    for starting in ("mkdir -p", "umask 077"):
        subprocess.run(["sh", "-c", nightly_block(starting)], env=shell, check=True)
    env_file = home / ".config" / "intakeq-etl" / "env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert settings["INTAKEQ_ETL_STATE_DIR"] == str(home / ".local" / "state" / "intakeq-etl")
    env_file.write_text(env_file.read_text().replace("paste-the-key-here", sandbox.api_key)
                        + f"INTAKEQ_BASE_URL={sandbox.base_url}\nINTAKEQ_MAX_PER_MINUTE=100000\n")
    # 3. The job script, as printed, where the runbook puts it.
    script = home / "bin" / "intakeq-nightly"
    script.write_text(nightly_block("#!/bin/sh"))
    script.chmod(0o700)
    # 4. The crontab line's command, as cron runs it.
    cron = [line for line in nightly_block("#", "cron").splitlines() if line and not line.startswith("#")]
    assert len(cron) == 1
    command = cron[0].split(None, 5)[5]
    for night in ("full", "incremental"):
        done = subprocess.run(["sh", "-c", command], env=shell, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (home / "intakeq-exports" / "cron.log").read_text()
        runs = (home / "intakeq-exports" / "runs.jsonl").read_text().splitlines()
        last = json.loads(runs[-1])
        assert last["exit_status"] == 0 and last["mode"] == night, last
        latest = home / "intakeq-exports" / "latest"
        assert (latest / "clients.csv").is_file() and (latest / "manifest.json").is_file()
    state = home / ".local" / "state" / "intakeq-etl"
    assert any(state.rglob("ledger.sqlite")), "the job used the env file's state dir"


def nightly_venv(home: Path) -> Path:
    """The venv's bin folder the runbook installs into, read from the job script."""
    found = re.search(r'"\$HOME/([^"]+)/intakeq-etl"', nightly_block("#!/bin/sh"))
    assert found, "the job script calls intakeq-etl by the venv's absolute path"
    return home / found.group(1)


def test_the_systemd_unit_runs_the_job_with_the_env_file():
    service = nightly_block("[Unit]\nDescription=IntakeQ nightly client export", "ini")
    assert "EnvironmentFile=%h/.config/intakeq-etl/env" in service
    assert re.search(r"^ExecStart=%h/bin/intakeq-nightly$", service, flags=re.M)
    assert "SuccessExitStatus=75" in service
