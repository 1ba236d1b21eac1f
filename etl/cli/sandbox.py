"""``intakeq-etl sandbox``: serve the local IntakeQ emulator on 127.0.0.1 until Ctrl-C.

The account lives in ``<state dir>/sandbox/state.json`` by default, the same file the
global ``--sandbox`` option uses, so both see the same clients. ``--clients``/``--seed``
only shape a new account (when the state file is absent, or with ``--reset``).
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from ..config import DEFAULT_MAX_PER_DAY, DEFAULT_MAX_PER_MINUTE
from ..state.files import make_private_dirs
from . import options


@click.command("sandbox", epilog=options.examples(
    "intakeq-etl sandbox --port 8765",
    "intakeq-etl sandbox --clients 1000 --reset --per-minute 0",
    "intakeq-etl sandbox --per-minute 10 --fail-before 0.05 --lost-response 0.05",
))
@click.option("--port", type=int, default=0, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--state", "state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="State file  [default: <state dir>/sandbox/state.json, shared with --sandbox]")
@click.option("--clients", type=click.IntRange(min=0), default=300, show_default=True,
              help="Clients in a new synthetic account.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of a new synthetic account.")
@click.option("--reset", is_flag=True, help="Replace an existing state file with a new synthetic account.")
@click.option("--key", default="sandbox-key", show_default=True, help="The API key the sandbox accepts.")
@click.option("--per-minute", type=click.IntRange(min=0), default=DEFAULT_MAX_PER_MINUTE, show_default=True,
              help="Requests a minute (sliding window); 0 = unlimited.")
@click.option("--per-day", type=click.IntRange(min=0), default=DEFAULT_MAX_PER_DAY, show_default=True,
              help="Requests in any 24 h; 0 = unlimited.")
@click.option("--no-retry-after", is_flag=True, help="Answer 429 without a Retry-After header.")
@click.option("--fail-before", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of requests that answer 503 before any effect.")
@click.option("--lost-response", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of writes that take effect, then answer 502.")
@click.option("--write-latency", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds between a write taking effect and its reply.")
@click.option("--fault-seed", type=int, default=0, show_default=True, help="Seed of the fault injection.")
@click.pass_context
def sandbox(ctx, port, state, clients, seed, reset, key, per_minute, per_day, no_retry_after,
            fail_before, lost_response, write_latency, fault_seed):
    """Serve a local emulator of the IntakeQ Client API on 127.0.0.1 (Ctrl-C stops it)."""
    from ..sandbox import Faults, SandboxServer, Store, state_file

    path = state or state_file(ctx.obj.state_dir)
    make_private_dirs(path.parent)       # --state may name a folder of the user's: keep its mode
    store = None
    if reset or not path.exists():
        store = Store.seeded(clients, seed)
        click.echo(f"new synthetic account: {clients} clients (seed {seed})", err=True)
    elif ctx.get_parameter_source("clients").name != "DEFAULT" or \
            ctx.get_parameter_source("seed").name != "DEFAULT":
        click.echo("note: the state file exists; --clients/--seed ignored (add --reset to replace it)",
                   err=True)
    faults = Faults(seed=fault_seed, fail_before=fail_before, lost_response=lost_response,
                    write_latency=write_latency)
    server = SandboxServer(store, api_key=key, port=port, per_minute=per_minute, per_day=per_day,
                           retry_after=not no_retry_after, faults=faults, state_path=path)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    limits = f"{per_minute or 'unlimited'}/min, {per_day or 'unlimited'}/day"
    click.echo(f"IntakeQ sandbox at {server.base_url}  (key: {key}; limits {limits}; "
               f"{len(server.store.clients)} clients; state {path})")
    click.echo("Use it from another shell:")
    click.echo(f"  export INTAKEQ_BASE_URL={server.base_url}")
    click.echo(f"  export INTAKEQ_API_KEY={key}")
    click.echo("Ctrl-C stops it.")
    try:
        _wait(server)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    click.echo("sandbox stopped", err=True)


def _wait(server) -> None:
    """Serve until Ctrl-C (the server runs in its own thread). Tests replace this."""
    while True:
        time.sleep(1)
