"""Checks :mod:`loopml.api` runs before it starts a flow, for the CLI and Python callers alike: the data can
be read and has the columns the spec needs, the store is reachable (and writable, to train), a champion
exists (to score or monitor).

A flow takes 10-20 s to start and fails deep inside a task; these checks fail in seconds, with one
line that names what is wrong and where, and write nothing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from loopml.spec import ProblemSpec

PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 4096


class PreflightError(ValueError):
    """The spec, the data or the store cannot work; the message names which and where."""


def required_columns(spec: ProblemSpec, require_target: bool) -> list[str]:
    """The columns a data file must have: the target (to train), the features, the timestamp and the id."""
    cols = [*([spec.target] if require_target else []), *spec.feature_names]
    return cols + [c for c in (spec.timestamp, spec.id) if c]


def _describe_missing(spec: ProblemSpec, missing: list[str]) -> str:
    roles = {spec.target: "the target", spec.timestamp: "the timestamp", spec.id: "the id"}
    return ", ".join(f"{c!r} ({roles[c]})" if c in roles else repr(c) for c in missing)


def _sniff(uri: str, head: bytes, tail: bytes, fmt: str) -> None:
    """A Parquet file starts and ends with PAR1; text in a .parquet file is most often a renamed CSV."""
    if fmt != "parquet" or (head.startswith(PARQUET_MAGIC) and tail.endswith(PARQUET_MAGIC)):
        return
    first = head.split(b"\n", 1)[0]
    looks_csv = b"," in first and all(32 <= b < 127 or b in (9, 13) for b in first)
    hint = ("; it looks like CSV text: name it .csv" if looks_csv else "")
    raise PreflightError(f"{uri}: not a Parquet file (no PAR1 marker){hint}")


def _local_bytes(path: Path) -> tuple[int, bytes, bytes]:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
        f.seek(max(0, size - 4))
        tail = f.read(4)
    return size, head, tail


def _s3_bytes(uri: str) -> tuple[int, bytes, bytes]:
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    try:
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if size == 0:
            return 0, b"", b""
        head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SNIFF_BYTES - 1}")["Body"].read()
        tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-4")["Body"].read()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise PreflightError(f"{uri}: no such object") from None
        if code == "NoSuchBucket":
            raise PreflightError(f"{uri}: no such bucket {bucket!r}") from None
        raise PreflightError(f"{uri}: cannot be read ({code or err})") from None
    return size, head, tail


def _columns_and_rows(uri: str, fmt: str) -> tuple[list[str], int | None]:
    """Column names, and the row count where it is cheap to know (a sample for CSV: 0 means none)."""
    import pandas as pd

    try:
        if fmt == "parquet":
            if uri.startswith("s3://"):
                import awswrangler as wr

                columns, _ = wr.s3.read_parquet_metadata(uri)
                return list(columns), None
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(uri)
            return list(meta.schema_arrow.names), meta.metadata.num_rows
        if uri.startswith("s3://"):
            import awswrangler as wr

            sample = wr.s3.read_csv(uri, nrows=100)
        else:
            sample = pd.read_csv(uri, nrows=100)
        return [str(c) for c in sample.columns], len(sample)
    except pd.errors.EmptyDataError:
        raise PreflightError(f"{uri}: empty file (no header, no rows)") from None
    except PreflightError:
        raise
    except Exception as err:  # a damaged file: say which, in one line
        raise PreflightError(f"{uri}: cannot be read as {fmt}: {type(err).__name__}: {err}") from None


def check_data(uri: str, spec: ProblemSpec, require_target: bool = True) -> None:
    """The file exists, is not empty, is what its name says, has rows and the columns the spec needs."""
    from loopml.data.load import file_format

    fmt = file_format(uri)
    if uri.startswith("s3://"):
        size, head, tail = _s3_bytes(uri)
    else:
        path = Path(uri)
        if not path.is_file():
            raise PreflightError(f"{uri}: no such file")
        size, head, tail = _local_bytes(path)
    if size == 0:
        raise PreflightError(f"{uri}: empty file (0 bytes)")
    _sniff(uri, head, tail, fmt)
    columns, rows = _columns_and_rows(uri, fmt)
    missing = [c for c in required_columns(spec, require_target) if c not in columns]
    if missing:
        raise PreflightError(f"{uri}: missing column{'s' if len(missing) > 1 else ''} {_describe_missing(spec, missing)}"
                             f" (the file has {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})")
    if rows == 0:
        raise PreflightError(f"{uri}: no rows (a header only)")


def is_plain_file(uri: str) -> bool:
    """A single CSV/Parquet object (not a folder, a prefix or a ``{date}`` template), which can be checked here."""
    return "{" not in uri and not uri.endswith("/") and uri.lower().endswith((".csv", ".parquet", ".pq"))


def check_store_writable(store_uri: str) -> None:
    """Training ends by writing to the store: check it can, before an hour of tuning. Nothing is left
    behind: a folder is checked with access(2), S3 with an object written and deleted at once."""
    if "://" not in store_uri:
        path = Path(store_uri).resolve()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise PreflightError(f"store {store_uri}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PreflightError(f"store {store_uri}: {existing} is not writable")
        return
    from loopml.storage import from_uri
    from loopml.storage.layout import tmp_key

    store = from_uri(store_uri)
    key = tmp_key(f"preflight-{uuid.uuid4().hex}")
    try:
        store.put(key, b"")
        store.delete(key)
    except Exception as err:
        raise PreflightError(f"store {store_uri} is not reachable or not writable: {type(err).__name__}: {err}") from None


def check_champion(store_uri: str) -> None:
    """Scoring and monitoring need a champion: say so before a flow starts."""
    from loopml.registry.registry import CHAMPION, Registry
    from loopml.storage import from_uri

    try:
        champion = Registry(from_uri(store_uri)).alias(CHAMPION)
    except Exception as err:
        raise PreflightError(f"store {store_uri} cannot be read: {type(err).__name__}: {err}") from None
    if champion is None:
        raise PreflightError(f"no champion in store {store_uri}: train one (loopml train) or promote a version "
                             "(loopml promote N --why ...)")


def check_train(spec: ProblemSpec, store_uri: str, data_uri: str | None = None) -> None:
    """Before TrainFlow: the training data (``data_uri`` or the spec's) is readable and complete, and the
    store is writable."""
    check_data(data_uri or spec.data.train, spec, require_target=True)
    check_store_writable(store_uri)


def check_score(spec: ProblemSpec, store_uri: str, data_uri: str | None = None) -> None:
    """Before ScoreFlow: there is new data (a single file is checked like training data, without the
    target), and a champion to score it with."""
    uri = data_uri or spec.data.new
    if not uri:
        raise PreflightError("data.new: the spec names no new data to score (or pass --data)")
    if is_plain_file(uri):
        check_data(uri, spec, require_target=False)
    check_champion(store_uri)


def check_monitor(spec: ProblemSpec, store_uri: str) -> None:
    """Before MonitorFlow or a cycle: a champion to monitor."""
    check_champion(store_uri)
