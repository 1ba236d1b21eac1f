"""Shared fixtures: one sandbox server per test session on an ephemeral 127.0.0.1 port.

``sandbox`` resets it to a fresh 20-client account for each test (limits and faults off);
``settings`` points the library at it; ``run_cli`` runs the real CLI against it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.config import Settings
from etl.sandbox import SandboxServer


@pytest.fixture(scope="session")
def sandbox_server():
    server = SandboxServer(per_minute=0, per_day=0).start()
    assert server.base_url.startswith("http://127.0.0.1:")
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    sandbox_server.reset(n_clients=20, seed=1)
    return sandbox_server


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def settings(sandbox, state_dir) -> Settings:
    return Settings(api_key=sandbox.api_key, base_url=sandbox.base_url,
                    max_per_minute=1_000_000, max_per_day=0, state_dir=state_dir)


@pytest.fixture
def cli_env(sandbox, state_dir) -> dict:
    return {
        "INTAKEQ_API_KEY": sandbox.api_key,
        "INTAKEQ_BASE_URL": sandbox.base_url,
        "INTAKEQ_MAX_PER_MINUTE": "1000000",
        "INTAKEQ_MAX_PER_DAY": "0",
        "INTAKEQ_ETL_STATE_DIR": str(state_dir),
    }


@pytest.fixture
def run_cli(cli_env):
    """Run the real CLI in-process: run_cli("export", "--out", d, env={...extra})."""
    from etl.cli import cli

    def run(*args, env=None, input=None):
        merged = {**cli_env, **(env or {})}
        return CliRunner().invoke(cli, [str(a) for a in args], env=merged, input=input,
                                  catch_exceptions=False)

    return run
