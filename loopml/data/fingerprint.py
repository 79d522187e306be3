"""A content fingerprint of a DataFrame: the data version recorded with every model."""

from __future__ import annotations

import hashlib

import pandas as pd


def fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 over column names, dtypes and row hashes: same content, same fingerprint."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest()
