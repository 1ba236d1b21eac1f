"""The one way the tool opens its SQLite stores: owner-only, never through a link.

The stores use it: the request ledger (``etl.api.ledger``), the import's checkpoint
(``etl.importer.checkpoint``), what imports applied (``etl.importer.applied``), the
account's runs and their journals (``etl.importer.history``) and the diagnoses job's
progress (``etl.export.diagnoses``).

::

    conn = open_private_db(account_dir / "ledger.sqlite", wal=True, schema=_SCHEMA)

The pragmas, chosen once for all of them:

* ``isolation_level=None``: autocommit; a store that needs several statements in one
  transaction says ``BEGIN IMMEDIATE`` itself (the ledger's check-and-record), so no
  statement waits in an implicit transaction that Python's sqlite3 opened.
* a busy timeout of 30 s: another process holding the write lock is waited for, not an
  error (its transactions last milliseconds).
* ``wal=True`` (ledger, applied, history: every process of the account shares them, several at
  once; the export's kept pages, a commit a page): ``journal_mode=WAL`` lets readers go on
  while one process writes, a commit waits for no fsync, and ``synchronous=NORMAL`` is
  durable across a crash of the process (a ``kill -9``); only a power loss can drop the last
  transactions, which costs at most a few uncounted requests (or pages fetched again).
* ``wal=False`` (checkpoint, diagnoses: one run writes each at a time): the rollback
  journal with ``synchronous=FULL``. The checkpoint lives beside the user's spreadsheet,
  where ``-wal``/``-shm`` files would be litter, and each of its state changes must be on
  disk before the request it describes is sent.
* ``check_same_thread=False``: the ledger is shared by threads under its own lock; the
  other stores are used from one thread, where the flag changes nothing.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .files import ensure_private_dir, make_private_dirs, open_private

BUSY_TIMEOUT_SECONDS = 30.0


def connect(path: Path | str, *, wal: bool) -> sqlite3.Connection:
    """Connect to the database at ``path`` with the tool's pragmas; creates no file.

    For a file that exists already and may not be ours to change (a checkpoint being
    resumed is read before it is written). Anything new goes through :func:`open_private_db`.
    """
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                           check_same_thread=False)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def open_private_db(path: Path | str, *, wal: bool, schema: str, state_dir: bool = True,
                    exclusive: bool = False) -> sqlite3.Connection:
    """Create (if missing) and open the SQLite file ``path``, owner-only, and run ``schema``.

    The file is created 0600 before SQLite opens it by name, so its ``-journal``/``-wal``
    files inherit the mode; a symbolic link at ``path`` (dangling or not) is refused with
    :class:`~etl.errors.PathError` and its target is never touched.

    ``state_dir``: the folder is one of the state dir's own (made 0700 even if it
    existed); False for a folder the user chose (a checkpoint beside its input file),
    created 0700 when missing and otherwise left as it is. ``exclusive``: the file must
    not exist yet (``O_EXCL``): a file that appeared meanwhile is never overwritten.
    ``schema`` should be idempotent (``CREATE ... IF NOT EXISTS``).
    """
    path = Path(path)
    if state_dir:
        ensure_private_dir(path.parent)
    else:
        make_private_dirs(path.parent)
    os.close(open_private(path, os.O_RDWR | (os.O_EXCL if exclusive else 0)))
    conn = connect(path, wal=wal)
    try:
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn
