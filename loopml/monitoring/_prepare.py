"""Turn loopml's reference/analysis frames into the narrow, typed frames NannyML expects.

Everything that can go wrong with the *analysis* data (schema drift, missing columns, no labels, too
few rows) is recorded as a message and worked around here, so the calculators downstream only see
columns they can use. Problems with the *reference* data are a broken contract upstream and raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from nannyml.chunk import Chunker, PeriodBasedChunker, SizeBasedChunker

from loopml.spec import ProblemSpec

# Working column names: prefixed so they can never collide with a user's feature name.
Y_TRUE = "__loopml_y_true"
Y_PRED = "__loopml_y_pred"
Y_PROBA = "__loopml_y_pred_proba"
TS = "__loopml_timestamp"


@dataclass
class Prepared:
    reference: pd.DataFrame
    analysis: pd.DataFrame
    features: list[str]  # usable in both frames
    continuous: list[str]
    categorical: list[str]
    drift_features: list[str]  # features with at least one value in analysis and reference
    y_pred_proba: str | dict[str, str] | None
    has_labels: bool
    timestamp: str | None
    chunker: Chunker
    messages: list[str] = field(default_factory=list)


def proba_column(frame: pd.DataFrame, cls: object) -> str | None:
    """The ``y_pred_proba_<class>`` column of a class, tolerating ``1.0`` vs ``1`` spellings."""
    candidates = [f"y_pred_proba_{cls}"]
    if isinstance(cls, float) and cls.is_integer():
        candidates.append(f"y_pred_proba_{int(cls)}")
    return next((c for c in candidates if c in frame.columns), None)


def prepare(reference: pd.DataFrame, analysis: pd.DataFrame, spec: ProblemSpec, classes: list | None) -> Prepared:
    messages: list[str] = []
    _require_reference(reference, spec, classes)
    reference = reference[reference[spec.target].notna()]
    features = _usable_features(reference, analysis, spec, messages)
    timestamp = _timestamp(reference, analysis, spec, messages)

    reference = _clean_rows(reference, spec, timestamp, messages, "reference")
    analysis = _clean_rows(analysis, spec, timestamp, messages, "analysis")
    ref = _frame(reference, features, timestamp, spec, messages, "reference")
    ana = _frame(analysis, features, timestamp, spec, messages, "analysis")
    proba = _outputs(reference, analysis, ref, ana, spec, classes, messages)
    has_labels = _labels(analysis, ana, spec, classes, messages)
    if not has_labels:
        ana = ana.drop(columns=[Y_TRUE], errors="ignore")

    drift = [f for f in features if ref[f].notna().any() and ana[f].notna().any()]
    for f in features:
        if f not in drift:
            where = "reference" if not ref[f].notna().any() else "analysis"
            messages.append(f"feature {f!r} is entirely missing in the {where} data: no drift computed for it")
    continuous = [f for f in features if f in spec.numeric]
    categorical = [f for f in features if f in spec.categorical]
    chunker = make_chunker(spec, timestamp, len(ana), messages)
    return Prepared(ref, ana, features, continuous, categorical, drift, proba, has_labels, timestamp, chunker, messages)


def _require_reference(reference: pd.DataFrame, spec: ProblemSpec, classes: list | None) -> None:
    missing = [c for c in (spec.target, "y_pred") if c not in reference.columns]
    if missing:
        raise ValueError(f"reference data lacks required column(s) {missing}")
    if spec.is_classifier and not classes:
        raise ValueError(f"task {spec.task!r} needs the list of classes")
    if reference[spec.target].notna().sum() == 0:
        raise ValueError(f"reference data has no labels in {spec.target!r}")


def _usable_features(
    reference: pd.DataFrame, analysis: pd.DataFrame, spec: ProblemSpec, messages: list[str]
) -> list[str]:
    usable = []
    for f in spec.feature_names:
        if f not in reference.columns:
            messages.append(f"feature {f!r} is missing from the reference data: it is not monitored")
        elif f not in analysis.columns:
            messages.append(f"schema change: feature {f!r} is missing from the analysis data: it is not monitored")
        else:
            usable.append(f)
    return usable


def _timestamp(reference: pd.DataFrame, analysis: pd.DataFrame, spec: ProblemSpec, messages: list[str]) -> str | None:
    ts = spec.timestamp
    if ts is None:
        return None
    absent = [name for name, df in (("reference", reference), ("analysis", analysis)) if ts not in df.columns]
    if absent:
        messages.append(
            f"timestamp column {ts!r} is missing from the {' and '.join(absent)} data: chunking by row count"
        )
        return None
    return TS


def _clean_rows(
    source: pd.DataFrame, spec: ProblemSpec, timestamp: str | None, messages: list[str], name: str
) -> pd.DataFrame:
    """Parse the timestamp and drop rows without one: every later frame is built row-aligned to this."""
    if timestamp is None or spec.timestamp is None:
        return source.reset_index(drop=True)
    ts = source[spec.timestamp]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        parsed = pd.to_datetime(ts, errors="coerce")
        bad = int(parsed.isna().sum() - ts.isna().sum())
        if bad:
            messages.append(f"{name}: {bad} timestamp value(s) could not be parsed as dates")
        source = source.assign(**{spec.timestamp: parsed})
    keep = source[spec.timestamp].notna()
    if not keep.all():
        messages.append(f"{name}: {int((~keep).sum())} row(s) without a timestamp were left out")
        source = source[keep]
    return source.reset_index(drop=True)


def _frame(
    source: pd.DataFrame, features: list[str], timestamp: str | None, spec: ProblemSpec, messages: list[str], name: str
) -> pd.DataFrame:
    """A narrow frame with only the columns NannyML needs; copy-on-write keeps this cheap."""
    out = source[features].copy(deep=False) if features else pd.DataFrame(index=source.index)
    for f in features:
        out[f] = _coerce(out[f], f, f in spec.numeric, messages, name)
    if timestamp is not None and spec.timestamp is not None:
        out[TS] = source[spec.timestamp]
    return out


def _coerce(col: pd.Series, name: str, numeric: bool, messages: list[str], where: str) -> pd.Series:
    """Make a column's dtype match what the spec says it is, recording any schema change."""
    if numeric:
        if pd.api.types.is_bool_dtype(col):
            return col.astype("float64")
        if pd.api.types.is_numeric_dtype(col):
            return col
        parsed = pd.to_numeric(col, errors="coerce")
        bad = int(parsed.isna().sum() - col.isna().sum())
        messages.append(
            f"schema change: numeric feature {name!r} arrived as {col.dtype} in the {where} data; "
            f"converted to numbers ({bad} value(s) could not be parsed and count as missing)"
        )
        return parsed.astype("float64")
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        # NannyML decides categorical vs continuous partly by dtype: make categories strings.
        return col.astype("str")
    return col


