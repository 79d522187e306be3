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
from tests.support.data import car_loan as car_loan_data

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


def car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML's reference (its first 10k rows) and analysis rows with their predictions and labels; every 5th
    analysis row keeps the period's shape (drift and drop in its second half) at 10k rows."""
    ref, ana, _ = car_loan_data(10_000, 10_000, train_from_start=True, predictions=True, labels_joined=True)
    return ref, ana


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
    methods = dict(zip(result.drift["feature"], result.drift["method"], strict=True))
    assert {methods[f] for f, t in CAR_LOAN_FEATURES.items() if t == "numeric"} == {"kolmogorov_smirnov"}
    assert {methods[f] for f, t in CAR_LOAN_FEATURES.items() if t == "categorical"} == {"chi2"}
    assert result.drift["p_value"].between(0, 1).all()
    # quiet before the synthetic drift (first half), loud after it
    assert not result.chunks["drifting_features"].iloc[:5].map(len).any()
    assert not result.chunks["multivariate_alert"].iloc[:5].any()
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


def test_fewer_rows_than_one_chunk_is_too_small_to_alert() -> None:
    ref, ana = car_loan()
    spec = make_spec(metric=("roc_auc", 0.999))  # every estimate fails this threshold
    result = monitor(ref, ana.iloc[:60], spec, CLASSES)
    assert len(result.chunks) == 1 and bool(result.chunks["too_small"].iloc[0])
    assert result.chunks["estimated"].notna().all()  # shown...
    assert evaluate_alerts(result, spec) == []  # ...but never alerted on
    assert any("min_chunk_rows=500" in m for m in result.messages)


def test_schema_changes_and_all_missing_feature() -> None:
    ref, ana = car_loan()
    ana = ana.drop(columns=["loan_length", "repaid"])
    ana["car_value"] = ana["car_value"].astype(str)
    ana.loc[:10, "car_value"] = "n/a"
    ana["driver_tenure"] = np.nan
    result = monitor(ref, ana, make_spec(), CLASSES)
    text = " ".join(result.messages)
    assert "'loan_length' is missing from the analysis" in text
    assert "'car_value' arrived as" in text and "11 value(s) of 'car_value' could not be parsed" in text
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


# --- quiet on stable data, loud on change (issue 10 §2) -----------------------------------------


