"""Atomic, owner-only file writing: what export and import use for everything they write.

A file is written to a temporary name in its target directory (so the final rename
never crosses a filesystem), flushed to disk, made 0600, and renamed into place with
``os.replace``. A run that fails or is killed leaves the previous file intact and
never a truncated one; a failed run's temporary file is removed. No file is ever
written through a symbolic link (:func:`open_private`, :func:`refuse_symlink`), and a
folder the tool did not create keeps its mode (:func:`make_private_dirs`).

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
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import PathError

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_PREFIX = ".intakeq-etl-tmp-"


def make_private_dirs(path: Path | str) -> Path:
    """Create ``path`` and its missing parents owner-only (0700); leave existing folders alone.

    The mode of a folder the tool did not create is the user's choice (a shared ``1777``,
    a group ``2775`` project folder, a read-only ``0500`` backup, the working folder of
    ``--out .``): it is never changed.
    """
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):        # folders this call creates are all owner-only
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)          # mkdir's mode is narrowed by the umask only
    return path


def ensure_private_dir(path: Path | str) -> Path:
    """Like :func:`make_private_dirs`, and make ``path`` itself 0700 even if it existed.

    Only for the state dir's own folders (account, snapshots, logs): they hold health
    data and no one else's files. Never for a folder the user named (``--out``).
    """
    path = make_private_dirs(path)
    os.chmod(path, DIR_MODE)
    return path


def folder_is_writable(path: Path | str) -> bool:
    """Whether files may be written into the existing folder ``path``.

    ``os.access`` says yes to root for every folder, so a folder with no write bit at all
    (a ``0500`` backup) is taken as read-only on purpose, whoever runs the tool.
    """
    mode = os.stat(path).st_mode
    return os.access(path, os.W_OK | os.X_OK) and bool(mode & 0o222)


def others_can_read(path: Path | str) -> bool:
    return bool(os.stat(path).st_mode & 0o044)


def refuse_symlink(path: Path | str, what: str = "") -> None:
    """Raise PathError when ``path`` is a symbolic link (dangling or not)."""
    path = Path(path)
    if path.is_symlink():
        raise _symlink_error(path, what)


def _symlink_error(path: Path, what: str = "") -> PathError:
    label = f"{what} " if what else ""
    return PathError(f"{label}{path} is a symbolic link: intakeq-etl never writes its files "
                     "through a link (the write would land wherever it points); remove the link "
                     "or choose another path")


def open_private(path: Path | str, flags: int = os.O_RDWR) -> int:
    """Open ``path`` for writing, creating it owner-only (0600), never through a link.

    The one place the tool creates a file by name: the SQLite stores (checkpoint, ledger,
    applied, diagnoses) and crash logs. ``O_NOFOLLOW`` refuses a link to an existing
    file (it would be chmodded and overwritten) and a dangling one (``O_CREAT`` would
    create the file wherever it points). The mode is set on the open descriptor, so it
    is always this file's. Returns the descriptor.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise _symlink_error(path) from None
        raise
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private_file(path: Path | str) -> Path:
    """Create ``path`` owner-only if missing (or make it 0600): before SQLite opens it by
    name, and so that its -wal/-journal files inherit the mode."""
    os.close(open_private(path))
    return Path(path)


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file: equal once resolved (links, ``..``), or the same
    inode (hard links, a case-insensitive file system)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:     # one of them does not exist yet: the resolved paths decide
        return False


def first_clash(named: dict[str, Path]) -> tuple[str, str, Path] | None:
    """The first two entries of ``named`` (label → path) that are one file, or None."""
    items = list(named.items())
    for i, (label_a, a) in enumerate(items):
        for label_b, b in items[i + 1:]:
            if same_file(a, b):
                return label_a, label_b, Path(b)
    return None


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
    refuse_symlink(target)      # os.replace would swap the link for a file, silently
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


def json_bytes(obj, *, compact: bool = False) -> bytes:
    """UTF-8 JSON: indented for people (manifests, meta), or ``compact`` for a large
    machine-read state file (one line, no spaces)."""
    if compact:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=str)
            + "\n").encode("utf-8")


def write_json_atomic(target: Path | str, obj, *, compact: bool = False) -> Path:
    return write_bytes_atomic(target, json_bytes(obj, compact=compact))


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
        self.directory = make_private_dirs(directory)    # an existing folder keeps its mode
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
        for name in order:      # all checked before the first rename: a batch lands whole or not at all
            refuse_symlink(self.directory / name)
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
