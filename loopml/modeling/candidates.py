"""Candidate model families and their default search spaces (a spec may override the space)."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

# how readable a fitted model is to a person: used when the spec prefers interpretability
INTERPRETABLE = {"linear": True, "random_forest": False, "gradient_boosting": False, "extra_trees": False}


def make_estimator(family: str, task: str, seed: int) -> BaseEstimator:
    """An unfitted scikit-learn estimator of ``family`` for ``task`` (seeded where it is random)."""
    clf = task != "regression"
    if family == "linear":
        return LogisticRegression(max_iter=2000) if clf else Ridge()
    if family == "random_forest":
        cls = RandomForestClassifier if clf else RandomForestRegressor
        return cls(random_state=seed, n_jobs=1)
    if family == "extra_trees":
        cls = ExtraTreesClassifier if clf else ExtraTreesRegressor
        return cls(random_state=seed, n_jobs=1)
    if family == "gradient_boosting":
        cls = GradientBoostingClassifier if clf else GradientBoostingRegressor
        return cls(random_state=seed)
    raise ValueError(f"unknown model family {family!r}")


def default_space(family: str, task: str) -> dict[str, list[Any]]:
    """The hyperparameters searched for ``family`` when the spec gives no ``space`` of its own."""
    if family == "linear":
        return {"C": [0.01, 0.1, 1.0, 10.0]} if task != "regression" else {"alpha": [0.1, 1.0, 10.0, 100.0]}
    if family in ("random_forest", "extra_trees"):
        return {"n_estimators": [50, 100], "max_depth": [6, 10, 16], "min_samples_leaf": [1, 5, 20]}
    if family == "gradient_boosting":
        return {"n_estimators": [50, 100, 200], "max_depth": [2, 3, 4], "learning_rate": [0.05, 0.1, 0.2]}
    raise ValueError(f"unknown model family {family!r}")
