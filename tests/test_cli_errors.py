"""How the CLI fails: one line and an exit code, never a raw traceback or the key."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from etl.cli import cli


@pytest.fixture
def broken_quota(monkeypatch):
    """Make `quota` hit a bug whose traceback would carry the key."""
    from etl.api import Ledger

    def explode(*args, **kwargs):
        raise RuntimeError("boom with key SECRET-KEY-123 inside")

    monkeypatch.setattr(Ledger, "for_settings", staticmethod(explode))


def test_a_bug_prints_one_line_naming_an_owner_only_log_without_the_key(broken_quota, tmp_path):
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["quota"], env={"INTAKEQ_API_KEY": "SECRET-KEY-123",
                                                     "INTAKEQ_ETL_STATE_DIR": str(state)})
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unexpected RuntimeError" in lines[0] and "--debug" in lines[0]
    assert "Traceback" not in result.output and "SECRET-KEY-123" not in result.output
    (log,) = (state / "logs").iterdir()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
    text = log.read_text()
    assert "Traceback" in text and "SECRET-KEY-123" not in text and "***" in text


def test_debug_shows_the_traceback(broken_quota, tmp_path):
    result = CliRunner().invoke(cli, ["--debug", "quota"], env={
        "INTAKEQ_API_KEY": "k", "INTAKEQ_ETL_STATE_DIR": str(tmp_path / "state")})
    assert isinstance(result.exception, RuntimeError)


def test_an_unusable_state_dir_still_gives_one_line(broken_quota, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, ["quota"], env={"INTAKEQ_API_KEY": "k",
                                                     "INTAKEQ_ETL_STATE_DIR": str(blocker / "state")})
    assert result.exit_code == 1
    assert "no log could be written" in result.output
    assert "Traceback" not in result.output


def test_a_closed_stdout_ends_the_command_quietly(tmp_path):
    """`intakeq-etl quota | head -1`: the reader is gone before quota writes a line."""
    read_end, write_end = os.pipe()
    os.close(read_end)                          # every write to the pipe now fails (EPIPE)
    env = {**os.environ, "INTAKEQ_API_KEY": "a-key", "INTAKEQ_ETL_STATE_DIR": str(tmp_path / "state")}
    try:
        proc = subprocess.run([sys.executable, "-m", "etl", "quota"], stdout=write_end,
                              stderr=subprocess.PIPE, env=env, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 0
    assert proc.stderr == b""


@pytest.mark.parametrize("variable, value, expected", [
    ("INTAKEQ_MAX_PER_MINUTE", "abc", "error: INTAKEQ_MAX_PER_MINUTE must be a positive whole number, not 'abc'"),
    ("INTAKEQ_MAX_PER_MINUTE", "0", "error: INTAKEQ_MAX_PER_MINUTE must be a positive whole number, not '0'"),
    ("INTAKEQ_MAX_PER_DAY", "-1", "error: INTAKEQ_MAX_PER_DAY must be 0 (no daily budget) or a positive "
                                  "whole number, not '-1'"),
    ("INTAKEQ_MAX_PER_DAY", "lots", "error: INTAKEQ_MAX_PER_DAY must be 0 (no daily budget) or a positive "
                                    "whole number, not 'lots'"),
    ("INTAKEQ_SNAPSHOT_DAYS", "x", "error: INTAKEQ_SNAPSHOT_DAYS must be 0 or a positive whole number of days, "
                                   "not 'x'"),
])
def test_a_bad_intakeq_value_is_one_line_exit_1_whatever_the_value(tmp_path, variable, value, expected):
    """Not a number or too small: the same rule, the same outcome (the README: exit 1)."""
    result = CliRunner().invoke(cli, ["quota"], env={"INTAKEQ_API_KEY": "k", variable: value,
                                                     "INTAKEQ_ETL_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 1, result.output
    assert result.output.strip() == expected


def test_a_bad_limit_option_is_the_same_line_as_the_variable(tmp_path):
    result = CliRunner().invoke(cli, ["--max-per-minute", "abc", "quota"], env={
        "INTAKEQ_API_KEY": "k", "INTAKEQ_ETL_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "error: INTAKEQ_MAX_PER_MINUTE must be a positive whole number, not 'abc'"
