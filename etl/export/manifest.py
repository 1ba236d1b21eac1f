"""The export manifest: what an export wrote, from where, how, and how to check it.

``DIR/manifest.json`` is written last, after every data file is in place. It holds no
API key and no client data (no names, emails or values): warnings name a ClientId,
a column and a check, never the value. Example::

    {
      "manifest_version": 1,
      "export_id": "20261125T184827Z-3f9a1c",
      "tool": "intakeq-etl", "tool_version": "0.1.0", "schema_version": "1",
      "started": "2026-11-25T18:48:27.120Z", "finished": "2026-11-25T18:48:29.004Z",
      "base_url": "https://intakeq.com/api/v1/",
      "mode": "incremental", "mode_reason": "incremental from 20261124T020000Z-...",
      "status": "complete",
      "rows": {"clients": 250, "deleted_clients": 2, "diagnoses": 31},
      "requests": 4,
      "watermark": "2026-11-25T18:48:27.120Z", "watermark_epoch": 1795632507.12,
      "files": [{"name": "clients.csv", "sha256": "...", "bytes": 1234, "rows": 250}],
      "custom_fields": [{"id": "sotc", "label": "Emergency Contact", "column": "custom.sotc"}],
      "warnings": [{"client_id": 17, "column": "Email", "check": "email_shape",
                    "severity": "error"}],
      ...
    }

Check an export with ``sha256sum`` (see runbooks/nightly-export.md) or
:func:`verify_manifest`.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .. import __version__
from ..clock import iso_ms
from ..state.files import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
MAX_WARNINGS = 10_000


def iso_utc(epoch: float | None) -> str | None:
    """An epoch second as ISO 8601 UTC with milliseconds and a ``Z``."""
    if epoch is None:
        return None
    return iso_ms(datetime.fromtimestamp(float(epoch), tz=timezone.utc))


def new_export_id(now: float) -> str:
    """``<UTC yyyyMMddTHHmmssZ>-<6 hex>``: sorts by time, unique across concurrent runs."""
    stamp = datetime.fromtimestamp(float(now), tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def schema_version() -> str:
    """``schemas.clients.SCHEMA_VERSION``: the manifest records it, and an incremental export
    from a snapshot of another version runs full. Imported when asked (it loads pandera,
    which reading or verifying a manifest does not need)."""
    from etl.schemas.clients import SCHEMA_VERSION

    return SCHEMA_VERSION


def public_base_url(url: str) -> str:
    """The base URL without user info, query or fragment (nothing secret in a manifest)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def file_entry(name: str, path: Path | str, *, rows: int | None = None,
               sha256: str | None = None) -> dict:
    path = Path(path)
    return {
        "name": name,
        "sha256": sha256 or sha256_file(path),
        "bytes": path.stat().st_size,
        "rows": rows,
    }


def build_manifest(*, export_id: str, started: float, finished: float, base_url: str,
                   mode: str, mode_reason: str, based_on: str | None, status: str,
                   rows: dict, requests: int, files: list[dict], custom_fields: dict,
                   warnings: list[dict], watermark: float, filters: dict,
                   columns: list[str] | None, format: str, timezone_name: str,
                   formula_guard: bool, diagnoses: dict | None = None,
                   snapshot: str | None = None) -> dict:
    truncated = len(warnings) > MAX_WARNINGS
    return {
        "manifest_version": MANIFEST_VERSION,
        "export_id": export_id,
        "tool": "intakeq-etl",
        "tool_version": __version__,
        "schema_version": schema_version(),
        "started": iso_utc(started),
        "finished": iso_utc(finished),
        "base_url": public_base_url(base_url),
        "mode": mode,
        "mode_reason": mode_reason,
        "based_on": based_on,
        "status": status,
        "format": format,
        "timezone": timezone_name,
        "formula_guard": formula_guard,
        "rows": rows,
        "requests": int(requests),
        "watermark": iso_utc(watermark),
        "watermark_epoch": float(watermark),
        "filters": filters,
        "columns": columns,
        "files": files,
        "custom_fields": [
            {"id": field_id, "label": label, "column": f"custom.{field_id}"}
            for field_id, label in sorted(custom_fields.items())
        ],
        "diagnoses": diagnoses,
        "snapshot": snapshot,
        "warnings_total": len(warnings),
        "warnings_truncated": truncated,
        "warnings": warnings[:MAX_WARNINGS],
    }


def load_manifest(directory: Path | str) -> dict:
    return json.loads((Path(directory) / MANIFEST_NAME).read_text(encoding="utf-8"))


def verify_manifest(directory: Path | str) -> list[str]:
    """Problems with an export directory: missing files or checksum mismatches ([] = fine)."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    problems = []
    for entry in manifest.get("files", []):
        path = directory / entry["name"]
        if not path.exists():
            problems.append(f"{entry['name']}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['name']}: sha256 does not match the manifest")
    return problems
