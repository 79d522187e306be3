"""Check a DataFrame against the spec and coerce it to the types the pipeline expects.

Validation collects every problem before failing, so one run tells the user all that is wrong.
It returns a new frame and never mutates its input.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    """A copy of ``df`` with the spec's types (numbers as floats, categories as strings, timestamps as
    naive UTC datetimes), or :class:`DataError` listing every problem found, prefixed with ``source``.

    ``require_target=False`` checks data to be scored, which has no labels yet."""
    if df.empty:
        raise DataError(f"{source}: no rows")
    problems = _missing_columns(df, spec, require_target)
    out = df.copy()
    problems += _coerce_numeric(out, spec.numeric)
    _coerce_categorical(out, spec.categorical)
    if require_target and spec.target in out.columns:
        problems += _check_target(out, spec)
    if spec.timestamp and spec.timestamp in out.columns:
        problems += _check_timestamp(out, spec)
    if spec.id and spec.id in out.columns:
        problems += _check_ids(out[spec.id], spec.id)
    problems += _entirely_missing(df, spec.feature_names)
    if problems:
        raise DataError(f"{source}: " + "; ".join(problems))
    return out


def _missing_columns(df: pd.DataFrame, spec: ProblemSpec, require_target: bool) -> list[str]:
    """The spec's columns (features, the target when required, timestamp, id) that ``df`` lacks."""
    required = list(spec.feature_names)
    if require_target:
        required.append(spec.target)
    if spec.timestamp:
        required.append(spec.timestamp)
    if spec.id:
        required.append(spec.id)
    missing = [c for c in required if c not in df.columns]
    return [f"missing columns {missing}"] if missing else []


def _coerce_numeric(out: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Turn the numeric columns of ``out`` into floats, in place; booleans and text are problems (and
    become missing), never 1.0/0.0 or a silent NaN."""
    problems: list[str] = []
    for col in columns:
        if col not in out.columns:
            continue
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
    return problems


def _coerce_categorical(out: pd.DataFrame, columns: Iterable[str]) -> None:
    """Turn the categorical columns of ``out`` into strings, in place (any value is a category)."""
    for col in columns:
        if col in out.columns:
            out[col] = _as_categories(out[col])


def _check_target(out: pd.DataFrame, spec: ProblemSpec) -> list[str]:
    """The target's problems: missing values, non-numbers for regression (made numeric in place), fewer
    than two classes, or more than two for a binary task."""
    target = spec.target
    problems: list[str] = []
    n_missing = int(out[target].isna().sum())
    if n_missing:
        problems.append(f"target {target!r} is missing in {n_missing} rows")
    if spec.task == "regression":
        numbers = pd.to_numeric(out[target], errors="coerce")
        if (numbers.isna() & out[target].notna()).any():
            problems.append(f"target {target!r} must be numeric for regression")
        out[target] = numbers
    elif out[target].nunique() < 2:
        problems.append(f"target {target!r} has fewer than 2 classes")
    elif spec.task == "binary" and out[target].nunique() > 2:
        problems.append(f"target {target!r} has {out[target].nunique()} classes; task is binary")
    return problems


def _check_timestamp(out: pd.DataFrame, spec: ProblemSpec) -> list[str]:
    """Parse the timestamp column of ``out`` in place (see :func:`parse_timestamps`); its problem, if any."""
    column = spec.timestamp
    ts, problem = parse_timestamps(out[column], column, spec.timestamp_format, spec.timestamp_unit)
    out[column] = ts
    return [problem] if problem else []


def _check_ids(ids: pd.Series, column: str) -> list[str]:
    """Ids must be present in every row and unique: labels and predictions are joined by them."""
    null = ids.isna()
    if null.any():
        return [f"id column {column!r} is missing in rows {_rows(null)}"]
    if ids.duplicated().any():
        return [f"id column {column!r} has duplicated values"]
    return []


def _entirely_missing(df: pd.DataFrame, features: Iterable[str]) -> list[str]:
    """Features with no value at all in the input ``df`` (values that failed a conversion are reported
    by their own check, so this looks at the data as given)."""
    return [f"column {col!r} is entirely missing" for col in features if col in df.columns and df[col].isna().all()]


def _as_categories(values: pd.Series) -> pd.Series:
    """Categories as pandas strings, missing kept missing. Vectorised (Arrow-backed in pandas 3): the
    same text str() gives per value (1 -> '1', True -> 'True'), without a Python call per row."""
    return values.astype("str")
