"""intakeq-etl: quota-aware export and import of IntakeQ (PracticeQ) clients.

The library is usable from Python and notebooks; the CLI (``intakeq-etl``) is a thin
shell over it. Heavy modules load lazily, so ``import etl`` is cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    # name: (module, attribute)
    "Settings": ("etl.config", "Settings"),
    "IntakeQClient": ("etl.api", "IntakeQClient"),
    "clients_to_frame": ("etl.codec", "clients_to_frame"),
    "frame_to_records": ("etl.codec", "frame_to_records"),
    "read_table": ("etl.codec", "read_table"),
    "write_table": ("etl.codec", "write_table"),
    "export_clients": ("etl.export", "export_clients"),
    "ExportOptions": ("etl.export", "ExportOptions"),
    "run_import": ("etl.importer", "run_import"),
    "undo_import": ("etl.importer", "undo_import"),
    "validate_file": ("etl.validate", "validate_file"),
    "Hooks": ("etl.hooks", "Hooks"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'etl' has no attribute {name!r}")
