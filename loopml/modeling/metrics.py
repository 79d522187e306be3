"""The success metrics of the spec, computed the same way everywhere (selection, test, fairness)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def score(metric: str, y_true, y_pred, proba: np.ndarray | None = None, classes: list | None = None) -> float:
    """``proba`` is (n, n_classes) for classifiers; binary uses its last column (the positive class)."""
    if metric == "roc_auc":
        if proba is None:
            raise ValueError("roc_auc needs probabilities")
        if proba.shape[1] == 2:
            return float(skm.roc_auc_score(np.asarray(y_true) == classes[-1], proba[:, 1]))
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if metric in ("f1", "precision", "recall"):
        fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
        binary = classes is not None and len(classes) == 2
        kw = {"pos_label": classes[-1]} if binary else {"average": "macro"}
        return float(fn(y_true, y_pred, zero_division=0, **kw))
    if metric == "mae":
        return float(skm.mean_absolute_error(y_true, y_pred))
    if metric == "mse":
        return float(skm.mean_squared_error(y_true, y_pred))
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if metric == "r2":
        return float(skm.r2_score(y_true, y_pred))
    raise ValueError(f"unknown metric {metric!r}")


def all_metrics(task: str, y_true, y_pred, proba: np.ndarray | None, classes: list | None) -> dict[str, float]:
    """Every metric reported for ``task`` (metric name -> value)."""
    names = ["mae", "rmse", "r2"] if task == "regression" else ["roc_auc", "accuracy", "f1"]
    if task == "binary":
        names += ["precision", "recall"]
    return {m: score(m, y_true, y_pred, proba, classes) for m in names}
