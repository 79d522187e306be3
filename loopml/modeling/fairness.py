"""Fairness across groups: the success metric per group of the spec's group column, and the gap.

A missing value in the group column is a group of its own, named ``(missing)``. A group is judged only
when it has at least ``min_group_size`` test rows and its metric is defined there (ROC AUC needs both
classes); other groups are reported with a note and never decide the verdict. The gap is taken over
judged groups; with fewer than two of them there is no gap (``None``) and the gate passes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from loopml.modeling.metrics import score
from loopml.spec import ProblemSpec

MISSING_GROUP = "(missing)"


def group_labels(values: pd.Series) -> np.ndarray:
    """Group names as strings, a missing value being its own group (so names always sort)."""
    return values.astype(object).where(values.notna(), MISSING_GROUP).map(str).to_numpy()


def _group_score(metric: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list | None
                 ) -> tuple[float | None, str | None]:
    """The metric on one group, or None and why it is undefined there."""
    if classes is not None and metric == "roc_auc" and len(set(y.tolist())) < 2:
        return None, f"only one class ({y[0]}) in this group: {metric} is undefined"
    try:
        value = score(metric, y, pred, proba, classes)
    except ValueError as err:
        return None, str(err)
    if not math.isfinite(value):
        return None, f"{metric} is undefined on this group"
    return value, None


def fairness(test_df: pd.DataFrame, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, spec: ProblemSpec,
             classes: list | None) -> dict[str, Any] | None:
    """The success metric per group and the largest gap between judged groups (labels and outputs of ``test_df``)."""
    f = spec.constraints.fairness
    if f is None:
        return None
    if f.group not in test_df.columns:
        raise ValueError(f"constraints.fairness.group: column {f.group!r} is not in the data")
    groups = group_labels(test_df[f.group].reset_index(drop=True))
    per_group: dict[str, dict[str, Any]] = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        n = int(m.sum())
        if n < f.min_group_size:
            per_group[g] = {"n": n, "value": None, "judged": False,
                            "note": f"{n} test rows < min_group_size {f.min_group_size}: reported, not judged"}
            continue
        value, note = _group_score(spec.metric.name, y[m], pred[m], None if proba is None else proba[m], classes)
        per_group[g] = {"n": n, "value": value, "judged": value is not None, **({"note": note} if note else {})}
    values = [v["value"] for v in per_group.values() if v["judged"]]
    gap = float(max(values) - min(values)) if len(values) >= 2 else None
    return {"group": f.group, "metric": spec.metric.name, "per_group": per_group, "gap": gap,
            "judged_groups": len(values), "min_group_size": f.min_group_size, "max_gap": f.max_gap,
            "passes": gap is None or gap <= f.max_gap}
