"""Writing an export: the --out folder checked first, then every file staged and renamed.

Nothing is written until everything asked for is fetched; then every file goes to a
temporary name in ``out`` and is renamed into place, manifest.json last (the snapshot is
saved in between). Output files of an earlier export that this run did not write are
removed, so the folder always matches its manifest. A disk that fails says so in one
line, and the previous export is left intact.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import fields
from ..codec.formats import FORMATS
from ..errors import ConfigError, EtlError, PathError
from ..state.files import (
    StagedFiles,
    discard,
    folder_is_writable,
    make_private_dirs,
    others_can_read,
    refuse_symlink,
    remove_stale_temps,
)
from .manifest import MANIFEST_NAME, file_entry

OUTPUT_STEMS = ("clients", "deleted_clients", "diagnoses")


def output_names(format: str) -> list[str]:
    return [f"{stem}.{format}" for stem in OUTPUT_STEMS]


def prepare_out_dir(out_dir: Path, format: str, say: Callable[[str], None]) -> None:
    """Make ``out_dir`` ready before any request, or say in one line why it cannot be used.

    A missing folder is created owner-only (0700). An existing one keeps its mode (it is
    the user's: a shared or group folder, a read-only backup, the working folder): one
    that others can read gets a warning (the files are 0600 anyway), one that is not
    writable is refused rather than made writable.
    """
    try:
        if not out_dir.exists():
            make_private_dirs(out_dir)
            return
        if not out_dir.is_dir():
            raise ConfigError(f"cannot use --out {out_dir}: it is a file, not a folder")
        mode = f"{stat.S_IMODE(out_dir.stat().st_mode):04o}"
        if not folder_is_writable(out_dir):
            raise PathError(
                f"cannot use --out {out_dir}: the folder is not writable (mode {mode}); intakeq-etl "
                "does not change the mode of a folder it did not create: choose another folder, "
                "or make this one writable")
        for name in (*output_names(format), MANIFEST_NAME):
            refuse_symlink(out_dir / name, "--out:")
        if others_can_read(out_dir):
            say(f"warning: --out {out_dir} can be read by others (mode {mode}); its mode is "
                "left as it is, the files are written owner-only (0600)")
    except OSError as exc:
        raise ConfigError(f"cannot use --out {out_dir}: {exc.strerror or exc}") from None


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a run created (innermost first) that are still empty; never a
    folder that holds anything."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@dataclass
class OutputTable:
    """One file of an export: ``<stem>.<format>`` holding ``frame``."""

    stem: str
    frame: pd.DataFrame
    kinds: dict | None = None     # column kinds the registry does not know (diagnoses)


@dataclass
class ExportFiles:
    """What to write to one folder, and how."""

    out_dir: Path
    format: str
    tables: list[OutputTable]
    export_id: str               # written inside each file (XLSX/Parquet)
    formula_guard: bool


def tables_for(clients: pd.DataFrame, deleted: pd.DataFrame | None,
               diagnoses: pd.DataFrame | None, columns: list[str] | None) -> list[OutputTable]:
    """The files of an export: clients (and deleted clients) narrowed to ``columns``."""
    tables = [OutputTable("clients", clients[columns] if columns else clients)]
    if deleted is not None:
        tables.append(OutputTable("deleted_clients",
                                  deleted[[c for c in columns if c in deleted.columns]]
                                  if columns else deleted))
    if diagnoses is not None:
        tables.append(OutputTable("diagnoses", diagnoses, fields.DIAGNOSIS_KINDS))
    return tables


@dataclass
class Written:
    manifest: dict
    paths: list[Path]


def write_export(files: ExportFiles, finish: Callable[[list[dict]], dict]) -> Written:
    """Write ``files``, then ``finish(file entries)`` (save the snapshot, return the
    manifest), then the manifest; rename all into place, the manifest last.

    Returns the manifest and the paths written. A disk or folder failure is one
    ``EtlError`` line; the previous export in the folder is intact.
    """
    try:
        return _write(files, finish)
    except OSError as exc:   # disk full, permissions, a folder removed meanwhile
        where = f" ({exc.filename})" if exc.filename else ""
        raise EtlError(f"cannot write the export{where}: {exc.strerror or exc}; the previous "
                       f"export in {files.out_dir} is intact") from None


def _write(files: ExportFiles, finish: Callable[[list[dict]], dict]) -> Written:
    from ..codec import write_table

    out_dir = files.out_dir
    make_private_dirs(out_dir)          # removed meanwhile: created again; an existing one keeps its mode
    remove_stale_temps(out_dir)
    with StagedFiles(out_dir) as batch:
        entries = []
        for table in files.tables:
            name = f"{table.stem}.{files.format}"
            tmp = batch.path(name)
            # The id inside the file: a copy moved away from its manifest still names its export.
            write_table(table.frame, tmp, format=files.format, formula_guard=files.formula_guard,
                        kinds=table.kinds, export_id=files.export_id)
            entries.append(file_entry(name, tmp, rows=int(len(table.frame))))
        manifest = finish(entries)
        batch.write_json(MANIFEST_NAME, manifest)
        written = batch.commit(last=[MANIFEST_NAME])
    remove_outputs_not_in(out_dir, {p.name for p in written})
    return Written(manifest, written)


def remove_outputs_not_in(out_dir: Path, keep: set[str]) -> None:
    """Files an earlier export left in the folder (another format, or a table this run did
    not write) would sit unlisted beside the new manifest: remove them."""
    for stem in OUTPUT_STEMS:
        for ext in FORMATS:
            name = f"{stem}.{ext}"
            if name not in keep:
                discard(out_dir / name)