@cache
def _stable() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The car loan data before its synthetic drift: a reference and 12 stable chunks of 1,000 rows."""
    ref, ana, targets = nml.load_synthetic_car_loan_dataset()
    ana = ana.merge(targets, on="id").iloc[:24_000:2].reset_index(drop=True)
    return ref.iloc[:20_000].reset_index(drop=True), ana


def stable() -> tuple[pd.DataFrame, pd.DataFrame]:
    ref, ana = _stable()
    return ref.copy(), ana.copy()


STABLE_SPEC = {"metric": ("roc_auc", 0.9)}
NOISY_KINDS = {"multivariate_drift", "too_many_drifting_features", "estimated_below_threshold",
               "realized_below_threshold", "missing_values", "unseen_categories", "out_of_range", "monitoring_failed"}


def test_stable_period_raises_no_alert_and_no_retraining() -> None:
    ref, ana = stable()
    spec = make_spec(**STABLE_SPEC)
    result = monitor(ref, ana, spec, CLASSES)
    assert len(result.chunks) == 12 and not result.chunks["too_small"].any()
    assert [a for a in evaluate_alerts(result, spec) if a.kind in NOISY_KINDS] == []
    assert not decide_retraining(result.chunks, spec, NOW - timedelta(days=1), NOW).retrain


def test_injected_shift_alerts_in_its_first_chunk() -> None:
    ref, ana = stable()
    ana.loc[6000:, "car_value"] = ana.loc[6000:, "car_value"] * 1.25  # cars get dearer from chunk 6 on
    spec = make_spec(**STABLE_SPEC)
    alerts = evaluate_alerts(monitor(ref, ana, spec, CLASSES), spec)
    drift = [a for a in alerts if a.kind in {"too_many_drifting_features", "multivariate_drift"}]
    assert drift and {a.chunk for a in drift} <= {f"[{i}:{i + 999}]" for i in range(6000, 12000, 1000)}
    assert any(a.chunk == "[6000:6999]" and "car_value" in a.message for a in drift)


def test_sensitivity_is_a_spec_option() -> None:
    ref, ana = stable()
    ana.loc[6000:, "car_value"] = ana.loc[6000:, "car_value"] * 1.25
    lenient = make_spec(**STABLE_SPEC, monitoring={"chunk_size": 1000, "min_drift_effect": 0.5,
                                                   "alert_on_multivariate_drift": False})
    kinds = {a.kind for a in evaluate_alerts(monitor(ref, ana, lenient, CLASSES), lenient)}
    assert "too_many_drifting_features" not in kinds


MULTICLASS_FEATURES = {
    "acq_channel": "categorical", "app_behavioral_score": "numeric", "requested_credit_limit": "numeric",
    "app_channel": "categorical", "credit_bureau_score": "numeric", "stated_income": "numeric", "is_customer": "categorical",
}  # fmt: skip
MULTICLASSES = ["highstreet_card", "prepaid_card", "upmarket_card"]


def _small_reference_stable(**monitoring: object) -> MonitoringResult:
    """NannyML's credit-card reference: its first 1,000 rows as the reference, the next 12,000 (same period,
    nothing changed) as 12 analysis chunks."""
    ref, _, _ = nml.load_synthetic_multiclass_classification_dataset()
    spec = make_spec("multiclass", "y_true", MULTICLASS_FEATURES, ("accuracy", 0.5),
                     monitoring={"chunk_size": 1000, "min_chunk_rows": 50, **monitoring})
    return monitor(ref.iloc[:1000].reset_index(drop=True), ref.iloc[1000:13_000].reset_index(drop=True), spec, MULTICLASSES)


def test_multivariate_band_is_measured_out_of_sample() -> None:
    # A reference chunk's reconstruction error measured by the PCA fitted on its own rows is optimistic: a band
    # built that way (9 of these 12 stable chunks alerted) sits below every new chunk.
    chunks = _small_reference_stable().chunks
    assert not chunks["multivariate_alert"].any(), chunks[["reconstruction_error", "reconstruction_upper_threshold"]]
    centre = (chunks["reconstruction_lower_threshold"] + chunks["reconstruction_upper_threshold"]) / 2
    half = (chunks["reconstruction_upper_threshold"] - chunks["reconstruction_lower_threshold"]) / 2
    # stable chunks scatter around the band's centre, not against its upper edge
    assert abs(((chunks["reconstruction_error"] - centre) / half).mean()) < 0.5


def test_multivariate_band_follows_the_false_alarm_rate() -> None:
    strict = _small_reference_stable(drift_false_alarm_rate=0.001).chunks.iloc[0]
    loose = _small_reference_stable(drift_false_alarm_rate=0.2).chunks.iloc[0]
    fixed = _small_reference_stable(multivariate_std=1.0).chunks.iloc[0]
    width = lambda c: c["reconstruction_upper_threshold"] - c["reconstruction_lower_threshold"]  # noqa: E731
    assert width(strict) > width(loose) > width(fixed) > 0


def test_a_tiny_reference_still_has_a_multivariate_band() -> None:
    # 120 reference rows: one chunk per fold, so no spread between chunks to estimate; the band falls back
    # on the row-level standard error (a t quantile with one degree of freedom made it about 25 times wider)
    ref, _, _ = nml.load_synthetic_car_loan_dataset()
    ana = ref.iloc[1000:3000].reset_index(drop=True)
    ana.loc[1000:, "car_value"] = ana.loc[1000:, "car_value"] * 1.5  # cars half as dear again in the second chunk
    spec = make_spec(monitoring={"chunk_size": 1000, "min_chunk_rows": 50})
    chunks = monitor(ref.iloc[:120].reset_index(drop=True), ana, spec, CLASSES).chunks
    assert chunks["multivariate_alert"].tolist() == [False, True]


# --- chunks big enough to trust (§3) ------------------------------------------------------------


def test_partial_weeks_at_the_edges_are_too_small_and_decide_nothing() -> None:
    ref, ana = car_loan()
    ana["timestamp"] = pd.to_datetime(ana["timestamp"])
    # Wednesday 2018-11-07 .. Tuesday 2018-11-27 at noon: partial weeks at both ends
    ana = ana[(ana["timestamp"] >= "2018-11-07") & (ana["timestamp"] < "2018-11-20 12:00")].reset_index(drop=True)
    spec = make_spec(metric=("roc_auc", 0.999), monitoring={"chunk_period": "W", "min_chunk_rows": 150},
                     retraining={"consecutive_chunks": 1})
    result = monitor(ref, ana, spec, CLASSES)
    small = result.chunks[result.chunks["too_small"]]
    assert len(result.chunks) == 3 and list(small["chunk_index"]) == [2], result.chunks[["chunk", "n_rows"]]
    alerted = {a.chunk for a in evaluate_alerts(result, spec)}
    assert alerted and not alerted & set(small["chunk"])
    decision = decide_retraining(result.chunks, spec, NOW - timedelta(days=1), NOW)
    assert decision.evidence["recent_chunks"][0]["chunk"] == result.chunks["chunk"].iloc[1]


def test_align_window_to_whole_periods() -> None:
    from datetime import date

    from loopml.monitoring import align_window

    weekly = make_spec(monitoring={"chunk_period": "W"})
    assert align_window(weekly, date(2018, 11, 7), date(2018, 11, 27)) == (date(2018, 11, 5), date(2018, 11, 25))
    assert align_window(weekly, date(2018, 11, 5), date(2018, 11, 11)) == (date(2018, 11, 5), date(2018, 11, 11))
    assert align_window(weekly, date(2018, 11, 7), date(2018, 11, 9)) is None  # no whole week yet
    monthly = make_spec(monitoring={"chunk_period": "M"})
    assert align_window(monthly, date(2018, 11, 15), date(2019, 1, 20)) == (date(2018, 11, 1), date(2018, 12, 31))
    assert align_window(make_spec(), date(2018, 11, 7), date(2018, 11, 9)) == (date(2018, 11, 7), date(2018, 11, 9))


def test_streamed_pieces_give_the_same_chunks_as_one_frame() -> None:
    from loopml.monitoring import monitor_stream

    ref, ana = car_loan()
    ana = ana.iloc[:4000].copy()
    ana["timestamp"] = pd.to_datetime(ana["timestamp"])
    spec = make_spec(monitoring={"chunk_period": "W"})
    whole = monitor(ref, ana, spec, CLASSES).chunks
    days = [g for _, g in ana.groupby(ana["timestamp"].dt.date)]
    streamed = monitor_stream(ref, iter(days), spec, CLASSES).chunks
    assert list(streamed["chunk"]) == list(whole["chunk"]) and list(streamed["n_rows"]) == list(whole["n_rows"])
    np.testing.assert_allclose(streamed["estimated"], whole["estimated"])
    np.testing.assert_allclose(streamed["reconstruction_error"], whole["reconstruction_error"])


def test_chunks_measured_together_get_the_values_of_their_own_calls(monkeypatch) -> None:
    """One NannyML call per calculator for a group of chunks (the speed of the in-memory path) gives every
    chunk exactly what a call on that chunk alone gives; a group that fails is measured chunk by chunk."""
    from loopml.monitoring import nanny

    ref, ana = car_loan()
    ana.loc[ana.index >= 4000, "repaid"] = np.nan  # realized on the labelled chunks only
    ana.loc[ana.index % 7 == 0, "car_value"] = np.nan  # missing values for data quality
    spec = make_spec()
    calls: list[int] = []
    calculate = nml.UnivariateDriftCalculator.calculate
    monkeypatch.setattr(nml.UnivariateDriftCalculator, "calculate",
                        lambda self, data, *a, **k: calls.append(len(data)) or calculate(self, data, *a, **k))  # fmt: skip
    together = monitor(ref, ana, spec, CLASSES)
    assert calls == [len(ana)] and len(together.chunks) == 10  # ten chunks, one call
    with monkeypatch.context() as m:
        m.setattr(nanny, "BATCH_ROWS", 1)  # every chunk its own call
        alone = monitor(ref, ana, spec, CLASSES)
    assert len(calls) == 1 + 10

    def broken(self, data):
        raise RuntimeError("a group's call failed")

    monkeypatch.setattr(nanny._Bounds, "_split", broken)  # every group fails: each chunk is measured on its own
    fallback = monitor(ref, ana, spec, CLASSES)
    assert len(calls) == 1 + 10 + 1 + 10
    for other in (alone, fallback):
        for frame in ("chunks", "drift", "quality"):
            pd.testing.assert_frame_equal(getattr(together, frame), getattr(other, frame))
        assert together.failures == other.failures == [] and together.messages == other.messages


# --- loud failures (§4) -------------------------------------------------------------------------


def test_a_failed_calculator_is_a_monitoring_failed_alert_not_a_silent_nan() -> None:
    ref, ana = stable()
    ana = ana.iloc[:3000].copy()
    ana["y_pred_proba"] = np.nan  # the scorer wrote no probabilities: CBPE has nothing to estimate from
    spec = make_spec(**STABLE_SPEC)
    result = monitor(ref, ana, spec, CLASSES)
    failed = [a for a in evaluate_alerts(result, spec) if a.kind == "monitoring_failed"]
    assert {a.chunk for a in failed} == set(result.chunks["chunk"])
    assert {a.chunk for a in failed if "performance estimation failed" in a.message} == set(result.chunks["chunk"])
    assert result.chunks["failed_steps"].map(lambda s: "performance estimation" in s).all()


def test_data_quality_problems_are_alert_kinds_of_their_own() -> None:
    ref, ana = stable()
    ana = ana.iloc[:6000].copy()
    ana["salary_range"] = ana["salary_range"].astype(object)
    ana.loc[1000:1199, "debt_to_income_ratio"] = np.nan  # 20% missing in chunk 1
    ana.loc[2000:2049, "salary_range"] = "never seen"  # 5% unseen in chunk 2
    ana.loc[3000:3029, "car_value"] = 10_000_000.0  # 3% out of range in chunk 3
    spec = make_spec(**STABLE_SPEC)
    alerts = evaluate_alerts(monitor(ref, ana, spec, CLASSES), spec)
    quality = {(a.kind, a.chunk) for a in alerts if a.kind in {"missing_values", "unseen_categories", "out_of_range"}}
    assert quality == {("missing_values", "[1000:1999]"), ("unseen_categories", "[2000:2999]"),
                       ("out_of_range", "[3000:3999]")}
    missing = next(a for a in alerts if a.kind == "missing_values")
    assert "debt_to_income_ratio 20.0%" in missing.message and missing.value == pytest.approx(0.2)


# --- calibration of the reference (§1) ----------------------------------------------------------


def test_calibration_diagnostics_tell_calibrated_from_overconfident() -> None:
    from loopml.modeling.calibration import calibration_diagnostics, training_diagnostics

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(float)  # outcomes drawn from p: calibrated by construction
    good = calibration_diagnostics(y, p, CLASSES)
    bad = calibration_diagnostics(y, np.where(p > 0.5, 0.99, 0.01), CLASSES)  # same ranking, overconfident
    assert good is not None and bad is not None
    assert good["ece"] < 0.02 < 0.2 < bad["ece"] and good["brier"] < bad["brier"]
    assert sum(b["rows"] for b in good["bins"]) == 20_000 and len(good["bins"]) == 10
    spec = make_spec(monitoring={"chunk_size": 1000, "min_chunk_rows": 500})
    _, warnings_small = training_diagnostics(spec, y[:1167], p[:1167], CLASSES)
    assert [w["kind"] for w in warnings_small] == ["small_reference"] and "1167 rows" in warnings_small[0]["message"]
    _, warnings_bad = training_diagnostics(spec, y, np.where(p > 0.5, 0.99, 0.01), CLASSES)
    assert [w["kind"] for w in warnings_bad] == ["poorly_calibrated"]
    # 300 calibrated rows show an ECE of several hundredths by chance (here 0.08): no warning for that alone
    few = calibration_diagnostics(y[:300], p[:300], CLASSES)
    assert few is not None and few["ece_noise_p99"] > few["ece"] > 0.05
    _, warnings_few = training_diagnostics(make_spec(monitoring={"chunk_size": 50, "min_chunk_rows": 30}), y[:300], p[:300], CLASSES)
    assert warnings_few == []
    multi = calibration_diagnostics(["a", "b", "c"] * 100, np.tile([[0.8, 0.1, 0.1]], (300, 1)), ["a", "b", "c"])
    assert multi is not None and multi["ece"] == pytest.approx(0.8 - 1 / 3)


def test_monitoring_shows_the_reference_calibration() -> None:
    result = _loan_result()
    assert result.calibration is not None and result.calibration["rows"] == 10_000
    assert 0 < result.calibration["brier"] < 0.25
    html = render_report(result, make_spec(), "Car loan", "v7")
    assert "Calibration of the reference" in html and "expected calibration error" in html


# --- latency and cost over time (§5) ------------------------------------------------------------


def _with_traffic(ana: pd.DataFrame, slow_from: int | None = None) -> pd.DataFrame:
    """API-logged rows: a measured request latency, one row per request."""
    rng = np.random.default_rng(1)
    ana = ana.copy()
    ana["latency_ms"] = rng.gamma(4, 5, len(ana))  # p99 ~ 50 ms
    if slow_from is not None:
        ana.loc[slow_from:, "latency_ms"] *= 4
    ana["request_rows"] = 1
    return ana


def test_latency_per_chunk_and_alert_above_the_constraint() -> None:
    ref, ana = stable()
    ana = _with_traffic(ana.iloc[:4000], slow_from=3000)
    spec = make_spec(**STABLE_SPEC, constraints={"p99_latency_ms": 100})
    result = monitor(ref, ana, spec, CLASSES)
    assert result.chunks["latency_p99_ms"].notna().all() and (result.chunks["api_rows"] == 1000).all()
    assert (result.chunks["latency_p50_ms"] < result.chunks["latency_p99_ms"]).all()
    alerts = [a for a in evaluate_alerts(result, spec) if a.kind == "latency_above_limit"]
    assert [a.chunk for a in alerts] == ["[3000:3999]"] and alerts[0].threshold == 100


def test_cost_per_day_and_budget_alerts() -> None:
    from loopml.monitoring.cost import cost_summary
    from loopml.monitoring.prices import PRICES

    usage = pd.DataFrame({"day": ["2026-01-01", "2026-01-02"], "rows": [1000, 3000], "requests": [1000.0, 1000.0],
                          "billed_ms": [20_000.0, 40_000.0]})  # fmt: skip
    spec = make_spec(constraints={"budget": {"monthly_usd": 0.01, "per_1000_predictions_usd": 1.0}})
    s = cost_summary(usage, spec, batch_runs=[{"day": "2026-01-02", "seconds": 3600}], monitoring_seconds=60)
    per_request = PRICES["lambda_request"] + PRICES["apigw_request"]
    day1 = 20 * PRICES["lambda_gb_second"] + 1000 * per_request  # 20 s billed at 1 GB
    assert s["days"][0]["api_usd"] == pytest.approx(day1)
    assert s["days"][0]["api_usd_per_1000"] == pytest.approx(day1)
    batch = PRICES["batch_vcpu_hour"] + 2 * PRICES["batch_gb_hour"]  # one hour, 1 vCPU and 2 GB
    assert s["days"][1]["batch_usd"] == pytest.approx(batch)
    assert s["usd_per_day"] == pytest.approx(sum(d["total_usd"] for d in s["days"]) / 2)
    assert [o["rule"] for o in s["over_budget"]] == ["monthly_usd"]  # $1 per 1,000 is far above what it costs
    assert s["monitoring_run_usd"] == pytest.approx(batch / 60)


def test_prices_are_dated_and_overridable() -> None:
    from loopml.monitoring.prices import AS_OF, prices

    table = prices({"lambda_gb_second": 0.00001}, env={"LOOPML_PRICES": '{"apigw_request": 0.000001}'})
    assert table["as_of"] == AS_OF and table["prices"]["lambda_gb_second"] == 0.00001
    assert table["source"]["apigw_request"] == "LOOPML_PRICES"
    with pytest.raises(ValueError, match="unknown price 'lambda_gb_sec'"):
        prices({"lambda_gb_sec": 1.0}, env={})
    with pytest.raises(ValueError, match="LOOPML_PRICES"):
        prices(None, env={"LOOPML_PRICES": "{oops"})


def test_the_run_prices_its_api_traffic_and_alerts_over_budget() -> None:
    ref, ana = stable()
    ana = _with_traffic(ana.iloc[:3000])
    spec = make_spec(**STABLE_SPEC, constraints={"budget": {"per_1000_predictions_usd": 0.0001}})
    result = monitor(ref, ana, spec, CLASSES)
    assert result.cost is not None and result.cost["api_predictions"] == 3000
    assert sum(d["api_rows"] for d in result.cost["days"]) == 3000 and result.cost["days"][0]["day"].startswith("2018")
    alerts = [a for a in evaluate_alerts(result, spec) if a.kind == "cost_above_budget"]
    assert len(alerts) == 1 and "per 1,000 predictions" in alerts[0].message
    html = render_report(result, spec, "t", "v1")
    assert "API latency" in html and "Estimated cost per day" in html


def test_api_latency_travels_from_the_prediction_log_to_monitoring(tmp_path) -> None:
    from datetime import date

    from loopml.scoring.labels import read_prediction_log
    from loopml.serving.prediction_log import PredictionLog, prediction_records
    from loopml.serving.predictor import Outputs
    from loopml.storage import from_uri

    store = from_uri(str(tmp_path / "store"))
    log = PredictionLog(store)
    ref, ana = stable()
    ana = ana.iloc[:1000]
    rows = ana[list(CAR_LOAN_FEATURES)].to_dict(orient="records")
    for i in range(0, len(rows), 10):  # requests of 10 rows, 40 ms each
        batch = rows[i : i + 10]
        out = Outputs([1.0] * len(batch), [{"0.0": 0.2, "1.0": 0.8}] * len(batch))
        ids = [f"p-20181105-{i + j:016x}" for j in range(len(batch))]
        log.add(prediction_records(ids, batch, out, 1, "2018-11-05T10:00:00+00:00", latency_ms=40.0, request_rows=10))
    log.flush()
    frame = read_prediction_log(store, make_spec(), date(2018, 11, 5), date(2018, 11, 5))
    assert len(frame) == 1000 and (frame["latency_ms"] == 40.0).all() and (frame["request_rows"] == 10).all()
    result = monitor(ref, frame, make_spec(**STABLE_SPEC), CLASSES)
    assert result.chunks["latency_p99_ms"].tolist() == [40.0]
    assert result.usage["requests"].tolist() == [pytest.approx(100.0)]  # 1,000 rows in 100 requests
    assert result.cost is not None and result.cost["days"][0]["api_rows"] == 1000


def test_categories_read_as_nullable_strings_still_drift():
    """awswrangler returns pandas' NA-backed "string" dtype, on which NannyML's chi2 failed to fit."""
    from loopml.monitoring._prepare import _coerce

    col = pd.Series(["a", None, "b"], dtype="string")
    from loopml.monitoring._prepare import Notes

    out = _coerce(col, "c", False, Notes(), "reference")
    assert str(out.dtype) in ("str", "object") and out.isna().tolist() == [False, True, False]
