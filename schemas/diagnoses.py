"""The diagnoses table schema (export only): ClientId, Code, Description, Date, EndDate, NoteId.

Kinds come from ``etl.fields.DIAGNOSIS_KINDS``; Date/EndDate are UTC instants (the API
sends ISO text such as ``2021-12-08T23:00:00Z``). Extra columns are allowed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from etl.codec.model import ERROR, Problem

from . import failure_cases

# Text columns are fields.TEXT_DTYPE (string[pyarrow]) on every supported pandas.
_ARROW_TEXT = {"storage": "pyarrow"}


class DiagnosesSchema(pa.DataFrameModel):
    """One row a diagnosis of a client."""

    ClientId: Series[pd.Int64Dtype] = pa.Field(nullable=False, required=True)
    Code: Series[pd.StringDtype] = pa.Field(nullable=True, required=False, dtype_kwargs=_ARROW_TEXT)
    Description: Series[pd.StringDtype] = pa.Field(nullable=True, required=False, dtype_kwargs=_ARROW_TEXT)
    Date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, required=False,
                                               dtype_kwargs={"unit": "ns", "tz": "UTC"})
    EndDate: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, required=False,
                                                  dtype_kwargs={"unit": "ns", "tz": "UTC"})
    NoteId: Series[pd.StringDtype] = pa.Field(nullable=True, required=False, dtype_kwargs=_ARROW_TEXT)

    @pa.check("ClientId", name="client_id_positive")
    def _client_id_positive(cls, s: pd.Series) -> pd.Series:
        return s > 0

    class Config:
        strict = False
        coerce = False


def validate_diagnoses(frame: pd.DataFrame, *, row_numbers=None) -> list[Problem]:
    """Errors of a typed diagnoses frame as Problems with spreadsheet rows."""
    df = frame.reset_index(drop=True)
    rows = np.arange(len(df), dtype=np.int64) + 2 if row_numbers is None else np.asarray(row_numbers)
    cases = failure_cases(DiagnosesSchema, df)
    if cases is None:
        return []
    problems = []
    for case in cases.itertuples(index=False):
        index = case.index
        row = None if index is None or pd.isna(index) else int(rows[df.index.get_loc(index)])
        check = "dtype" if str(case.check).startswith("dtype(") else str(case.check)
        column = None if pd.isna(case.column) else str(case.column)
        message = {"client_id_positive": "ClientId must be a positive whole number",
                   "not_nullable": "the cell must not be empty",
                   "column_in_dataframe": "a required column is missing"}.get(check, check)
        value = None if case.failure_case is None or row is None else str(case.failure_case)
        problems.append(Problem(row, column, value, check, message, "", ERROR))
    return problems
