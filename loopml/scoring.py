"""Stage 4, batch scoring: score new data with the champion, one date partition at a time.

New data is read in bounded batches; each date's predictions are written as one Parquet object
(``predictions/date=<D>/part.parquet``), so re-running a date replaces it in one PUT and never
duplicates rows, and a killed run leaves no partial partition behind.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.data import validate
from loopml.data.features import prepare
from loopml.data.load import file_format
from loopml.data.validate import DataError
from loopml.modeling.evaluate import with_predictions
from loopml.predictor import OnnxPredictor, Predictor, Schema
from loopml.registry import ModelVersion, Registry
from loopml.serving import load_predictor
from loopml.spec import ProblemSpec
from loopml.storage import Store
from loopml.storage.layout import PREDICTIONS, partition_dates, partition_key

log = logging.getLogger("loopml.scoring")

BATCH_ROWS = 200_000


def iter_frames(uri: str, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """Read CSV or Parquet in batches of at most ``batch_rows`` (bounded memory)."""
    fmt = file_format(uri)
    if uri.startswith("s3://"):
        import awswrangler as wr

        chunks = wr.s3.read_csv(uri, chunksize=batch_rows) if fmt == "csv" else wr.s3.read_parquet(uri, chunked=batch_rows)
        yield from chunks
        return
    if not Path(uri).is_file():
        raise DataError(f"{uri}: no such file")
    if fmt == "csv":
        yield from pd.read_csv(uri, chunksize=batch_rows)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(uri).iter_batches(batch_size=batch_rows):
        yield batch.to_pandas()


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: expected a date like 2019-01-31, got {value!r}") from None


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def column_feeds(X: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """ONNX inputs from a prepared frame: one (n, 1) column per feature, no per-row work."""
    return {n: X[n].to_numpy(np.float32 if k == "numeric" else object).reshape(-1, 1) for n, k in schema.features}


def predict_frame(predictor: Predictor, df: pd.DataFrame, spec: ProblemSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Column-wise prediction: ONNX gets whole columns, scikit-learn gets a DataFrame."""
    X = prepare(df, spec)
    classes = list(predictor.schema.classes) if predictor.schema.classes else None
    if isinstance(predictor, OnnxPredictor):
        values, proba = predictor.raw(column_feeds(X, predictor.schema))
    elif spec.is_classifier:
        proba = predictor.pipeline.predict_proba(X)
        values = proba.argmax(axis=1)
    else:
        return predictor.pipeline.predict(X), None
    if classes is None:
        return values, None
    return np.asarray(classes)[proba.argmax(axis=1)], proba


@dataclass
class ScoreResult:
    version: int
    partitions: dict[str, int]  # date -> rows written

    @property
    def rows(self) -> int:
        return sum(self.partitions.values())


def score_range(store: Store, spec: ProblemSpec, start: date, end: date, uri: str | None = None,
                version: ModelVersion | None = None, batch_rows: int = BATCH_ROWS,
                progress: Callable[[str], None] | None = None) -> ScoreResult:
    """Score every row of the new data whose timestamp falls in [start, end] (dates, inclusive)."""
    if not spec.timestamp:
        raise ValueError("timestamp: batch scoring partitions by date and needs the spec's timestamp column")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    uri = uri or spec.data.new
    if not uri:
        raise ValueError("data.new: the spec does not say where the new data to score lives")
    registry = Registry(store)
    version = version or registry.resolve()
    predictor = load_predictor(registry, version)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    classes = list(predictor.schema.classes or []) or None
    seen = 0
    # Pass 1 scores batch by batch and spills each date's rows to local scratch files; pass 2 writes
    # one partition per date. Memory holds one batch or one date, never the whole range, and nothing
    # reaches the store until every batch has been read and validated.
    with tempfile.TemporaryDirectory(prefix="loopml-score-") as scratch:
        spilled: dict[str, list[Path]] = {}
        for i, batch in enumerate(iter_frames(uri, batch_rows)):
            batch = validate(batch, spec, require_target=False, source=f"{uri} (batch {i})")
            ts = batch[spec.timestamp]
            batch = batch[(ts >= lo) & (ts < hi)]
            seen += len(batch)
            if batch.empty:
                continue
            pred, proba = predict_frame(predictor, batch, spec)
            scored = with_predictions(batch, spec, pred, proba, classes)
            scored["model_version"] = version.number
            for day, part in scored.groupby(scored[spec.timestamp].dt.date.astype(str)):
                path = Path(scratch) / f"{day}-{i:06d}.parquet"
                part.to_parquet(path, index=False)
                spilled.setdefault(day, []).append(path)
            (progress or log.info)(f"batch {i}: {seen} rows in range scored so far, {len(spilled)} dates")
        written: dict[str, int] = {}
        scored_at = datetime.now(UTC).isoformat()
        for day in sorted(spilled):
            frame = pd.concat([pd.read_parquet(p) for p in spilled[day]], ignore_index=True)
            frame["scored_at"] = scored_at
            if spec.id:
                frame[spec.id] = frame[spec.id].astype(str)
            store.write_parquet(partition_key(PREDICTIONS, day), frame)
            written[day] = len(frame)
    return ScoreResult(version.number, written)


def read_predictions(store: Store, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    days = partition_dates(store, PREDICTIONS, start, end)
    return store.read_parquet_many([partition_key(PREDICTIONS, d) for d in days])
