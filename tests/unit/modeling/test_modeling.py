"""Stage 3, modeling: selection under the spec's constraints, gates, ONNX parity, splits, seeded tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.modeling.evaluate import evaluate
from loopml.modeling.export import PARITY_TOLERANCE
from loopml.modeling.gates import gates
from loopml.modeling.select import select
from loopml.modeling.split import split
from loopml.modeling.tune import encode, schema_of, tune
from loopml.registry.registry import CHAMPION, Registry
from loopml.serving.predictor import OnnxPredictor
from loopml.spec import Candidate, parse_spec
from loopml.storage import MemoryStore


def _summary(family: str, score: float, p99: float, mb: float) -> dict:
    return {"family": family, "params": {}, "valid_score": score, "latency_p50_ms": p99 / 2,
            "latency_p99_ms": p99, "size_mb": mb, "served_as": "onnx", "trials": []}


def test_select_excludes_the_most_accurate_when_it_is_too_slow(make_raw):
    spec = parse_spec(make_raw(constraints={"p99_latency_ms": 5}))
    sel = select([_summary("random_forest", 0.97, p99=12.0, mb=3.0), _summary("linear", 0.93, p99=0.4, mb=0.01),
                  _summary("gradient_boosting", 0.95, p99=2.0, mb=0.5)], spec)
    assert sel.table[sel.winner]["family"] == "gradient_boosting"
    assert sel.reason.startswith("gradient_boosting has the best validation roc_auc")
    assert "not eligible: random_forest (p99 12.000 ms over the 5 ms budget)" in sel.reason
    rf = sel.table[0]
    assert rf["eligible"] is False and rf["excluded_because"] == ["p99 12.000 ms over the 5 ms budget"]
    assert [row["selected"] for row in sel.table] == [False, False, True]
    assert all("trials" not in row for row in sel.table)


def test_select_without_constraints_takes_the_best_score(make_raw):
    spec = parse_spec(make_raw(constraints={}))
    sel = select([_summary("random_forest", 0.97, 12.0, 3.0), _summary("linear", 0.93, 0.4, 0.01)], spec)
    assert sel.winner == 0 and "not eligible" not in sel.reason


def test_select_lower_is_better_for_error_metrics(make_raw):
    spec = parse_spec(make_raw(task="regression", target="car_value_next", constraints={},
                               metric={"name": "rmse", "threshold": 10}))
    sel = select([_summary("random_forest", 3.0, 1, 1), _summary("linear", 2.0, 1, 1)], spec)
    assert sel.table[sel.winner]["family"] == "linear"


def test_select_with_nothing_eligible_says_why(make_raw):
    spec = parse_spec(make_raw(constraints={"p99_latency_ms": 1, "max_model_mb": 0.1}))
    with pytest.raises(ValueError, match="no candidate meets") as info:
        select([_summary("random_forest", 0.97, 12.0, 3.0)], spec)
    assert "p99" in str(info.value) and "MB cap" in str(info.value)


def test_select_prefers_interpretable_within_slack(make_raw):
    spec = parse_spec(make_raw(constraints={"interpretability": "prefer"}))
    close = select([_summary("random_forest", 0.950, 1, 1), _summary("linear", 0.945, 1, 1)], spec)
    assert close.table[close.winner]["family"] == "linear" and "interpretab" in close.reason
    far = select([_summary("random_forest", 0.97, 1, 1), _summary("linear", 0.90, 1, 1)], spec)
    assert far.table[far.winner]["family"] == "random_forest"


def test_size_cap_on_real_candidates_excludes_the_big_forest(trained, make_raw):
    """Sizes are deterministic (latency is not): a cap between the two real artifacts decides."""
    forest, linear = trained.result("random_forest"), trained.result("linear")
    assert forest.valid_score > linear.valid_score  # the forest is the more accurate candidate
    cap = (forest.size_mb + linear.size_mb) / 2
    spec = parse_spec(make_raw(constraints={"max_model_mb": cap}))
    sel = select([r.summary() for r in trained.results], spec)
    assert sel.table[sel.winner]["family"] == "linear"
    assert "not eligible: random_forest (size" in sel.reason and "MB cap" in sel.reason
    # without the cap the forest wins
    assert trained.winner.family == "random_forest"


def test_latency_budget_on_measured_candidates_picks_the_faster_one(trained):
    """tune measures latency on the artifact that would be served and selection reads that measure. The
    measurement is injected (this machine's speed must not decide a test): the forest is measured slow,
    the linear model fast, and a budget between them rules the slower, more accurate one out."""
    spec = trained.spec
    train = encode(trained.splits.train, spec, trained.classes)
    valid = encode(trained.splits.valid, spec, trained.classes)
    schema = schema_of(spec, trained.classes)
    seen: list[tuple[str, int]] = []

    def measured(p50: float, p99: float):
        def measure(predictor, rows):
            seen.append((predictor.kind, len(rows)))
            return p50, p99
        return measure

    forest = tune(Candidate(family="random_forest", n_iter=1), train, valid, spec, trained.classes, schema,
                  measure=measured(4.0, 12.0))
    linear = tune(Candidate(family="linear", n_iter=1), train, valid, spec, trained.classes, schema,
                  measure=measured(0.1, 0.3))
    assert seen == [("onnx", 200), ("onnx", 200)]  # the served (ONNX) artifact, on 200 validation rows
    assert (forest.latency_p50_ms, forest.latency_p99_ms) == (4.0, 12.0)
    assert forest.valid_score > linear.valid_score  # the forest is the more accurate candidate...
    constrained = spec.model_copy(update={"constraints": spec.constraints.model_copy(update={"p99_latency_ms": 5.0})})
    sel = select([forest.summary(), linear.summary()], constrained)
    assert sel.table[sel.winner]["family"] == "linear"  # ...but too slow for the budget
    assert "not eligible: random_forest (p99 12.000 ms over the 5 ms budget)" in sel.reason
    assert sel.table[0]["excluded_because"] and not sel.table[1]["excluded_because"]


def _gated_version(trained, raw) -> tuple[Registry, int, dict]:
    spec = parse_spec(raw)
    ev = evaluate(trained.winner, trained.splits, spec, trained.classes)
    store = MemoryStore()
    number = trained.register(store, spec=spec, evaluation=ev)
    registry = Registry(store)
    return registry, number, registry.get(number).meta


def test_fairness_gap_over_the_limit_registers_without_promoting(trained, make_raw):
    raw = make_raw()
    raw["constraints"] = {"fairness": {"group": "salary_range", "max_gap": 0.0}}
    registry, number, meta = _gated_version(trained, raw)
    assert registry.versions() == [number]
    assert registry.alias(CHAMPION) is None
    assert registry.ledger() == []
    fair = meta["fairness"]
    assert fair["group"] == "salary_range" and fair["gap"] > 0 and fair["passes"] is False
    assert set(fair["per_group"]) == {"0 - 20K €", "20K - 40K €", "40K - 60K €", "60K+ €"}
    assert meta["gates"]["passes"] is False
    assert any("fairness" in r and "salary_range" in r for r in meta["gates"]["reasons"])


def test_fairness_within_the_limit_promotes(trained, make_raw):
    raw = make_raw()
    raw["constraints"] = {"fairness": {"group": "salary_range", "max_gap": 1.0}}
    registry, number, meta = _gated_version(trained, raw)
    assert meta["fairness"]["passes"] is True
    assert registry.alias(CHAMPION) == number


def test_missing_the_metric_threshold_registers_without_promoting(trained, make_raw):
    registry, number, meta = _gated_version(trained, make_raw(metric={"name": "roc_auc", "threshold": 0.9999}))
    assert registry.versions() == [number] and registry.alias(CHAMPION) is None
    assert meta["gates"]["passes"] is False
    [reason] = meta["gates"]["reasons"]
    assert "misses the threshold" in reason and "roc_auc >= 0.9999" in reason


def test_gates_pass_and_fail_both_ways(make_raw):
    spec = parse_spec(make_raw(task="regression", target="y", metric={"name": "mae", "threshold": 2.0}))
    assert gates(spec, {"mae": 1.5}, None)["passes"] is True
    g = gates(spec, {"mae": 2.5}, None)
    assert g["passes"] is False and "mae <= 2" in g["reasons"][0]


@pytest.mark.parametrize("family", ["linear", "random_forest"])
def test_onnx_parity(trained, family, car_loan):
    result = trained.result(family)
    assert result.onnx.model is not None and result.onnx.error is None
    assert result.onnx.max_abs_diff < PARITY_TOLERANCE
    assert result.served_as == "onnx"
    # independently: ONNX Runtime vs scikit-learn on unseen rows
    spec, classes = trained.spec, trained.classes
    from loopml.data import validate

    new = validate(car_loan[1].head(300), spec, require_target=False)
    X = encode(new.assign(repaid=classes[0]), spec, classes).X
    rows = X.astype(object).where(X.notna(), None).to_dict("records")
    onnx = OnnxPredictor(result.onnx.model, schema_of(spec, classes)).predict(rows)
    got = np.array([[p[str(c)] for c in classes] for p in onnx.probabilities])
    assert np.abs(got - result.pipeline.predict_proba(X)).max() < 1e-4


def test_split_by_time_puts_the_latest_rows_in_test(trained, spec):
    shuffled = trained.data.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    s = split(shuffled, spec)
    assert len(s.train) + len(s.valid) + len(s.test) == len(shuffled)
    assert s.train["timestamp"].max() <= s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() <= s.test["timestamp"].min()
    assert s.test["timestamp"].max() == shuffled["timestamp"].max()
    assert len(s.test) == pytest.approx(0.2 * len(shuffled), abs=1)


def test_split_without_timestamp_is_seeded_and_stratified(trained, make_raw):
    spec = parse_spec(make_raw(timestamp=None))
    a, b = split(trained.data.frame, spec), split(trained.data.frame, spec)
    assert a.test["id"].tolist() == b.test["id"].tolist()
    share = trained.data.frame["repaid"].mean()
    assert a.test["repaid"].mean() == pytest.approx(share, abs=0.01)
    assert not set(a.test["id"]) & set(a.train["id"])


def test_split_needs_enough_rows(trained, spec):
    with pytest.raises(ValueError, match="at least 30 rows"):
        split(trained.data.frame.head(10), spec)


@pytest.mark.parametrize("candidate", [
    Candidate(family="linear", n_iter=2),
    Candidate(family="random_forest", n_iter=2, space={"n_estimators": [10, 20], "max_depth": [3, 4, 5]}),
])
def test_seeded_tune_is_reproducible(trained, candidate):
    spec, classes = trained.spec, trained.classes
    train = encode(trained.splits.train, spec, classes)
    valid = encode(trained.splits.valid, spec, classes)
    schema = schema_of(spec, classes)
    a = tune(candidate, train, valid, spec, classes, schema)
    b = tune(candidate, train, valid, spec, classes, schema)
    assert a.params == b.params
    assert a.valid_score == b.valid_score
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert len(a.trials) == 2
    assert a.onnx.model == b.onnx.model


def test_evaluation_reports_metrics_and_importance(trained):
    ev = trained.evaluation
    assert set(ev.metrics) == {"roc_auc", "accuracy", "f1", "precision", "recall"}
    assert 0.5 < ev.metrics["roc_auc"] <= 1.0
    assert {r["feature"] for r in ev.importance} == set(trained.spec.feature_names)
    means = [r["mean"] for r in ev.importance]
    assert means == sorted(means, reverse=True) and means[0] > 0


def _nannyml_task(task: str, tmp_path):
    """NannyML's shipped regression or multiclass set, cut to 2000 training rows, with a spec for it."""
    import nannyml

    from loopml.spec import parse_spec

    nannyml.disable_usage_logging()
    if task == "regression":
        train, _, _ = nannyml.load_synthetic_car_price_dataset()
        metric = {"name": "mae", "threshold": 5000}
    else:
        train, _, _ = nannyml.load_synthetic_multiclass_classification_dataset()
        metric = {"name": "roc_auc", "threshold": 0.6}
    train = train.drop(columns=[c for c in train.columns if c.startswith("y_pred")]).iloc[::10].head(2000)
    train.to_parquet(tmp_path / "train.parquet", index=False)
    feats = [c for c in train.columns if c not in ("y_true", "timestamp", "id")]
    kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(train[c]) and train[c].dtype != bool else "categorical"
             for c in feats}
    spec = parse_spec({"name": task, "task": task, "target": "y_true", "timestamp": "timestamp", "id": "id",
                       "features": [{"name": c, "type": k} for c, k in kinds.items()], "metric": metric,
                       "data": {"train": str(tmp_path / "train.parquet")},
                       "candidates": [{"family": "linear", "n_iter": 1}, {"family": "gradient_boosting", "n_iter": 1}]})
    return spec, train, feats


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_regression_and_multiclass_train_export_and_serve(task, tmp_path):
    from loopml.modeling.inprocess import train_in_process
    from loopml.registry.registry import Registry
    from loopml.serving.server import load_predictor
    from loopml.storage import MemoryStore

    spec, train, feats = _nannyml_task(task, tmp_path)
    registry = Registry(MemoryStore())
    number, decision = train_in_process(spec, registry)
    version = registry.get(number)
    assert decision["promoted"] and version.has_onnx and version.meta["onnx"]["parity_max_abs_diff"] < 1e-4
    out = load_predictor(registry, version).predict([{c: train.iloc[0][c].item() if hasattr(train.iloc[0][c], "item")
                                                      else train.iloc[0][c] for c in feats}])
    if task == "regression":
        assert out.probabilities is None and isinstance(out.predictions[0], float)
        assert set(version.meta["metrics"]) == {"mae", "rmse", "r2"}
    else:
        classes = version.meta["schema"]["classes"]
        assert len(classes) == 3 and out.predictions[0] in classes
        assert set(out.probabilities[0]) == set(classes) and abs(sum(out.probabilities[0].values()) - 1) < 1e-5
    reference = registry.reference(version)
    proba_cols = [c for c in reference.columns if c.startswith("y_pred_proba")]
    assert len(proba_cols) == (0 if task == "regression" else 3)
