"""The feature pipeline built from the spec: imputation, scaling, one-hot with unseen categories ignored."""

from __future__ import annotations

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.spec import ProblemSpec

MISSING = "__missing__"


def build_preprocessor(spec: ProblemSpec, scale: bool = True) -> ColumnTransformer:
    """``scale=False`` for trees: they split on float32 values, so an unscaled input is split the same
    way by scikit-learn and by ONNX Runtime (which computes in float32), keeping the two at parity."""
    parts = []
    if spec.numeric:
        steps = [("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else [])
        numeric = Pipeline(steps)
        parts.append(("num", numeric, spec.numeric))
    if spec.categorical:
        # categoricals arrive with missing values already replaced by MISSING (see prepare): string
        # imputation is not portable to ONNX, and the serving path does the same replacement
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("cat", onehot, spec.categorical))
    return ColumnTransformer(parts, remainder="drop")


def prepare(df: pd.DataFrame, spec: ProblemSpec) -> pd.DataFrame:
    """The model's input frame: spec features only, categoricals as strings with a missing marker."""
    X = df[spec.feature_names].copy()
    for col in spec.categorical:
        X[col] = X[col].astype("object").where(X[col].notna(), MISSING).astype(str)
    for col in spec.numeric:
        X[col] = X[col].astype("float64")
    return X
