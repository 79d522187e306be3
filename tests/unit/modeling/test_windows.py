"""Which rows a training run learns from: time windows (tz-aware too), tie-safe time splits, and the
refit of the selected model on train + validation while the test split stays held out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.modeling.split import split
from loopml.modeling.windows import load_training_data
from loopml.spec import parse_spec


@pytest.fixture
def frame(car_loan) -> pd.DataFrame:
    """400 rows from 2018-01-01 on, a few hours apart (timestamps as text, as in the files)."""
    return car_loan[0].head(400).copy()


def _spec(make_raw, tmp_path, df: pd.DataFrame, **retraining):
    path = tmp_path / "train.parquet"
    df.to_parquet(path, index=False)
    raw = make_raw()
    raw["data"] = {**raw["data"], "train": str(path)}
    raw["retraining"] = {**raw.get("retraining", {}), "window_days": None, **retraining}
    return parse_spec(raw)


@pytest.mark.parametrize("until", ["2018-01-02 12:00:00", "2018-01-02T12:00:00+00:00", "2018-01-02T13:00:00+01:00"])
def test_tz_aware_timestamps_with_until(make_raw, tmp_path, frame, until):
    aware = frame.assign(timestamp=pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC"))
    spec = _spec(make_raw, tmp_path, aware, window_days=1)
    data = load_training_data(spec, until=until)
    ts = data.frame["timestamp"]
    assert ts.dt.tz is None  # validation reads offsets as UTC and keeps naive UTC (loopml.data.validate)
    end = pd.Timestamp("2018-01-02 12:00:00")
    assert ts.max() <= end and ts.min() > end - pd.Timedelta(days=1)
    naive = aware.timestamp.dt.tz_localize(None)
    expected = aware[(naive <= end) & (naive > end - pd.Timedelta(days=1))]
    assert len(data.frame) == len(expected) > 5


def test_aware_until_against_naive_timestamps_is_read_as_utc(make_raw, tmp_path, frame):
    spec = _spec(make_raw, tmp_path, frame)
    data = load_training_data(spec, until="2018-01-03T13:00:00+01:00")
    assert len(data.frame) == int((pd.to_datetime(frame.timestamp) <= "2018-01-03 12:00:00").sum()) > 10


def test_until_without_window_days_keeps_the_earliest_row(make_raw, tmp_path, frame):
    spec = _spec(make_raw, tmp_path, frame)
    data = load_training_data(spec, until="2018-01-03 12:00:00")
    assert data.frame["id"].iloc[0] == frame["id"].iloc[0]  # the oldest row, 2018-01-01 00:00
    assert len(data.frame) == int((pd.to_datetime(frame.timestamp) <= "2018-01-03 12:00:00").sum()) > 10
    assert data.window == {"start": None, "end": "2018-01-03 12:00:00"}


def test_tied_timestamps_never_straddle_the_split(make_raw, frame):
    spec = parse_spec(make_raw())
    # ten rows per timestamp: every cut at 60% / 80% falls inside a run of equal timestamps
    tied = frame.head(403).assign(timestamp=pd.to_datetime(frame["timestamp"].head(403)).dt.floor("1D"))
    parts = split(tied, spec)
    assert sum(len(p) for p in parts) == len(tied)
    assert parts.train.timestamp.max() < parts.valid.timestamp.min()
    assert parts.valid.timestamp.max() < parts.test.timestamp.min()


def test_a_split_made_impossible_by_ties_says_so(make_raw, frame):
    spec = parse_spec(make_raw())
    same = frame.head(100).assign(timestamp=pd.Timestamp("2018-01-01"))
    with pytest.raises(ValueError, match="share a timestamp"):
        split(same, spec)


def test_the_served_model_is_refit_on_train_and_valid_while_test_stays_held_out(make_raw, tmp_path, frame):
    """A category first seen in the validation period is known to the served model; the test split
    (NannyML's reference, the challenger's held-out ground) is exactly the newest 20%."""
    from loopml.modeling.inprocess import fit_in_process
    from loopml.registry.registry import Registry
    from loopml.storage import MemoryStore

    df = pd.concat([frame] * 2, ignore_index=True)
    df["id"] = np.arange(len(df))
    df["timestamp"] = pd.date_range("2018-01-01", periods=len(df), freq="h").astype(str)
    n = len(df)
    df.loc[int(n * 0.6):, "size_of_downpayment"] = "new-scheme"  # from the validation period on
    spec = _spec(make_raw, tmp_path, df)
    spec = spec.model_copy(update={"candidates": spec.candidates[:1]})  # linear only
    run = fit_in_process(spec, measure=lambda predictor, rows: (0.1, 0.2))
    assert len(run.splits.train) == int(n * 0.6) and len(run.splits.test) == n - int(n * 0.8)

    def categories(pipe) -> list:
        enc = pipe.named_steps["pre"].named_transformers_["cat"]
        return [c for cats in enc.categories_ for c in cats]

    assert "new-scheme" not in categories(run.results[0].pipeline)  # tuned on the train split only
    assert "new-scheme" in categories(run.winner.pipeline)  # the served model learned from validation rows
    pd.testing.assert_frame_equal(run.evaluation.reference[["id"]], run.splits.test[["id"]].reset_index(drop=True))
    assert run.winner.valid_score == run.results[0].valid_score  # the selection's score is kept

    store = MemoryStore()
    from loopml.modeling.register import register_version

    number, _ = register_version(Registry(store), spec, run.data, run.winner, run.selection, run.evaluation,
                                 run.classes, "test-run", promote=False)
    meta = Registry(store).get(number).meta
    assert meta["data"]["fit_rows"] == int(n * 0.8) and meta["data"]["test_rows"] == n - int(n * 0.8)
    assert meta["data"]["test_from"] == str(run.splits.test.timestamp.min())
    assert meta["latency_ms"]["p99"] == 0.2  # measured on the refitted artifact
