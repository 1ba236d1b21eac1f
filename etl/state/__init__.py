"""What the tool keeps on disk, and how it writes it.

* :mod:`etl.state.files`: atomic, owner-only (0600) file writes, never through a link;
  folders the tool creates are 0700, a folder it did not create keeps its mode.
* :mod:`etl.state.sqlite`: :func:`~etl.state.sqlite.open_private_db`, the one way the
  tool opens its SQLite stores (ledger, checkpoint, applied, diagnoses).
* :mod:`etl.state.snapshots`: per-account snapshots of each export (the base of imports
  and the start of ``--incremental``), and the only watermark parser.

Nothing is imported here, so that ``etl.state.files`` stays cheap to import (no pandas).
"""
