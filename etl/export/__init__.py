"""Export: full and incremental extraction of an account's clients, deleted clients and
diagnoses, to CSV / Parquet / XLSX with a manifest and a snapshot.

The library behind ``intakeq-etl export``; a notebook does what the CLI does with::

    from etl import Settings, export_clients
    result = export_clients(Settings.from_env(), out="exports/", incremental=True)
    result.clients          # the typed clients DataFrame (sorted by ClientId)
    result.manifest         # what manifest.json says

The steps, each in its module::

    options    ExportOptions: every option, checked before any request
    mode       full or incremental, and why (a Mode)
    fetch      pages → clients frame (frames), or the changes merged into the snapshot
    diagnoses  the day-spanning diagnoses job and its per-client progress
    write      --out checked first; staged files renamed together, manifest last
    manifest   what manifest.json holds; verify_manifest
    pipeline   export_clients: the steps in order, ExportResult
    hooks      ExportHooks: how an export talks to its caller (never print)

Loaded on first use, so ``etl.export.hooks`` is cheap for the CLI.
"""
from __future__ import annotations

_LAZY = {
    "export_clients": "pipeline",
    "ExportResult": "pipeline",
    "ExportOptions": "options",
    "ExportHooks": "hooks",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
