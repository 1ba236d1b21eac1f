"""Kept for scripts written against earlier docs (``from etl.manifest import
verify_manifest``): the manifest lives in :mod:`etl.export.manifest`."""
from .export.manifest import load_manifest, verify_manifest

__all__ = ["load_manifest", "verify_manifest"]
