"""The file formats the codec reads and writes (no imports: the CLI's ``--format``
choices use it without loading pandas)."""

FORMATS = ("csv", "parquet", "xlsx")
