"""Read CSV or Parquet from a path or an ``s3://`` URI (awswrangler on S3).

New data to score (``data.new``) may be one file, a folder or prefix of date partitions
(``<uri>/date=YYYY-MM-DD/…``), or a path template with ``{date}`` (``s3://b/new/{date}.csv``);
:func:`sources` names only the files of the dates a run scores, so a daily run never reads history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from loopml.data.validate import DataError

FORMATS = (".csv", ".parquet", ".pq")


def file_format(uri: str) -> str:
    """``csv`` or ``parquet``, from the URI's suffix; :class:`DataError` for any other file type."""
    suffix = next((s for s in FORMATS if uri.lower().endswith(s)), None)
    if suffix is None:
        raise DataError(f"{uri}: unsupported file type; use one of {', '.join(FORMATS)}")
    return "csv" if suffix == ".csv" else "parquet"


def load_frame(uri: str) -> pd.DataFrame:
    """One CSV or Parquet file, local or on S3; :class:`DataError` naming the file when it cannot be read."""
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


@dataclass(frozen=True)
class Source:
    """One file to read; ``day`` is its partition's date when the layout names one."""

    uri: str
    day: date | None = None


def is_file_uri(uri: str) -> bool:
    """True when ``uri`` names one file (by its suffix) rather than a folder of partitions."""
    return any(uri.lower().endswith(s) for s in FORMATS)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _data_files(folder: str) -> list[str]:
    """CSV/Parquet files under a folder or prefix, sorted; markers and hidden files (_SUCCESS, .tmp) skipped."""
    if folder.startswith("s3://"):
        import awswrangler as wr

        found = wr.s3.list_objects(folder.rstrip("/") + "/")
    else:
        root = Path(folder)
        found = [str(p) for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return sorted(f for f in found if is_file_uri(f) and not f.rsplit("/", 1)[-1].startswith((".", "_")))


def _file_exists(uri: str) -> bool:
    if uri.startswith("s3://"):
        import awswrangler as wr

        return bool(wr.s3.does_object_exist(uri))
    return Path(uri).is_file()


def sources(uri: str, start: date, end: date) -> list[Source]:
    """The files holding new data for [start, end]: one file as is; for a ``{date}`` template or a folder
    of ``date=`` partitions, only the dates in the range (a date with no file has no data)."""
    if "{date}" in uri:
        found = []
        for day in _days(start, end):
            one = uri.replace("{date}", day.isoformat())
            files = ([one] if _file_exists(one) else []) if is_file_uri(one) else _data_files(one)
            found.extend(Source(f, day) for f in files)
        return found
    if is_file_uri(uri):
        return [Source(uri)]
    if not uri.startswith("s3://") and not Path(uri).is_dir():
        raise DataError(f"{uri}: no such file or folder")
    base = uri.rstrip("/")
    return [Source(f, day) for day in _days(start, end) for f in _data_files(f"{base}/date={day.isoformat()}")]


def iter_frames(uri: str, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Read CSV or Parquet in batches of at most ``batch_rows`` rows (bounded memory). The index counts
    rows through the whole file, so an error can name the row."""
    fmt = file_format(uri)
    offset = 0
    for batch in _raw_batches(uri, fmt, batch_rows):
        batch.index = pd.RangeIndex(offset, offset + len(batch))
        offset += len(batch)
        yield batch


def _raw_batches(uri: str, fmt: str, batch_rows: int) -> Iterator[pd.DataFrame]:
    if uri.startswith("s3://"):
        import awswrangler as wr

        if fmt == "csv":
            yield from wr.s3.read_csv(uri, chunksize=batch_rows)
        else:
            yield from wr.s3.read_parquet(uri, chunked=batch_rows)
        return
    if not Path(uri).is_file():
        raise DataError(f"{uri}: no such file")
    if fmt == "csv":
        yield from pd.read_csv(uri, chunksize=batch_rows)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(uri).iter_batches(batch_size=batch_rows):
        yield batch.to_pandas()