def _outputs(
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    ref: pd.DataFrame,
    ana: pd.DataFrame,
    spec: ProblemSpec,
    classes: list | None,
    messages: list[str],
) -> str | dict[str, str] | None:
    """Copy target and model outputs into the working frames, encoded as NannyML wants them."""
    ref[Y_TRUE] = _encode_labels(reference[spec.target], spec, classes).to_numpy()
    ref[Y_PRED] = _encode_labels(reference["y_pred"], spec, classes).to_numpy()
    has_pred = "y_pred" in analysis.columns
    if not has_pred:
        messages.append("analysis data has no 'y_pred' column: performance cannot be estimated")
    ana[Y_PRED] = _encode_labels(analysis["y_pred"], spec, classes).to_numpy() if has_pred else np.nan
    if spec.task == "regression":
        return None
    if spec.task == "binary":
        if "y_pred_proba" not in reference.columns:
            raise ValueError("reference data lacks 'y_pred_proba' for a binary classifier")
        ref[Y_PROBA] = reference["y_pred_proba"].to_numpy()
        ana[Y_PROBA] = analysis["y_pred_proba"].to_numpy() if "y_pred_proba" in analysis.columns else np.nan
        return Y_PROBA
    proba: dict[str, str] = {}
    for cls in classes or []:
        col = proba_column(reference, cls)
        if col is None:
            raise ValueError(f"reference data lacks the probability column y_pred_proba_{cls}")
        work = f"{Y_PROBA}_{cls}"
        ref[work] = reference[col].to_numpy()
        ana_col = proba_column(analysis, cls)
        ana[work] = analysis[ana_col].to_numpy() if ana_col else np.nan
        proba[str(cls)] = work
    return proba


def _encode_labels(values: pd.Series, spec: ProblemSpec, classes: list | None) -> pd.Series:
    """Binary -> 1.0 for the positive class (classes[-1]) else 0.0; multiclass -> str labels; NaN kept."""
    if spec.task == "regression":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    assert classes
    if spec.task == "binary":
        return (values == classes[-1]).astype("float64").where(values.notna())
    # Multiclass: NannyML matches label values against the y_pred_proba dict keys, which are strings.
    return values.map(str, na_action="ignore")


def _labels(
    analysis: pd.DataFrame, ana: pd.DataFrame, spec: ProblemSpec, classes: list | None, messages: list[str]
) -> bool:
    if spec.target not in analysis.columns:
        messages.append("no labels in the analysis data yet: realized performance is not computed")
        return False
    ana[Y_TRUE] = _encode_labels(analysis[spec.target], spec, classes).to_numpy()
    if ana[Y_TRUE].notna().sum() == 0:
        messages.append("no labels in the analysis data yet: realized performance is not computed")
        return False
    return True


def make_chunker(spec: ProblemSpec, timestamp: str | None, n_rows: int, messages: list[str]) -> Chunker:
    mon = spec.monitoring
    if mon.chunk_size:
        if 0 < n_rows < mon.chunk_size:
            messages.append(
                f"analysis has {n_rows} rows, fewer than one chunk ({mon.chunk_size}): results rest on one small chunk"
            )
        return SizeBasedChunker(chunk_size=mon.chunk_size, timestamp_column_name=timestamp)
    if mon.chunk_period and timestamp:
        return PeriodBasedChunker(timestamp_column_name=timestamp, offset=mon.chunk_period)
    if mon.chunk_period:
        messages.append(f"chunk_period {mon.chunk_period!r} needs a timestamp column: using 10 chunks of equal size")
    # Ten equal chunks, as NannyML's default, but never a chunk of zero rows.
    return SizeBasedChunker(chunk_size=max(n_rows // 10, 1), timestamp_column_name=timestamp)
