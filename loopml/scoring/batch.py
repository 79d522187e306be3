"""Stage 4, batch scoring: score new data with the champion, one date partition at a time.

New data is read in bounded batches and scored into local scratch files by date; only when every row
has been read and validated does the run write one object per date and publish them all at once through
the predictions manifest (:mod:`loopml.scoring.manifest`). A run commits all its dates or none, a date's
existing rows are merged by id (never silently truncated), and a killed run leaves nothing readers see.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.data import validate
from loopml.data.features import prepare
from loopml.data.load import Source, iter_frames, sources
from loopml.data.validate import DataError, canonical_ids
from loopml.modeling.evaluate import with_predictions
from loopml.registry.registry import ModelVersion, Registry
from loopml.scoring.manifest import commit, new_run_id, prune
from loopml.serving.predictor import MISSING, OnnxPredictor, Predictor, Schema
from loopml.serving.server import load_predictor
from loopml.spec import ProblemSpec
from loopml.storage import Store

log = logging.getLogger("loopml.scoring")

BATCH_ROWS = 200_000


def column_feeds(X: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray]:
    """ONNX inputs from a validated (or prepared) frame: one (n, 1) column per feature, no per-row work.
    Missing categories get the same marker as :func:`loopml.data.features.prepare` gives them."""
    def feed(name: str, kind: str) -> np.ndarray:
        col = X[name]
        if kind == "numeric":
            return col.to_numpy(np.float32, na_value=np.nan).reshape(-1, 1)
        return col.fillna(MISSING).to_numpy(object).reshape(-1, 1)

    return {n: feed(n, k) for n, k in schema.features}


def predict_frame(predictor: Predictor, df: pd.DataFrame, spec: ProblemSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Column-wise prediction: ONNX gets whole columns, scikit-learn gets a DataFrame."""
    classes = list(predictor.schema.classes) if predictor.schema.classes else None
    if isinstance(predictor, OnnxPredictor):  # straight from the validated columns: no prepared copy
        values, proba = predictor.raw(column_feeds(df, predictor.schema))
        if classes is None:
            return values, None
        return np.asarray(classes)[proba.argmax(axis=1)], proba
    X = prepare(df, spec)
    if spec.is_classifier:
        proba = predictor.pipeline.predict_proba(X)
        values = proba.argmax(axis=1)
    else:
        return predictor.pipeline.predict(X), None
    if classes is None:
        return values, None
    return np.asarray(classes)[proba.argmax(axis=1)], proba


class NothingToScore(DataError):
    """No rows of the new data fall in the range: the same answer for every input format (an empty CSV,
    a header-only CSV, a 0-row Parquet, no partition files, or rows only outside the range)."""


@dataclass
class ScoreResult:
    """What a score run committed: the champion's version, the rows it scored per date, its run id, and
    the rows each date holds after the merge."""

    version: int
    partitions: dict[str, int]  # date -> rows this run scored
    run_id: str = ""
    committed: dict[str, int] = field(default_factory=dict)  # date -> rows the date holds after the merge

    @property
    def rows(self) -> int:
        """Rows this run scored, every date together."""
        return sum(self.partitions.values())


def _check_request(spec: ProblemSpec, start: date, end: date, files: list[Source]) -> None:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if not spec.timestamp and start != end and any(f.day is None for f in files):
        # without a timestamp, a file's rows belong to the date being scored (their ingestion date)
        raise ValueError("timestamp: the spec has none, so one file is scored as one ingestion date; "
                         "score one date at a time (--start only), or give data.new as date partitions or a {date} template")


