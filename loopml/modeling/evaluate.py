"""The selected model on the held-out test split: metrics, fairness (fairness.py), permutation
importance, the reference frame NannyML monitors against, the calibration of its probabilities on that
reference (what CBPE's estimates rest on) and the training-time warnings (checks.py, and whether the
reference is big and calibrated enough for monitoring's estimates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from loopml.modeling.checks import training_warnings
from loopml.modeling.fairness import fairness
from loopml.modeling.metrics import all_metrics, score
from loopml.modeling.split import Splits
from loopml.modeling.tune import CandidateResult, Encoded, encode, model_outputs, true_labels
from loopml.spec import ProblemSpec


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


def with_predictions(df: pd.DataFrame, spec: ProblemSpec, pred: np.ndarray, proba: np.ndarray | None, classes: list | None) -> pd.DataFrame:
    """What NannyML needs: features, targets, timestamps and ids beside predictions and probabilities."""
    keep = [c for c in [spec.id, spec.timestamp, *spec.feature_names, spec.target] if c and c in df.columns]
    out = df[keep].reset_index(drop=True).copy()
    out["y_pred"] = pred.tolist() if spec.is_classifier else pred
    if proba is not None and classes is not None:
        if len(classes) == 2:
            out["y_pred_proba"] = proba[:, 1]
        else:
            for i, c in enumerate(classes):
                out[f"y_pred_proba_{c}"] = proba[:, i]
    return out


@dataclass
class Evaluation:
    """The selected model on the held-out test split: what the version record stores of it, and the
    reference frame (test rows with predictions) monitoring compares new data with."""

    metrics: dict[str, float]
    fairness: dict[str, Any] | None
    importance: list[dict[str, float]]
    reference: pd.DataFrame
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # Brier score, ECE and reliability bins on the reference; None for regression (no probabilities)
    calibration: dict[str, Any] | None = None


def evaluate(winner: CandidateResult, splits: Splits, spec: ProblemSpec, classes: list | None) -> Evaluation:
    """Predict the test set once; metrics, fairness and the reference set all read those outputs.
    The training-time warnings about the data travel with the evaluation into the version record."""
    # here, not at the top: loopml.monitoring imports NannyML (about 2 s), which only this function needs
    from loopml.modeling.calibration import training_diagnostics

    test = encode(splits.test, spec, classes)
    pred, proba = model_outputs(winner.pipeline, test.X, spec, classes)
    y = true_labels(test.y, classes)
    # the test split is the monitoring reference: its size and calibration decide how far CBPE can be trusted
    calibration, reference_warnings = training_diagnostics(spec, y, proba, classes)
    return Evaluation(
        metrics=all_metrics(spec.task, y, pred, proba, classes),
        fairness=fairness(splits.test, y, pred, proba, spec, classes),
        importance=importance(winner.pipeline, test, spec, classes),
        reference=with_predictions(splits.test, spec, pred, proba, classes),
        warnings=training_warnings(splits, spec, classes) + reference_warnings,
        calibration=calibration,
    )
