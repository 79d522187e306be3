"""Training-time warnings about the data: ID-like and near-constant columns, likely target leakage,
too few rows per class or per fairness group. They do not stop training; `loopml train` prints them and
the version record keeps them, so a surprising model can be traced to what was already visible.

Leakage is judged out of sample: each feature alone is fitted on the training split (a shallow tree on
a numeric value, the target's per-category frequencies on a categorical one) and scored on the held-out
rows; a feature that alone reaches ``LEAK_SCORE`` (ROC AUC, or R² for regression) is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from loopml.modeling.fairness import group_labels
from loopml.modeling.split import Splits
from loopml.spec import ProblemSpec

ID_LIKE_SHARE = 0.95  # distinct values per non-missing row from which a text column looks like an identifier
NEAR_CONSTANT_SHARE = 0.99  # share of rows holding the most common value (missing counts as a value)
LEAK_SCORE = 0.99  # held-out ROC AUC (classification) or R² (regression) of one feature alone
MIN_CLASS_ROWS = 30
MIN_ROWS_TO_JUDGE = 50


def _warning(kind: str, column: str | None, message: str) -> dict[str, Any]:
    return {"kind": kind, "column": column, "message": message}


def id_like(df: pd.DataFrame, spec: ProblemSpec) -> list[dict[str, Any]]:
    """Features whose values (nearly) never repeat: identifiers a model learns nothing general from."""
    out = []
    for f in spec.features:
        values = df[f.name].dropna()
        if len(values) < MIN_ROWS_TO_JUDGE:
            continue
        distinct = values.nunique()
        if f.type == "numeric":
            # a measurement is often distinct per row without being an identifier: only whole numbers
            # that never repeat look like one (prices and counts repeat once the data is large enough)
            if distinct < len(values) or not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
                continue
        if distinct >= ID_LIKE_SHARE * len(values):
            out.append(_warning("id_like", f.name, f"feature {f.name!r} looks like an identifier: {distinct} distinct "
                                                   f"values in {len(values)} rows; a model learns nothing general from it"))
    return out


def near_constant(df: pd.DataFrame, spec: ProblemSpec) -> list[dict[str, Any]]:
    """Features where one value (missing included) fills nearly every row."""
    out = []
    for name in spec.feature_names:
        counts = df[name].value_counts(dropna=False)
        if counts.empty:
            continue
        share = counts.iloc[0] / len(df)
        if share >= NEAR_CONSTANT_SHARE:
            top = counts.index[0]
            shown = "missing" if pd.isna(top) else repr(top)
            out.append(_warning("near_constant", name, f"feature {name!r} is nearly constant: {share:.1%} of rows are {shown}"))
    return out


def _one_feature_score(train: pd.DataFrame, held: pd.DataFrame, name: str, numeric: bool, spec: ProblemSpec,
                       classes: list[Any] | None) -> float | None:
    """How well ``name`` alone predicts the target on held-out rows (ROC AUC or R²), fitted on ``train``."""
    y_train, y_held = train[spec.target].to_numpy(), held[spec.target].to_numpy()
    if numeric:
        fill = float(np.nanmin(train[name].to_numpy(dtype=float))) - 1 if train[name].notna().any() else 0.0
        X_train = train[[name]].astype(float).fillna(fill).to_numpy()
        X_held = held[[name]].astype(float).fillna(fill).to_numpy()
        if classes is None:
            model = DecisionTreeRegressor(max_depth=4, min_samples_leaf=5, random_state=0).fit(X_train, y_train)
            return float(r2_score(y_held, model.predict(X_held)))
        tree = DecisionTreeClassifier(max_depth=4, min_samples_leaf=5, random_state=0).fit(X_train, y_train)
        proba = np.zeros((len(held), len(classes)))
        for j, c in enumerate(tree.classes_):
            proba[:, classes.index(c)] = tree.predict_proba(X_held)[:, j]
    else:
        key_train, key_held = group_labels(train[name]), group_labels(held[name])
        if classes is None:
            means = pd.Series(y_train.astype(float)).groupby(key_train).mean()
            pred = pd.Series(key_held).map(means).fillna(float(np.mean(y_train))).to_numpy()
            return float(r2_score(y_held, pred))
        freq = pd.crosstab(key_train, y_train, normalize="index").reindex(columns=classes, fill_value=0.0)
        prior = pd.Series(y_train).value_counts(normalize=True).reindex(classes, fill_value=0.0)
        proba = freq.reindex(key_held).fillna(prior).to_numpy()
    present = set(y_held.tolist())
    if len(present) < 2:
        return None
    if len(classes) == 2:
        return float(roc_auc_score(y_held == classes[1], proba[:, 1]))
    if len(present) < len(classes):
        return None
    return float(roc_auc_score(y_held, proba, multi_class="ovr", labels=classes))


def leakage(splits: Splits, spec: ProblemSpec, classes: list[Any] | None) -> list[dict[str, Any]]:
    """Features that alone predict the target almost perfectly on held-out rows: likely known only after it."""
    held = pd.concat([splits.valid, splits.test], ignore_index=True)
    if len(splits.train) < MIN_ROWS_TO_JUDGE or len(held) < MIN_ROWS_TO_JUDGE:
        return []
    out = []
    what = "R²" if classes is None else "ROC AUC"
    for f in spec.features:
        value = _one_feature_score(splits.train, held, f.name, f.type == "numeric", spec, classes)
        if value is not None and value >= LEAK_SCORE:
            out.append(_warning("leakage", f.name, f"feature {f.name!r} alone predicts {spec.target!r} almost perfectly "
                                                   f"({what} {value:.3f} on held-out rows): is it known before the target?"))
    return out


def small_classes(df: pd.DataFrame, spec: ProblemSpec, classes: list[Any] | None) -> list[dict[str, Any]]:
    """Classes with too few rows for their metrics to mean anything."""
    if classes is None:
        return []
    counts = df[spec.target].value_counts()
    return [_warning("few_rows_per_class", spec.target, f"class {c!r} of {spec.target!r} has only {int(counts.get(c, 0))} "
                                                        f"rows (< {MIN_CLASS_ROWS}): its metrics are noise")
            for c in classes if counts.get(c, 0) < MIN_CLASS_ROWS]


def small_groups(test: pd.DataFrame, spec: ProblemSpec) -> list[dict[str, Any]]:
    """Fairness groups with fewer test rows than ``min_group_size``: reported, not judged."""
    f = spec.constraints.fairness
    if f is None or f.group not in test.columns:
        return []
    counts = pd.Series(group_labels(test[f.group])).value_counts()
    return [_warning("few_rows_per_group", f.group, f"fairness group {g!r} of {f.group!r} has {int(n)} test rows "
                                                    f"(< min_group_size {f.min_group_size}): reported, not judged")
            for g, n in sorted(counts.items()) if n < f.min_group_size]


def training_warnings(splits: Splits, spec: ProblemSpec, classes: list[Any] | None) -> list[dict[str, Any]]:
    """Every warning about the training data ({kind, column, message}), stored with the version."""
    frame = pd.concat([splits.train, splits.valid, splits.test], ignore_index=True)
    return [*id_like(frame, spec), *near_constant(frame, spec), *leakage(splits, spec, classes),
            *small_classes(frame, spec, classes), *small_groups(splits.test, spec)]
