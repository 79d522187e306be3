"""Check a DataFrame against the spec and coerce it to the types the pipeline expects.

Validation collects every problem before failing, so one run tells the user all that is wrong.
It returns a new frame and never mutates its input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopml.spec import ProblemSpec

EPOCH_UNITS = ("s", "ms", "us", "ns")


class DataError(ValueError):
    """The data does not fit the spec; the message names the columns and what is wrong."""


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """The first offending rows by index label (batches keep the file's running row number)."""
    idx = mask[mask].index[:limit].tolist()
    more = int(mask.sum()) - len(idx)
    return ", ".join(map(str, idx)) + (f" and {more} more" if more > 0 else "")


def _holds_bools(values: pd.Series) -> pd.Series:
    """True/False among numbers: pandas would read them as 1.0/0.0, which is never what a feature meant."""
    if values.dtype == bool:
        return values.notna()
    if values.dtype != object:
        return pd.Series(False, index=values.index)
    return values.map(lambda v: isinstance(v, bool | np.bool_))


def parse_timestamps(values: pd.Series, column: str, fmt: str | None = None,
                     unit: str | None = None) -> tuple[pd.Series, str | None]:
    """Timestamps as naive UTC datetimes, or a problem. Strings must be ISO 8601 unless ``fmt`` says
    how they are written (01/02/2019 is January or February: never guessed); numbers are epoch times
    only with an explicit ``unit`` (never silently 1970)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_bool_dtype(values):
        return values, f"timestamp {column!r} holds booleans"
    elif pd.api.types.is_numeric_dtype(values):
        if unit is None:
            sample = values.dropna().head(1).tolist()
            return values, (f"timestamp {column!r} holds numbers (e.g. {sample}); if they are epoch times, "
                            f"set timestamp_unit ({', '.join(EPOCH_UNITS)}) in the spec")
        parsed = pd.to_datetime(values, unit=unit, errors="coerce", utc=True)
    elif unit is not None:
        parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=unit, errors="coerce", utc=True)
    else:
        parsed = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce", utc=True)
    if getattr(parsed.dtype, "tz", None) is not None:  # offsets become UTC, then naive like everything else
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.isna()
    if not bad.any():
        return parsed, None
    unparsed = bad & values.notna()
    if not unparsed.any():
        return parsed, f"timestamp {column!r} is missing in rows {_rows(bad)}"
    sample = values[unparsed].astype(str).unique()[:3].tolist()
    how = (f"timestamp_format {fmt!r}" if fmt else f"timestamp_unit {unit!r}" if unit else
           "ISO 8601 (e.g. 2019-01-31 or 2019-01-31T08:00:00); day-first and month-first dates are ambiguous, "
           "so set timestamp_format (e.g. '%d/%m/%Y') in the spec")
    return parsed, f"timestamp {column!r} has {int(bad.sum())} missing or unparseable values, e.g. {sample}: expected {how}"


def canonical_ids(values: pd.Series) -> pd.Series:
    """Ids as strings exactly as the data gave them: integers stay integers ('60281', never '60281.0',
    which a float column would give), strings are kept verbatim, so labels join by the same text."""
    if pd.api.types.is_integer_dtype(values):
        return values.astype("int64").astype(str)
    if pd.api.types.is_float_dtype(values) and values.notna().all() and (values % 1 == 0).all():
        return values.astype("int64").astype(str)
    return values.map(lambda v: v if isinstance(v, str) else str(v))


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
            bools = _holds_bools(out[col])
            if bools.any():
                problems.append(f"column {col!r} is numeric in the spec but holds True/False in rows {_rows(bools)}")
                out[col] = out[col].where(~bools, None)
            converted = pd.to_numeric(out[col], errors="coerce")
            bad = converted.isna() & out[col].notna()
            if bad.any():
                sample = out.loc[bad, col].astype(str).unique()[:3].tolist()
                problems.append(f"column {col!r} is numeric in the spec but has {int(bad.sum())} non-numeric values, e.g. {sample}")
            out[col] = converted.astype(float)
    for col in spec.categorical:
        if col in out.columns:
            out[col] = _as_categories(out[col])

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
        ts, problem = parse_timestamps(out[spec.timestamp], spec.timestamp, spec.timestamp_format, spec.timestamp_unit)
        if problem:
            problems.append(problem)
        out[spec.timestamp] = ts
    if spec.id and spec.id in out.columns:
        null = out[spec.id].isna()
        if null.any():
            problems.append(f"id column {spec.id!r} is missing in rows {_rows(null)}")
        elif out[spec.id].duplicated().any():
            problems.append(f"id column {spec.id!r} has duplicated values")
    for col in spec.feature_names:  # missing in the input: values that failed a conversion are reported above
        if col in out.columns and df[col].isna().all():
            problems.append(f"column {col!r} is entirely missing")

    if problems:
        raise DataError(f"{source}: " + "; ".join(problems))
    return out


def _as_categories(values: pd.Series) -> pd.Series:
    """Categories as pandas strings, missing kept missing. Vectorised (Arrow-backed in pandas 3): the
    same text str() gives per value (1 -> '1', True -> 'True'), without a Python call per row."""
    return values.astype("str")
