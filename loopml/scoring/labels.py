"""Late labels and logged predictions read back from the store: what monitoring and retraining join.

Three sources end up beside each scored row: the spec's labels dataset, labels posted to the API's
``/feedback``, and the API's own prediction log (live traffic, monitored like batch predictions).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from loopml.data import load_frame
from loopml.scoring.manifest import read_predictions
from loopml.serving.records import FeedbackRecord, LoggedPrediction
from loopml.spec import ProblemSpec
from loopml.storage import Store
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG, partition_dates, partition_prefix
from loopml.storage.records import read, read_lines

__all__ = ["load_labels", "attach_labels", "read_prediction_log", "scored_window", "labelled_window"]


def load_labels(store: Store, spec: ProblemSpec, uri: str | None = None) -> pd.DataFrame:
    """Late labels by id: the spec's labels dataset plus what arrived through the API's /feedback."""
    if not spec.id:
        return pd.DataFrame(columns=["id", "label"])
    frames = []
    uri = uri if uri is not None else spec.data.labels
    if uri:
        raw = load_frame(uri)
        missing = [c for c in (spec.id, spec.target) if c not in raw.columns]
        if missing:
            raise ValueError(f"{uri}: labels need columns {missing}")
        frames.append(pd.DataFrame({"id": raw[spec.id].astype(str), "label": raw[spec.target]}))
    for key in store.list(FEEDBACK + "/"):
        body = read(store, key, FeedbackRecord)
        frames.append(pd.DataFrame([{"id": x.id, "label": x.label} for x in body.labels]))
    if not frames:
        return pd.DataFrame(columns=["id", "label"])
    # a later label for the same id wins: corrections are allowed
    return pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last")


def attach_labels(predictions: pd.DataFrame, labels: pd.DataFrame, spec: ProblemSpec) -> pd.DataFrame:
    """The predictions with the spec's target column filled from ``labels`` (missing where none arrived)."""
    if predictions.empty or not spec.id or labels.empty:
        return predictions
    out = predictions.drop(columns=[spec.target], errors="ignore")
    return out.merge(labels.rename(columns={"id": spec.id, "label": spec.target}), on=spec.id, how="left")


def read_prediction_log(store: Store, spec: ProblemSpec, start: date | None, end: date | None) -> pd.DataFrame:
    """The API's logged predictions in the window, shaped like batch predictions so that live traffic
    is monitored with the same NannyML run (the log's id and time stand in for the spec's columns)."""
    rows = []
    for day in partition_dates(store, PREDICTION_LOG, start, end):
        for key in store.list(partition_prefix(PREDICTION_LOG, day)):
            rows += [_log_row(r, spec) for r in read_lines(store, key, LoggedPrediction)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for col in spec.categorical:  # JSON may carry true/1 where the training data had "True"/"1"
        frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    for col in spec.numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if spec.timestamp:
        frame[spec.timestamp] = pd.to_datetime(frame[spec.timestamp], utc=True).dt.tz_localize(None)
    return frame


def _log_row(r: LoggedPrediction, spec: ProblemSpec) -> dict[str, Any]:
    row = {**r.features, "y_pred": r.prediction, "model_version": r.version}
    probs = r.probabilities or {}
    if len(probs) == 2:
        row["y_pred_proba"] = list(probs.values())[-1]  # keys are in class order: last = positive
    else:
        row.update({f"y_pred_proba_{c}": p for c, p in probs.items()})
    if spec.id:
        row[spec.id] = r.id
    if spec.timestamp:
        row[spec.timestamp] = r.time
    if r.latency_ms is not None:  # monitoring's latency per chunk and cost per day
        row["latency_ms"], row["request_rows"] = r.latency_ms, r.request_rows
    return row


def scored_window(store: Store, spec: ProblemSpec, start: date | None, end: date | None) -> pd.DataFrame:
    """Batch predictions and the API's logged predictions in the window, without labels."""
    frames = [f for f in (read_predictions(store, start, end), read_prediction_log(store, spec, start, end)) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def labelled_window(store: Store, spec: ProblemSpec, start: date | None, end: date | None) -> pd.DataFrame:
    """Batch-scored rows in the window whose labels have arrived: features and the true target."""
    data = attach_labels(read_predictions(store, start, end), load_labels(store, spec), spec)
    if data.empty or spec.target not in data.columns:
        return pd.DataFrame()
    return data[data[spec.target].notna()].reset_index(drop=True)