def _row_days(batch: pd.DataFrame, spec: ProblemSpec, day: date | None, start: date,
              end: date) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows that belong to [start, end] and each one's date as a day number (datetime64[D] as int):
    its timestamp's date, or, without a timestamp, the partition's date or the date being scored
    (ingestion date). Day numbers, not strings: grouping a million rows by an int is cheap."""
    if not spec.timestamp:
        return batch, np.full(len(batch), np.datetime64(day or start, "D").astype(np.int64))
    days = batch[spec.timestamp].to_numpy("datetime64[ns]").astype("datetime64[D]")
    keep = (days >= np.datetime64(start, "D")) & (days <= np.datetime64(end, "D"))
    if keep.all():
        return batch, days.astype(np.int64)
    return batch[keep], days[keep].astype(np.int64)


def _score_batch(predictor: Predictor, batch: pd.DataFrame, spec: ProblemSpec, version: int) -> pd.DataFrame:
    pred, proba = predict_frame(predictor, batch, spec)
    classes = list(predictor.schema.classes or []) or None
    scored = with_predictions(batch, spec, pred, proba, classes)
    scored["model_version"] = version
    if spec.id:
        scored[spec.id] = canonical_ids(scored[spec.id])
    return scored


@dataclass
class Scratch:
    """Scored rows spilled to local files by date, before anything is committed. Arrow IPC files, not
    Parquet: they are read back once, on this machine, so encoding them would only cost time."""

    folder: Path
    paths: dict[str, list[Path]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def spill(self, scored: pd.DataFrame, days: np.ndarray, tag: str) -> None:
        """Append a batch's scored rows to one file per date (``days``: each row's date, as numpy days)."""
        table = pa.Table.from_pandas(scored, preserve_index=False)  # one conversion per batch
        order = np.argsort(days, kind="stable")
        uniques, starts = np.unique(days[order], return_index=True)
        for day_no, lo, hi in zip(uniques, starts, [*starts[1:], len(order)], strict=True):
            day = str(np.datetime64(int(day_no), "D"))
            path = self.folder / f"{day}-{tag}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table.take(order[lo:hi]))
            self.paths.setdefault(day, []).append(path)
            self.rows[day] = self.rows.get(day, 0) + int(hi - lo)


def _load_spilled(paths: list[Path], scored_at: str) -> pa.Table:
    tables = []
    for path in paths:
        with pa.OSFile(str(path), "rb") as source:  # read into memory: the file goes with the scratch folder
            tables.append(pa.ipc.open_file(source).read_all())
    table = pa.concat_tables(tables, promote_options="permissive")  # e.g. a column all-null in one batch
    return table.append_column("scored_at", pa.repeat(pa.scalar(scored_at, pa.string()), len(table)))


def _score_to_scratch(files: list[Source], predictor: Predictor, spec: ProblemSpec, version: int, start: date,
                      end: date, batch_rows: int, scratch: Scratch, say: Callable[[str], None]) -> None:
    """Pass 1: validate and score batch by batch, spilling each date's rows to local scratch files, so
    memory holds one batch, and nothing reaches the store before every row has been read and validated."""
    seen = 0
    for f_no, src in enumerate(files):
        for b_no, batch in enumerate(iter_frames(src.uri, batch_rows)):
            if batch.empty:
                continue
            where = f"{src.uri} (rows {batch.index[0]}-{batch.index[-1]})"
            batch, days = _row_days(validate(batch, spec, require_target=False, source=where), spec, src.day, start, end)
            if batch.empty:
                continue
            seen += len(batch)
            scratch.spill(_score_batch(predictor, batch, spec, version), days, f"{f_no:05d}-{b_no:06d}")
            say(f"{src.uri} batch {b_no}: {seen} rows in range scored so far, {len(scratch.rows)} dates")


def _tidy(store: Store, say: Callable[[str], None]) -> None:
    """Delete stale objects no reader follows. Best effort: the run has committed, and a failure here
    only leaves garbage for the next run to delete, so it must not turn a committed run into an error."""
    try:
        removed = prune(store)
    except Exception as err:  # any store failure: the commit stands
        say(f"predictions committed; pruning stale objects failed and is left to the next run: {err}")
        return
    if removed:
        say(f"pruned {len(removed)} stale prediction object(s)")


def score_range(store: Store, spec: ProblemSpec, start: date, end: date, uri: str | None = None,
                version: ModelVersion | None = None, batch_rows: int = BATCH_ROWS,
                progress: Callable[[str], None] | None = None, *, replace: bool = False, run_id: str | None = None,
                on_object: Callable[[str], None] | None = None) -> ScoreResult:
    """Score every row of the new data that falls in [start, end] (dates, inclusive), then commit all its
    dates at once (:mod:`loopml.scoring.manifest`): a date's existing rows are merged by the spec's id; without
    an id, a date that already holds predictions is refused unless ``replace``."""
    uri = uri or spec.data.new
    if not uri:
        raise ValueError("data.new: the spec does not say where the new data to score lives")
    files = sources(uri, start, end)
    _check_request(spec, start, end, files)
    registry = Registry(store)
    version = version or registry.resolve()
    predictor = load_predictor(registry, version)
    run_id = run_id or new_run_id()
    say = progress or log.info
    with tempfile.TemporaryDirectory(prefix="loopml-score-") as folder:
        scratch = Scratch(Path(folder))
        _score_to_scratch(files, predictor, spec, version.number, start, end, batch_rows, scratch, say)
        if not scratch.rows:
            raise NothingToScore(f"{uri}: no rows to score between {start} and {end} in {len(files)} file(s); "
                                 "nothing was committed")
        scored_at = datetime.now(UTC).isoformat()
        staged = {day: partial(_load_spilled, paths, scored_at) for day, paths in scratch.paths.items()}
        parts = commit(store, run_id, staged, spec.id, replace=replace, on_object=on_object)
    _tidy(store, say)
    return ScoreResult(version.number, dict(sorted(scratch.rows.items())), run_id, {p.date: p.rows for p in parts})
