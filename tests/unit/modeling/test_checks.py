"""Training-time warnings: ID-like and near-constant columns, target leakage, too few rows per class or
fairness group. Clean data raises none; each kind is caught on data made to show it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopml.modeling.checks import training_warnings
from loopml.modeling.split import make_splits
from loopml.spec import parse_spec


def _warnings(make_raw, df: pd.DataFrame, extra_features: list[dict] = (), **changes) -> list[dict]:
    raw = make_raw(**changes)
    raw["features"] = [*raw["features"], *extra_features]
    spec = parse_spec(raw)
    splits, classes = make_splits(df, spec)
    return training_warnings(splits, spec, classes)


def test_clean_data_raises_no_warning(trained):
    assert training_warnings(trained.splits, trained.spec, trained.classes) == []
    # the evaluation adds what it finds about the reference (its size, its calibration): not about the data
    assert [w for w in trained.evaluation.warnings if w["kind"] not in ("small_reference", "poorly_calibrated")] == []


def test_id_like_near_constant_and_leaking_columns_are_named(make_raw, car_loan):
    df = car_loan[0].head(1500).copy()
    rng = np.random.default_rng(0)
    df["ticket"] = [f"T-{i:06d}" for i in rng.permutation(len(df))]  # all-unique text
    df["branch"] = np.where(np.arange(len(df)) < 5, "north", "south")  # 99.7% the same
    df["paid_back_amount"] = df["repaid"] * 1000 + rng.normal(0, 50, len(df))  # known only after the target
    warnings = _warnings(make_raw, df, [{"name": "ticket", "type": "categorical"},
                                        {"name": "branch", "type": "categorical"},
                                        {"name": "paid_back_amount", "type": "numeric"}])
    by_kind = {(w["kind"], w["column"]) for w in warnings}
    assert by_kind == {("id_like", "ticket"), ("near_constant", "branch"), ("leakage", "paid_back_amount")}, warnings
    leak = next(w for w in warnings if w["kind"] == "leakage")
    assert "alone predicts 'repaid' almost perfectly (ROC AUC" in leak["message"]


def test_a_leaking_categorical_is_judged_out_of_sample(make_raw, car_loan):
    """An ID-like text column predicts the target perfectly in sample; out of sample it predicts
    nothing, so it is reported as ID-like only. A category that spells the target is leakage."""
    df = car_loan[0].head(1500).copy()
    df["status_text"] = np.where(df["repaid"] == 1.0, "closed-paid", "closed-default")
    df["ticket"] = [f"T-{i:06d}" for i in range(len(df))]
    warnings = _warnings(make_raw, df, [{"name": "status_text", "type": "categorical"},
                                        {"name": "ticket", "type": "categorical"}])
    assert {(w["kind"], w["column"]) for w in warnings} == {("leakage", "status_text"), ("id_like", "ticket")}


def test_too_few_rows_per_class_and_per_fairness_group(make_raw, car_loan):
    df = car_loan[0].head(1500).copy()
    positives = df.index[df["repaid"] == 1.0]
    df = df.drop(positives[20:]).reset_index(drop=True)  # 20 rows of class 1.0
    df["region"] = np.where(np.arange(len(df)) % 50 == 0, "islands", "mainland")
    warnings = _warnings(make_raw, df, [], constraints={"fairness": {"group": "region", "max_gap": 0.2}})
    kinds = {(w["kind"], w["column"]) for w in warnings}
    assert ("few_rows_per_class", "repaid") in kinds
    assert ("few_rows_per_group", "region") in kinds
    group = next(w for w in warnings if w["kind"] == "few_rows_per_group")
    assert "'islands'" in group["message"] and "min_group_size 30" in group["message"]
