"""What costs nothing stays cheap: --help imports no data library, `--sandbox quota` starts
no emulator. (Times are measured by `python -X importtime`, never asserted here.)"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from etl.api import Ledger
from etl.cli import COMMANDS
from etl.config import Settings
from etl.sandbox import EMBEDDED_KEY, state_file

HEAVY = ("pandas", "pyarrow", "numpy", "pandera", "openpyxl", "werkzeug", "requests")


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_imports_no_data_library(name):
    args = [name, "--help"] if name else ["--help"]
    code = ("import sys\nfrom etl.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in %r if m in sys.modules))" % (args, HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out
    assert out.strip().splitlines()[-1] == "LOADED []"


def test_sandbox_quota_reads_the_sandbox_ledger_without_starting_the_emulator(tmp_path, run_cli):
    state = tmp_path / "fresh-state"
    ledger = Ledger.for_settings(Settings(api_key=EMBEDDED_KEY, state_dir=state, max_per_day=500))
    ledger.complete(ledger.reserve())          # one request of the sandbox account, just now
    ledger.close()

    result = run_cli("--sandbox", "quota", "--json",
                     env={"INTAKEQ_ETL_STATE_DIR": str(state), "INTAKEQ_API_KEY": None,
                          "INTAKEQ_BASE_URL": None, "INTAKEQ_MAX_PER_DAY": "500"})
    assert result.exit_code == 0, result.output
    usage = json.loads(result.stdout)
    assert (usage["used_24h"], usage["remaining"]) == (1, 499)
    assert not state_file(state).exists()      # the emulator would have seeded its account here
    assert usage["next_free_at"] > time.time()
