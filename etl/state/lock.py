"""One run at a time where two would do each other's work twice: an OS lock.

* an import of one file (its checkpoint): ``checkpoint_lock``;
* an export of one account: ``export_lock`` (two full exports of an account share its
  kept pages: the first to finish would drop the pages the other goes on with).


Two imports of the same file (the same checkpoint) running at once would both plan the
same rows and both send them: every update twice, every new client created twice. So
an import holds ``fcntl.flock`` on ``<checkpoint>.lock`` (0600, never opened through a
link) from before it opens the checkpoint until it has closed it. The OS drops the lock
when the process ends, however it ends, so a killed import never blocks the next one.

The second import waits for the first (a note, then a look every second through the
clock, so Ctrl-C stops it), or, told not to wait, raises :class:`~etl.errors.Busy`
(exit 75) having sent nothing. The lock file holds the holder's pid, for the message; it
is left in place (removing it would let a third run lock a different file).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import Busy
from ..state.files import open_private

log = logging.getLogger("etl.lock")

POLL_SECONDS = 1.0

# Locks this thread holds: taking one again (the CLI around the library's run_import) is a
# no-op, not a wait for itself. Another thread or process still waits.
_held = threading.local()


def lock_path(checkpoint: Path | str) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".lock")


def checkpoint_lock(checkpoint: Path | str, *, clock, wait: bool = True):
    """Hold the lock of ``checkpoint``'s import for the ``with`` block."""
    return held_lock(lock_path(checkpoint), clock=clock, wait=wait, what="import of this file")


def export_lock(account_dir: Path | str, *, clock, wait: bool = True):
    """Hold the account's export lock for the ``with`` block."""
    return held_lock(Path(account_dir) / "export.lock", clock=clock, wait=wait, what="export of this account")


@contextmanager
def held_lock(path: Path, *, clock, wait: bool, what: str) -> Iterator[Path]:
    """``fcntl.flock`` on ``path`` (0600, never through a link) for the ``with`` block;
    waits for the holder (a note, then a look every second through the clock) or, told
    not to, raises :class:`~etl.errors.Busy`. Re-entrant within one thread."""
    held: set = _held.__dict__.setdefault("paths", set())
    key = os.path.abspath(path)
    if key in held:
        yield path
        return
    fd = open_private(path)                     # 0600, O_NOFOLLOW
    try:
        noted = False
        while not _try_lock(fd):
            holder = _holder(fd)
            if not wait:
                raise Busy(f"another {what} is running ({holder}; lock {path}); "
                           "nothing was sent (--no-wait-for-others); run the same command again "
                           "when it has finished")
            if not noted:
                log.info("another %s is running (%s): waiting for it to finish (Ctrl-C stops)", what, holder)
                noted = True
            clock.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held.add(key)
        try:
            yield path
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
