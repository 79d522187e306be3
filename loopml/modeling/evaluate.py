"""Fairness across groups and permutation importance of the chosen model (test metrics: metrics.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from loopml.modeling.metrics import score
from loopml.modeling.tune import Encoded, model_outputs, true_labels
from loopml.spec import ProblemSpec


def fairness(test_df: pd.DataFrame, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, spec: ProblemSpec,
             classes: list | None) -> dict[str, Any] | None:
    """The success metric per group and the largest gap between groups (labels and outputs of ``test_df``)."""
    f = spec.constraints.fairness
    if f is None:
        return None
    if f.group not in test_df.columns:
        raise ValueError(f"constraints.fairness.group: column {f.group!r} is not in the data")
    groups = test_df[f.group].astype(str).to_numpy()
    per_group: dict[str, dict[str, Any]] = {}
    for g in sorted(set(groups)):
        m = groups == g
        try:
            value = score(spec.metric.name, y[m], pred[m], None if proba is None else proba[m], classes)
        except ValueError as err:  # e.g. one class only in a small group: say so instead of guessing
            per_group[g] = {"n": int(m.sum()), "value": None, "note": str(err)}
            continue
        per_group[g] = {"n": int(m.sum()), "value": value}
    values = [v["value"] for v in per_group.values() if v["value"] is not None]
    gap = float(max(values) - min(values)) if len(values) >= 2 else 0.0
    return {"group": f.group, "metric": spec.metric.name, "per_group": per_group, "gap": gap,
            "max_gap": f.max_gap, "passes": gap <= f.max_gap}


def importance(pipeline: Pipeline, test: Encoded, spec: ProblemSpec, classes: list | None, max_rows: int = 2000) -> list[dict[str, float]]:
    """Permutation importance on (a sample of) the test set, in the spec's metric."""
    n = min(len(test.X), max_rows)
    X, y = test.X.iloc[:n], test.y[:n]
    metric = spec.metric.name

    def _score(est, X_, y_):
        pred, proba = model_outputs(est, X_, spec, classes)
        value = score(metric, true_labels(y_, classes), pred, proba, classes)
        return value if spec.metric.higher_is_better else -value

    result = permutation_importance(pipeline, X, y, scoring=_score, n_repeats=5, random_state=spec.seed, n_jobs=1)
    rows = [{"feature": f, "mean": float(m), "std": float(s)}
            for f, m, s in zip(X.columns, result.importances_mean, result.importances_std, strict=True)]
    return sorted(rows, key=lambda r: -r["mean"])

