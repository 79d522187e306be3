"""A content fingerprint of a DataFrame: the data version recorded with every model."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def _canonical(col: pd.Series) -> tuple[str, pd.Series]:
    """One representation per kind of column, so the same content hashes the same whichever reader
    produced it (pandas gives numpy dtypes, awswrangler gives nullable ones: Int64, string, boolean)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return "number", col.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(col):
        ns = col.dt.tz_localize(None) if getattr(col.dt, "tz", None) is not None else col
        return "time", pd.Series(np.where(ns.isna(), np.iinfo(np.int64).min, ns.astype("datetime64[ns]").astype("int64")))
    return "text", col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))


def fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 over column names, kinds and row hashes: same content, same fingerprint."""
    h = hashlib.sha256()
    for name in df.columns:
        kind, values = _canonical(df[name].reset_index(drop=True))
        h.update(f"{name}\x00{kind}\x00".encode())
        h.update(pd.util.hash_pandas_object(values, index=False).values.tobytes())
    return h.hexdigest()
