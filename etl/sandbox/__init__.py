"""A faithful local emulator of the IntakeQ Client API (a real HTTP server on 127.0.0.1).

* ``app``     — routes, auth, limits, faults, request log; ``SandboxServer``
* ``store``   — the account (API-shaped records, save semantics, state file); ``Store``
* ``faults``  — seeded fault injection; ``Faults``
* ``seed``    — the synthetic account generator (no real people)
* ``records`` — the profile shape

``start_embedded(state_dir)`` serves the account behind the global ``--sandbox`` option.
"""
from __future__ import annotations

from pathlib import Path

from ..config import DEFAULT_MAX_PER_DAY, DEFAULT_MAX_PER_MINUTE
from .app import LogEntry, SandboxServer
from .faults import Faults
from .store import Store

EMBEDDED_KEY = "sandbox-key"
EMBEDDED_CLIENTS = 300
EMBEDDED_SEED = 1

__all__ = ["SandboxServer", "Store", "Faults", "LogEntry", "start_embedded", "state_file"]


def state_file(state_dir: Path | str) -> Path:
    """Where the sandbox account lives in a state dir (shared by --sandbox and `sandbox`)."""
    return Path(state_dir) / "sandbox" / "state.json"


def start_embedded(state_dir: Path | str, *, clock=None, per_minute: int = DEFAULT_MAX_PER_MINUTE,
                   per_day: int = DEFAULT_MAX_PER_DAY) -> SandboxServer:
    """The sandbox for ``--sandbox``: started on a free 127.0.0.1 port, key "sandbox-key",
    account in ``state_dir/sandbox/state.json`` (a 300-client synthetic account, seed 1,
    when absent). Its limits are those of the plan being emulated: the real ones
    (``etl.config``'s defaults) unless the caller's INTAKEQ_MAX_PER_* say otherwise."""
    from ..state.files import ensure_private_dir

    path = state_file(state_dir)
    ensure_private_dir(path.parent)
    store = None
    if not path.exists():
        store = Store.seeded(EMBEDDED_CLIENTS, EMBEDDED_SEED, clock=clock)
    return SandboxServer(store, api_key=EMBEDDED_KEY, per_minute=per_minute, per_day=per_day,
                         state_path=path, clock=clock).start()
