"""Pandera schemas of the tables: ``schemas.clients`` and ``schemas.diagnoses``."""
from __future__ import annotations

import pandas as pd
from pandera.errors import SchemaErrors


def failure_cases(schema, df: pd.DataFrame) -> pd.DataFrame | None:
    """Validate lazily; None when ``df`` passes, else pandera's failure cases (one per problem)."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        return exc.failure_cases
    return None
