"""Check a DataFrame against the spec and coerce it to the types the pipeline expects.

Validation collects every problem before failing, so one run tells the user all that is wrong.
It returns a new frame and never mutates its input.
"""

from __future__ import annotations

import pandas as pd

from loopml.spec import ProblemSpec


class DataError(ValueError):
    """The data does not fit the spec; the message names the columns and what is wrong."""


def validate(df: pd.DataFrame, spec: ProblemSpec, *, require_target: bool = True, source: str = "data") -> pd.DataFrame:
    problems: list[str] = []
    if df.empty:
        raise DataError(f"{source}: no rows")
    required = list(spec.feature_names)
    if require_target:
        required.append(spec.target)
    if spec.timestamp:
        required.append(spec.timestamp)
    if spec.id:
        required.append(spec.id)
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(f"missing columns {missing}")

    out = df.copy()
    for col in spec.numeric:
        if col in out.columns:
            if out[col].dtype == bool:
                out[col] = out[col].astype(float)
            converted = pd.to_numeric(out[col], errors="coerce")
            bad = converted.isna() & out[col].notna()
            if bad.any():
                sample = out.loc[bad, col].astype(str).unique()[:3].tolist()
                problems.append(f"column {col!r} is numeric in the spec but has {int(bad.sum())} non-numeric values, e.g. {sample}")
            out[col] = converted.astype(float)
    for col in spec.categorical:
        if col in out.columns:
            out[col] = out[col].astype("object").where(out[col].notna(), None)
            out[col] = out[col].map(lambda v: v if v is None else str(v))

    if require_target and spec.target in out.columns:
        n_missing = int(out[spec.target].isna().sum())
        if n_missing:
            problems.append(f"target {spec.target!r} is missing in {n_missing} rows")
        if spec.task == "regression":
            target = pd.to_numeric(out[spec.target], errors="coerce")
            if (target.isna() & out[spec.target].notna()).any():
                problems.append(f"target {spec.target!r} must be numeric for regression")
            out[spec.target] = target
        elif out[spec.target].nunique() < 2:
            problems.append(f"target {spec.target!r} has fewer than 2 classes")
        elif spec.task == "binary" and out[spec.target].nunique() > 2:
            problems.append(f"target {spec.target!r} has {out[spec.target].nunique()} classes; task is binary")

    if spec.timestamp and spec.timestamp in out.columns:
        ts = pd.to_datetime(out[spec.timestamp], errors="coerce")
        bad = int((ts.isna() & out[spec.timestamp].notna()).sum()) + int(out[spec.timestamp].isna().sum())
        if bad:
            problems.append(f"timestamp {spec.timestamp!r} has {bad} missing or unparseable values")
        out[spec.timestamp] = ts
    if spec.id and spec.id in out.columns and out[spec.id].duplicated().any():
        problems.append(f"id column {spec.id!r} has duplicated values")
    for col in spec.feature_names:  # missing in the input: values that failed a conversion are reported above
        if col in out.columns and df[col].isna().all():
            problems.append(f"column {col!r} is entirely missing")

    if problems:
        raise DataError(f"{source}: " + "; ".join(problems))
    return out
