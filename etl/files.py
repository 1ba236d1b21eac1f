"""Atomic, owner-only file writing: what export and import use for everything they write.

A file is written to a temporary name in its target directory (so the final rename
never crosses a filesystem), flushed to disk, made 0600, and renamed into place with
``os.replace``. A run that fails or is killed leaves the previous file intact and
never a truncated one; a failed run's temporary file is removed.

Several files that belong together (an export's clients, deleted clients, diagnoses
and manifest) are written as a :class:`StagedFiles` batch: every file is first
written to its temporary name, then all are renamed, the manifest last.

::

    with atomic_path(out / "clients.csv") as tmp:   # tmp: a 0600 file in out/
        write_table(frame, tmp, format="csv")       # renamed to clients.csv on success

    write_json_atomic(out / "manifest.json", manifest)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_PREFIX = ".intakeq-etl-tmp-"


def ensure_private_dir(path: Path | str) -> Path:
    """Create ``path`` and its missing parents owner-only (0700), and make ``path`` 0700.

    An existing directory is made 0700 too: an export dir holds health data. Existing
    parents are left as they are.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):        # folders this call creates are all owner-only
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def new_temp_path(target: Path | str) -> Path:
    """A new, empty, 0600 file beside ``target`` (same directory, hidden, unique name).

    The name keeps the target's suffix, so tools that pick a format from the
    extension still work.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".",
                                suffix=target.suffix, dir=target.parent)
    os.close(fd)
    os.chmod(name, FILE_MODE)
    return Path(name)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit_temp(tmp: Path, target: Path) -> Path:
    """Make ``tmp`` owner-only, flush it, and rename it onto ``target`` (atomic)."""
    os.chmod(tmp, FILE_MODE)
    _fsync_file(tmp)
    os.replace(tmp, target)
    _fsync_dir(Path(target).parent)
    return Path(target)


def discard(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(target: Path | str, *, private_dir: bool = False, parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``target`` is left as it was. ``private_dir`` creates the folder owner-only (0700);
    ``parents`` creates missing folders as they are.
    """
    target = Path(target)
    if private_dir:
        ensure_private_dir(target.parent)
    elif parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_path(target)
    try:
        yield tmp
        commit_temp(tmp, target)
    except BaseException:
        discard(tmp)
        raise


def write_bytes_atomic(target: Path | str, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(target)


def write_text_atomic(target: Path | str, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes_atomic(target, text.encode(encoding))


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=str)
            + "\n").encode("utf-8")


def write_json_atomic(target: Path | str, obj) -> Path:
    return write_bytes_atomic(target, json_bytes(obj))


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class StagedFiles:
    """A batch of files written to temporary names first, renamed together at the end.

    ::

        with StagedFiles(out) as batch:
            write_table(df, batch.path("clients.csv"), format="csv")
            ...
            batch.commit(last=["manifest.json"])   # renames; the manifest last

    Leaving the ``with`` block without ``commit`` (an exception, Ctrl-C) removes every
    temporary file and leaves the directory as it was.
    """

    def __init__(self, directory: Path | str):
        self.directory = ensure_private_dir(directory)
        self._staged: dict[str, Path] = {}
        self.committed: list[Path] = []

    def path(self, name: str) -> Path:
        """The temporary path to write ``name`` to (a fresh 0600 file in the directory)."""
        if name in self._staged:
            discard(self._staged[name])
        tmp = new_temp_path(self.directory / name)
        self._staged[name] = tmp
        return tmp

    def write_bytes(self, name: str, data: bytes) -> Path:
        tmp = self.path(name)
        with open(tmp, "wb") as fh:
            fh.write(data)
        return tmp

    def write_json(self, name: str, obj) -> Path:
        return self.write_bytes(name, json_bytes(obj))

    def sha256(self, name: str) -> str:
        return sha256_file(self._staged[name])

    def size(self, name: str) -> int:
        return os.path.getsize(self._staged[name])

    @property
    def names(self) -> list[str]:
        return list(self._staged)

    def commit(self, last: tuple[str, ...] | list[str] = ()) -> list[Path]:
        """Rename every staged file into place; the names in ``last`` after the others."""
        order = [n for n in self._staged if n not in last] + [n for n in last if n in self._staged]
        for name in order:
            tmp = self._staged.pop(name)
            self.committed.append(commit_temp(tmp, self.directory / name))
        return list(self.committed)

    def abort(self) -> None:
        for tmp in self._staged.values():
            discard(tmp)
        self._staged.clear()

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def remove_stale_temps(directory: Path | str, *, older_than: float = 3600.0) -> int:
    """Remove temporary files a killed run left behind (ours only, by prefix).

    Only files older than ``older_than`` seconds: a concurrent run's fresh temporary
    files are left alone.
    """
    import time

    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    now = time.time()
    for entry in directory.iterdir():
        try:
            if (entry.name.startswith(TEMP_PREFIX) and entry.is_file()
                    and now - entry.stat().st_mtime > older_than):
                discard(entry)
                removed += 1
        except FileNotFoundError:  # pragma: no cover - raced with its owner
            continue
    return removed
