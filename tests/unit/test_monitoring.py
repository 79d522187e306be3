"""Monitoring: real NannyML on NannyML's shipped (offline) datasets, subsampled to stay fast."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache

import boto3
import nannyml as nml
import numpy as np
import pandas as pd
import pytest
from moto import mock_aws

from loopml.monitoring import (
    Alert,
    MonitoringResult,
    decide_retraining,
    evaluate_alerts,
    monitor,
    publish_alerts,
    render_report,
)
from loopml.spec import ProblemSpec, parse_spec

nml.disable_usage_logging()

CAR_LOAN_FEATURES = {
    "car_value": "numeric", "salary_range": "categorical", "debt_to_income_ratio": "numeric",
    "loan_length": "numeric", "repaid_loan_on_prev_car": "categorical", "size_of_downpayment": "categorical",
    "driver_tenure": "numeric",
}  # fmt: skip
CLASSES = [0.0, 1.0]


def make_spec(task: str = "binary", target: str = "repaid", features: dict[str, str] = CAR_LOAN_FEATURES,
              metric: tuple[str, float] = ("roc_auc", 0.965), **extra: object) -> ProblemSpec:  # fmt: skip
    raw = {
        "name": "car-loan",
        "task": task,
        "target": target,
        "timestamp": "timestamp",
        "id": "id",
        "features": [{"name": n, "type": t} for n, t in features.items()],
        "metric": {"name": metric[0], "threshold": metric[1]},
        "data": {"train": "unused.csv"},
        "monitoring": {"chunk_size": 1000},
        **extra,
    }
    return parse_spec(raw)


@cache
def _car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    ref, ana, targets = nml.load_synthetic_car_loan_dataset()
    ana = ana.merge(targets, on="id")
    # Every 5th row keeps the analysis period's shape (drift and drop in its second half) at 10k rows.
    return ref.iloc[:10_000].reset_index(drop=True), ana.iloc[::5].reset_index(drop=True)


def car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    ref, ana = _car_loan()
    return ref.copy(), ana.copy()


@cache
def _loan_result() -> MonitoringResult:
    ref, ana = car_loan()
    ana.loc[ana.index >= 4000, "repaid"] = np.nan  # labels only for the first four chunks
    return monitor(ref, ana, make_spec(), CLASSES)


# --- monitor: binary ---------------------------------------------------------------------------


def test_estimates_exist_for_every_chunk() -> None:
    chunks = _loan_result().chunks
    assert len(chunks) == 10
    assert chunks["estimated"].notna().all()
    assert (chunks["estimated_lower"] <= chunks["estimated"]).all()
    assert (chunks["n_rows"] == 1000).all()


def test_performance_drop_raises_estimated_alerts() -> None:
    result = _loan_result()
    alerts = evaluate_alerts(result, make_spec())
    flagged = {a.chunk for a in alerts if a.kind == "estimated_below_threshold"}
    late = set(result.chunks["chunk"].iloc[5:])
    early = set(result.chunks["chunk"].iloc[:4])
    assert len(flagged & late) >= 4
    assert not flagged & early
    assert all(a.threshold == 0.965 for a in alerts if a.kind == "estimated_below_threshold")


def test_realized_only_for_labelled_chunks() -> None:
    chunks = _loan_result().chunks
    assert chunks["n_labelled"].tolist() == [1000] * 4 + [0] * 6
    assert chunks["realized"].iloc[:4].notna().all()
    assert chunks["realized"].iloc[4:].isna().all()
    assert chunks["estimation_error"].iloc[:4].abs().max() < 0.05


def test_drift_and_quality_frames() -> None:
    result = _loan_result()
    assert set(result.drift["feature"]) == set(CAR_LOAN_FEATURES)
    assert (result.drift["method"] == "jensen_shannon").all()
    # The synthetic data drifts in car_value and loan_length in the second half of the analysis period.
    assert {"car_value", "loan_length"} <= set(result.drifting_features)
    assert result.chunks["multivariate_alert"].iloc[6:].all()
    assert set(result.quality["feature"]) == set(CAR_LOAN_FEATURES)
    assert result.quality["missing"].sum() == 0


def test_to_dict_is_strict_json() -> None:
    blob = json.dumps(_loan_result().to_dict(), allow_nan=False)
    back = json.loads(blob)
    assert back["chunks"][9]["realized"] is None
    assert back["metric"] == "roc_auc"


def test_lower_is_better_threshold_and_regression_dle() -> None:
    ref, ana, targets = nml.load_synthetic_car_price_dataset()
    ana = ana.merge(targets, on="id").iloc[::6].reset_index(drop=True)
    features = {"car_age": "numeric", "km_driven": "numeric", "price_new": "numeric", "accident_count": "numeric",
                "door_count": "numeric", "fuel": "categorical", "transmission": "categorical"}  # fmt: skip
    spec = make_spec("regression", "y_true", features, ("rmse", 1000.0))
    result = monitor(ref.iloc[:6000], ana, spec, None)
    chunks = result.chunks
    assert chunks["estimated"].notna().all() and chunks["realized"].notna().all()
    assert (chunks["estimated_alert"] == (chunks["estimated"] > 1000.0)).all()
    r2 = monitor(ref.iloc[:6000], ana, make_spec("regression", "y_true", features, ("r2", 0.5)), None).chunks
    assert r2["estimated"].between(-1, 1).all() and r2["realized"].between(-1, 1).all()
    assert (r2["estimated"] - r2["realized"]).abs().max() < 0.2


def test_multiclass_cbpe_with_monthly_chunks() -> None:
    ref, ana, targets = nml.load_synthetic_multiclass_classification_dataset()
    features = {"acq_channel": "categorical", "app_behavioral_score": "numeric", "requested_credit_limit": "numeric",
                "app_channel": "categorical", "credit_bureau_score": "numeric", "stated_income": "numeric",
                "is_customer": "categorical"}  # fmt: skip
    spec = make_spec("multiclass", "y_true", features, ("accuracy", 0.6), monitoring={"chunk_period": "M"})
    classes = ["highstreet_card", "prepaid_card", "upmarket_card"]
    result = monitor(ref.iloc[::4], ana.iloc[::4], spec, classes)
    assert len(result.chunks) >= 3
    assert result.chunks["estimated"].between(0, 1).all()
    assert result.chunks["start"].notna().all()
    assert "no labels" in " ".join(result.messages)


# --- monitor: robustness ------------------------------------------------------------------------


def test_empty_analysis_gives_message_not_exception() -> None:
    ref, ana = car_loan()
    result = monitor(ref, ana.iloc[:0], make_spec(), CLASSES)
    assert result.chunks.empty
    assert any("empty" in m for m in result.messages)
    assert "<html" in render_report(result, make_spec(), "t", "v1")
    json.dumps(result.to_dict(), allow_nan=False)


def test_fewer_rows_than_one_chunk() -> None:
    ref, ana = car_loan()
    result = monitor(ref, ana.iloc[:60], make_spec(), CLASSES)
    assert len(result.chunks) == 1
    assert any("fewer than one chunk" in m for m in result.messages)


def test_schema_changes_and_all_missing_feature() -> None:
    ref, ana = car_loan()
    ana = ana.drop(columns=["loan_length", "repaid"])
    ana["car_value"] = ana["car_value"].astype(str)
    ana.loc[:10, "car_value"] = "n/a"
    ana["driver_tenure"] = np.nan
    result = monitor(ref, ana, make_spec(), CLASSES)
    text = " ".join(result.messages)
    assert "'loan_length' is missing from the analysis" in text
    assert "'car_value' arrived as" in text and "11 value(s) could not be parsed" in text
    assert "'driver_tenure' is entirely missing" in text
    assert "no labels" in text
    assert result.chunks["estimated"].notna().all()
    assert result.chunks["realized"].isna().all()
    assert "loan_length" not in set(result.drift["feature"])
    tenure = result.quality[result.quality["feature"] == "driver_tenure"]
    assert (tenure["missing_rate"] == 1.0).all()
    assert result.quality.loc[result.quality["feature"] == "car_value", "missing"].sum() == 11


def test_missing_timestamp_falls_back_to_row_chunks() -> None:
    ref, ana = car_loan()
    spec = make_spec(monitoring={"chunk_period": "W"})
    result = monitor(ref, ana.drop(columns=["timestamp"]), spec, CLASSES)
    assert len(result.chunks) == 10
    assert any("timestamp" in m for m in result.messages)


def test_reference_without_labels_is_a_clear_error() -> None:
    ref, ana = car_loan()
    with pytest.raises(ValueError, match="repaid"):
        monitor(ref.drop(columns=["repaid"]), ana, make_spec(), CLASSES)


# --- report -------------------------------------------------------------------------------------


def test_report_is_self_contained() -> None:
    html = render_report(_loan_result(), make_spec(), "Car loan", "v7")
    assert html.count('<script type="text/javascript">/**') == 1  # plotly.js inlined exactly once
    assert "<script src=" not in html and 'script src="http' not in html  # nothing fetched: works offline
    for text in ("v7", "Performance", "Multivariate drift", "Univariate drift", "Data quality", "threshold roc_auc"):
        assert text in html


# --- alerts -------------------------------------------------------------------------------------


def _chunks(estimated: list[float], realized: list[float] | None = None, **cols: list) -> pd.DataFrame:
    n = len(estimated)
    realized = realized or [np.nan] * n
    spec = make_spec()
    frame = pd.DataFrame(
        {
            "chunk": [f"c{i}" for i in range(n)],
            "chunk_index": range(n),
            "estimated": estimated,
            "realized": realized,
            "estimated_alert": [not spec.metric.passes(v) for v in estimated],
            "realized_alert": [pd.notna(v) and not spec.metric.passes(v) for v in realized],
            "reconstruction_error": [1.0] * n,
            "reconstruction_upper_threshold": [1.5] * n,
            "multivariate_alert": [False] * n,
            "drifting_features": [[] for _ in range(n)],
        }
    )
    for k, v in cols.items():
        frame[k] = v
    frame["n_drifting_features"] = frame["drifting_features"].map(len)
    return frame


def _result(chunks: pd.DataFrame) -> MonitoringResult:
    return MonitoringResult("binary", "roc_auc", 0.965, True, chunks, pd.DataFrame(), pd.DataFrame())


def test_drifting_feature_rule_is_strictly_more_than_n() -> None:
    chunks = _chunks([0.99, 0.99], drifting_features=[["a", "b"], ["a", "b", "c"]])
    alerts = evaluate_alerts(_result(chunks), make_spec(monitoring={"chunk_size": 1000, "max_drifting_features": 2}))
    assert [(a.kind, a.chunk) for a in alerts] == [("too_many_drifting_features", "c1")]


def test_multivariate_alert_can_be_switched_off() -> None:
    chunks = _chunks([0.99], multivariate_alert=[True])
    on = evaluate_alerts(_result(chunks), make_spec())
    off = evaluate_alerts(
        _result(chunks), make_spec(monitoring={"chunk_size": 1000, "alert_on_multivariate_drift": False})
    )
    assert [a.kind for a in on] == ["multivariate_drift"] and off == []


def test_publish_alerts_to_sns() -> None:
    alerts = [Alert("estimated_below_threshold", f"c{i}", 0.9, 0.965, f"chunk c{i}: bad") for i in range(25)]
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="loopml-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        assert publish_alerts([], topic, sns) is None
        assert publish_alerts(alerts, topic, sns, model="car-loan")
        body = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert body["Subject"] == "loopml: 25 alert(s) for car-loan"
    assert "chunk c0: bad" in body["Message"] and "and 5 more" in body["Message"]


# --- decision -----------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_time_based_retraining() -> None:
    spec = make_spec(retraining={"max_age_days": 30})
    old = decide_retraining(_chunks([0.99]), spec, NOW - timedelta(days=31), NOW)
    young = decide_retraining(_chunks([0.99]), spec, datetime(2026, 5, 20), NOW)  # naive = UTC
    assert old.retrain and "days old" in old.reasons[0]
    assert not young.retrain and young.reasons == []
    json.dumps(old.to_dict(), allow_nan=False)


def test_k_consecutive_failing_chunks() -> None:
    spec = make_spec(retraining={"consecutive_chunks": 3})
    created = NOW - timedelta(days=1)
    assert decide_retraining(_chunks([0.99, 0.9, 0.9, 0.9]), spec, created, NOW).retrain
    assert not decide_retraining(_chunks([0.9, 0.9, 0.99, 0.9]), spec, created, NOW).retrain  # streak broken
    assert not decide_retraining(_chunks([0.9, 0.9]), spec, created, NOW).retrain  # too few chunks
    decision = decide_retraining(_chunks([0.99, 0.9, 0.9, 0.9]), spec, created, NOW)
    assert decision.evidence["consecutive_failing"] == 3
    assert [c["chunk"] for c in decision.evidence["recent_chunks"]] == ["c3", "c2", "c1"]


def test_realized_outranks_estimate_when_labels_exist() -> None:
    spec = make_spec(retraining={"consecutive_chunks": 2})
    created = NOW - timedelta(days=1)
    # The estimate says failing, but the labels say the model is fine in the latest chunk.
    fine = decide_retraining(_chunks([0.9, 0.9], [np.nan, 0.99]), spec, created, NOW)
    failing = decide_retraining(_chunks([0.99, 0.99], [0.9, 0.9]), spec, created, NOW)
    assert not fine.retrain
    assert failing.retrain and failing.evidence["recent_chunks"][0]["judged_on"] == "realized"
    json.dumps(failing.to_dict(), allow_nan=False)
