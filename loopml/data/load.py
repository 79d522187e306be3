"""Read CSV or Parquet from a path or an ``s3://`` URI (awswrangler on S3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loopml.data.validate import DataError

FORMATS = (".csv", ".parquet", ".pq")


def file_format(uri: str) -> str:
    suffix = next((s for s in FORMATS if uri.lower().endswith(s)), None)
    if suffix is None:
        raise DataError(f"{uri}: unsupported file type; use one of {', '.join(FORMATS)}")
    return "csv" if suffix == ".csv" else "parquet"


def load_frame(uri: str) -> pd.DataFrame:
    fmt = file_format(uri)
    try:
        if uri.startswith("s3://"):
            import awswrangler as wr

            return wr.s3.read_csv(uri) if fmt == "csv" else wr.s3.read_parquet(uri)
        if not Path(uri).is_file():
            raise DataError(f"{uri}: no such file")
        return pd.read_csv(uri) if fmt == "csv" else pd.read_parquet(uri)
    except DataError:
        raise
    except Exception as err:  # a corrupt or unreachable file: say which, keep the cause
        raise DataError(f"{uri}: could not read {fmt}: {type(err).__name__}: {err}") from err
