"""What an import is asked to do (ImportOptions), where it writes (Paths), and the
rules for opening its checkpoint: its identity (the file's bytes and the options that
change how it reads) and when a run opens it (a dry run reads it, never creates it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import CheckpointMismatch
from . import diff as D
from .checkpoint import Checkpoint


@dataclass
class ImportOptions:
    tags: str = D.TAGS_MERGE
    blank: str = D.BLANK_KEEP
    prefer_file: bool = False
    skip_invalid: bool = False
    base: str | None = None          # export dir or export id
    timezone: str | None = None      # None: the base export's timezone, else UTC
    format: str | None = None
    encoding: str | None = None
    date_format: str | None = None
    formula_guard: bool = True
    sheet: str | None = None         # the XLSX sheet to read (None: the one with ClientId)
    mapping: str | None = None       # --map: a mapping file (etl.importer.mapping)
    ignore_columns: tuple = ()       # --ignore-column: source columns left out on purpose

    def diff_options(self) -> D.Options:
        return D.Options(blank=self.blank, tags=self.tags, prefer_file=self.prefer_file,
                         tz=self.timezone)

    def identity_fields(self) -> dict:
        """Options that change how the file reads: with the file's bytes, the checkpoint's identity.

        The timezone is not one of them: dates are read as calendar dates whatever the
        zone, and it only shapes what is sent, which every run plans afresh.

        Merge options (--tags, --blank, --prefer) are left out on purpose: every run plans
        afresh against live, so rows already done stay done and the rest follow the new
        options (re-running with --prefer file after conflicts just works).
        """
        identity = {"skip_invalid": self.skip_invalid, "format": self.format,
                    "encoding": self.encoding, "date_format": self.date_format,
                    "formula_guard": self.formula_guard}
        if self.sheet is not None:     # only when given: checkpoints of earlier versions stay valid
            identity["sheet"] = self.sheet
        if self.mapping is not None:   # the mapping's bytes: an edited mapping reads the file anew
            identity["mapping"] = _digest(Path(self.mapping))
        if self.ignore_columns:
            identity["ignore_columns"] = sorted(self.ignore_columns)
        return identity


@dataclass
class Paths:
    """Where an import writes; by default next to the input file."""

    checkpoint: Path
    results: Path
    plan: Path
    report: Path
    rejects: Path
    written: list[Path] = field(default_factory=list)   # what this run wrote, in order (--json lists it)
    review: bool = True          # the review workbook and page beside the plan (--no-review: off)

    def wrote(self, path: Path) -> None:
        if path not in self.written:
            self.written.append(path)

    @property
    def review_files(self) -> dict[str, Path]:
        """The review workbook and page (``review.write_review``), by label; none with --no-review."""
        if not self.review:
            return {}
        from .review import review_paths

        workbook, page = review_paths(self.plan)
        return {"the review workbook": workbook, "the review page": page}

    @classmethod
    def beside(cls, source: Path, checkpoint=None, results=None, plan=None, report=None, rejects=None,
               review: bool = True):
        stem = source.parent / source.stem
        return cls(checkpoint=Path(checkpoint or f"{stem}.checkpoint.sqlite"),
                   results=Path(results or f"{stem}.results.csv"),
                   plan=Path(plan or f"{stem}.plan.csv"),
                   report=Path(report or f"{stem}.report.csv"),
                   rejects=Path(rejects or f"{stem}.rejects.csv"),
                   review=review)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def plan_identity(source: Path, opts: ImportOptions) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(opts.identity_fields(), sort_keys=True).encode())
    return digest.hexdigest()


def open_checkpoint(path: Path, identity: str, *, restart: bool, dry_run: bool,
                    note: Callable[[str], None] = lambda message: None,
                    fresh_when_finished: bool = False) -> Checkpoint | None:
    """The checkpoint, read for resuming; its file is only created (or replaced) by a first write.

    A dry run shows the resumed plan, even with ``restart``; a checkpoint of another file
    or options is ignored by a dry run (said through ``note``), and refused by a real run
    (``CheckpointMismatch``). ``fresh_when_finished``: see :class:`Checkpoint` (an undo's).
    """
    if not dry_run:
        return Checkpoint(path, identity, restart=restart, fresh_when_finished=fresh_when_finished)
    try:
        return Checkpoint(path, identity, fresh_when_finished=fresh_when_finished)
    except CheckpointMismatch:
        note(f"the checkpoint {path} belongs to another file or options; ignored by the dry run")
        return None
