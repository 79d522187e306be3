"""Monitoring inputs (loopml.scoring.labels): late labels and the API's prediction log, read back from the store."""

import json

import pandas as pd

from loopml.scoring.labels import attach_labels, load_labels, read_prediction_log, scored_window
from loopml.serving.prediction_log import PredictionLog
from loopml.spec import parse_spec
from loopml.storage import MemoryStore

SPEC = parse_spec({
    "name": "t", "task": "binary", "target": "y", "timestamp": "ts", "id": "id",
    "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
    "metric": {"name": "roc_auc", "threshold": 0.5}, "data": {"train": "t.csv"},
})


def _log(store, pid, when, c, p1):
    plog = PredictionLog(store, flush_seconds=3600)
    plog.add([{"id": pid, "time": when, "version": 3, "features": {"x": 1.5, "c": c},
               "prediction": 1.0 if p1 > 0.5 else 0.0, "probabilities": {"0.0": 1 - p1, "1.0": p1}}])
    plog.flush()


def test_prediction_log_reads_back_like_batch_predictions():
    store = MemoryStore()
    _log(store, "p-20260102-a", "2026-01-02T10:00:00+00:00", True, 0.8)
    _log(store, "p-20260105-b", "2026-01-05T10:00:00+00:00", "x", 0.3)
    frame = read_prediction_log(store, SPEC, pd.Timestamp("2026-01-01").date(), pd.Timestamp("2026-01-03").date())
    assert frame["id"].tolist() == ["p-20260102-a"]  # the window is respected
    row = frame.iloc[0]
    assert row["c"] == "True" and row["x"] == 1.5 and row["y_pred_proba"] == 0.8 and row["model_version"] == 3
    assert str(row["ts"]) == "2026-01-02 10:00:00"


def test_feedback_labels_join_the_logged_predictions():
    store = MemoryStore()
    _log(store, "p-20260102-a", "2026-01-02T10:00:00+00:00", "x", 0.8)
    store.put("feedback/date=2026-01-03/f.json", json.dumps({"labels": [{"id": "p-20260102-a", "label": 1.0}]}).encode())
    assert load_labels(store, SPEC).to_dict("records") == [{"id": "p-20260102-a", "label": 1.0}]
    frame = attach_labels(scored_window(store, SPEC, None, None), load_labels(store, SPEC), SPEC)
    assert frame["y"].tolist() == [1.0]
