"""monitor(): NannyML's estimators and calculators over one reference/analysis pair.

Each NannyML step runs on its own: one that fails leaves a message and the others still run, so a
scheduled monitoring run always produces a result (and a report) rather than a stack trace.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import nannyml as nml
import numpy as np
import pandas as pd
from nannyml.thresholds import ConstantThreshold

from loopml.monitoring._prepare import TS, Y_PRED, Y_TRUE, Prepared, prepare
from loopml.monitoring.result import CHUNK_COLUMNS, DRIFT_COLUMNS, QUALITY_COLUMNS, MonitoringResult
from loopml.spec import ProblemSpec

__all__ = ["monitor", "NANNYML_METRIC"]

# loopml metric -> the NannyML metric computed. NannyML has no r2: we take its MSE and convert.
NANNYML_METRIC = {
    "roc_auc": "roc_auc", "accuracy": "accuracy", "f1": "f1", "precision": "precision", "recall": "recall",
    "mae": "mae", "mse": "mse", "rmse": "rmse", "r2": "mse",
}  # fmt: skip
PROBLEM_TYPE = {
    "binary": "classification_binary",
    "multiclass": "classification_multiclass",
    "regression": "regression",
}
DRIFT_METHOD = "jensen_shannon"

T = TypeVar("T")


def monitor(
    reference: pd.DataFrame, analysis: pd.DataFrame, spec: ProblemSpec, classes: list | None
) -> MonitoringResult:
    """Estimated and realized performance, univariate and multivariate drift and data quality per chunk."""
    nml.disable_usage_logging()  # telemetry off before any NannyML call
    prep = prepare(reference, analysis, spec, classes)
    messages = prep.messages
    base = _base_chunks(prep, spec, messages)
    if base.empty:
        return _result(spec, _empty(CHUNK_COLUMNS), _empty(DRIFT_COLUMNS), _empty(QUALITY_COLUMNS), messages)

    estimated = _run("performance estimation", messages, lambda: _estimate(prep, spec))
    realized = _run("realized performance", messages, lambda: _realize(prep, spec)) if prep.has_labels else None
    drift = _run("univariate drift", messages, lambda: _univariate(prep))
    multivariate = _run("multivariate drift", messages, lambda: _multivariate(prep))
    quality = _quality(prep, messages)

    chunks = _assemble(base, spec, prep, estimated, realized, drift, multivariate)
    drift_frame = drift if drift is not None else _empty(DRIFT_COLUMNS)
    quality = quality.merge(base[["chunk", "n_rows"]], on="chunk", how="left") if not quality.empty else quality
    return _result(spec, chunks, drift_frame, _quality_rates(quality), messages)


def _result(
    spec: ProblemSpec, chunks: pd.DataFrame, drift: pd.DataFrame, quality: pd.DataFrame, messages: list[str]
) -> MonitoringResult:
    metric = spec.metric
    return MonitoringResult(
        task=spec.task,
        metric=metric.name,
        threshold=metric.threshold,
        higher_is_better=metric.higher_is_better,
        chunks=chunks.reindex(columns=CHUNK_COLUMNS),
        drift=drift.reindex(columns=DRIFT_COLUMNS),
        quality=quality.reindex(columns=QUALITY_COLUMNS),
        messages=messages,
    )


def _run(step: str, messages: list[str], fn: Callable[[], T]) -> T | None:
    """Run one NannyML step; a failure becomes a message instead of ending the run."""
    try:
        with warnings.catch_warnings():
            # NannyML warns per chunk (few chunks, NaN metrics on unlabelled chunks); our messages say it once.
            warnings.simplefilter("ignore")
            return fn()
    except Exception as err:  # noqa: BLE001 - any NannyML failure must not stop the monitoring run
        messages.append(f"{step} could not be computed: {type(err).__name__}: {err}")
        return None


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def _analysis_frame(result: Any) -> pd.DataFrame:
    """The analysis rows of a NannyML result. ``result.filter()`` would deep-copy the whole result
    (a third of a second per calculator at 1M rows), so the rows are selected on its frame instead."""
    data = result.data
    period = next(c for c in data.columns if c[0] == "chunk" and c[-1] == "period")
    return data[data[period] == "analysis"].reset_index(drop=True)


# --- chunks -------------------------------------------------------------------------------------


def _base_chunks(prep: Prepared, spec: ProblemSpec, messages: list[str]) -> pd.DataFrame:
    """The analysis chunks, from a split of a narrow frame so it does not depend on any calculator."""
    if prep.analysis.empty:
        messages.append("the analysis data is empty: nothing to monitor")
        return pd.DataFrame()
    cols = [TS] if prep.timestamp else []
    narrow = prep.analysis[cols + ([Y_TRUE] if prep.has_labels else [])]
    if not cols:
        narrow = narrow.assign(_row=np.arange(len(narrow)))  # a chunk needs at least one column
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = _run("chunking", messages, lambda: prep.chunker.split(narrow))
    if not split:
        return pd.DataFrame()
    if len(split) < 6:
        messages.append(f"only {len(split)} chunk(s) in the analysis data: drift and alert evidence is thin")
    rows = []
    for c in split:
        labelled = int(c.data[Y_TRUE].notna().sum()) if prep.has_labels else 0
        rows.append(
            {
                "chunk": c.key,
                "chunk_index": c.chunk_index,
                "start": c.start_datetime,
                "end": c.end_datetime,
                "n_rows": len(c.data),
                "n_labelled": labelled,
                "_r2_var": _label_variance(c.data) if spec.metric.name == "r2" and labelled else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _label_variance(chunk: pd.DataFrame) -> float:
    return float(np.var(chunk[Y_TRUE].dropna().to_numpy()))


# --- performance --------------------------------------------------------------------------------


def _thresholds(spec: ProblemSpec) -> dict[str, ConstantThreshold]:
    """The spec's threshold as NannyML's alert line (r2 is converted and alerted on by us)."""
    m = spec.metric
    if m.name == "r2":
        return {}
    bound = {"lower": m.threshold} if m.higher_is_better else {"upper": m.threshold}
    return {NANNYML_METRIC[m.name]: ConstantThreshold(**bound)}


def _estimate(prep: Prepared, spec: ProblemSpec) -> pd.DataFrame:
    metric = NANNYML_METRIC[spec.metric.name]
    common = dict(
        y_pred=Y_PRED, y_true=Y_TRUE, metrics=[metric], chunker=prep.chunker,
        timestamp_column_name=prep.timestamp, thresholds=_thresholds(spec),
    )  # fmt: skip
    if spec.task == "regression":
        estimator: Any = nml.DLE(feature_column_names=prep.features, **common)
    else:
        estimator = nml.CBPE(y_pred_proba=prep.y_pred_proba, problem_type=PROBLEM_TYPE[spec.task], **common)
    with _legacy_strings(spec.task == "regression" and bool(prep.categorical)):
        estimator.fit(prep.reference)
        # Estimation needs no labels; dropping them keeps CBPE from computing a second realized value.
        frame = _analysis_frame(estimator.estimate(prep.analysis.drop(columns=[Y_TRUE], errors="ignore")))
    out = pd.DataFrame(
        {
            "chunk": frame[("chunk", "key")],
            "estimated": frame[(metric, "value")].astype(float),
            "estimated_lower": frame[(metric, "lower_confidence_boundary")].astype(float),
            "estimated_upper": frame[(metric, "upper_confidence_boundary")].astype(float),
        }
    )
    if spec.metric.name == "r2":
        out = _mse_to_r2(out, float(np.var(prep.reference[Y_TRUE].to_numpy())))
    return out


def _legacy_strings(active: bool) -> contextlib.AbstractContextManager[Any]:
    """NannyML 0.13.1's DLE encodes categoricals via ``.values.reshape``, which pandas 3's Arrow-backed
    ``str`` columns do not support; while it runs, let pandas infer ``object`` for strings again."""
    return pd.option_context("future.infer_string", False) if active else contextlib.nullcontext()


def _mse_to_r2(est: pd.DataFrame, variance: float) -> pd.DataFrame:
    """Estimated R2 = 1 - MSE / Var(y), with Var(y) from the reference period (labels are unknown)."""
    r2 = lambda mse: 1 - mse / variance if variance > 0 else np.nan  # noqa: E731
    return est.assign(
        estimated=r2(est["estimated"]),
        estimated_lower=r2(est["estimated_upper"]),
        estimated_upper=r2(est["estimated_lower"]),
    )


def _realize(prep: Prepared, spec: ProblemSpec) -> pd.DataFrame:
    metric = NANNYML_METRIC[spec.metric.name]
    calc = nml.PerformanceCalculator(
        metrics=[metric], y_true=Y_TRUE, y_pred=Y_PRED, problem_type=PROBLEM_TYPE[spec.task],
        y_pred_proba=prep.y_pred_proba, chunker=prep.chunker, timestamp_column_name=prep.timestamp,
        thresholds=_thresholds(spec),
    )  # fmt: skip
    calc.fit(prep.reference)
    frame = _analysis_frame(calc.calculate(prep.analysis))
    return pd.DataFrame({"chunk": frame[("chunk", "key")], "realized": frame[(metric, "value")].astype(float)})


# --- drift --------------------------------------------------------------------------------------


def _univariate(prep: Prepared) -> pd.DataFrame:
    if not prep.drift_features:
        raise ValueError("no feature has values in both reference and analysis data")
    calc = nml.UnivariateDriftCalculator(
        column_names=prep.drift_features,
        treat_as_categorical=[f for f in prep.categorical if f in prep.drift_features],
        treat_as_numerical=[f for f in prep.continuous if f in prep.drift_features],
        timestamp_column_name=prep.timestamp,
        continuous_methods=[DRIFT_METHOD],
        categorical_methods=[DRIFT_METHOD],
        chunker=prep.chunker,
    )
    calc.fit(prep.reference)
    frame = _analysis_frame(calc.calculate(prep.analysis))
    parts = [
        pd.DataFrame(
            {
                "chunk": frame[("chunk", "chunk", "key")],
                "chunk_index": frame[("chunk", "chunk", "chunk_index")],
                "feature": f,
                "method": DRIFT_METHOD,
                "value": frame[(f, DRIFT_METHOD, "value")].astype(float),
                "threshold": frame[(f, DRIFT_METHOD, "upper_threshold")].astype(float),
                "alert": frame[(f, DRIFT_METHOD, "alert")].astype(bool),
            }
        )
        for f in prep.drift_features
    ]
    return pd.concat(parts, ignore_index=True)


def _multivariate(prep: Prepared) -> pd.DataFrame:
    if not prep.drift_features:
        raise ValueError("no feature has values in both reference and analysis data")
    calc = nml.DataReconstructionDriftCalculator(
        column_names=prep.drift_features, timestamp_column_name=prep.timestamp, chunker=prep.chunker
    )
    calc.fit(prep.reference)
    frame = _analysis_frame(calc.calculate(prep.analysis))
    col = "reconstruction_error"
    return pd.DataFrame(
        {
            "chunk": frame[("chunk", "key")],
            "reconstruction_error": frame[(col, "value")].astype(float),
            "reconstruction_upper_threshold": frame[(col, "upper_threshold")].astype(float),
            "reconstruction_lower_threshold": pd.to_numeric(frame[(col, "lower_threshold")], errors="coerce"),
            "multivariate_alert": frame[(col, "alert")].astype(bool),
        }
    )


# --- data quality -------------------------------------------------------------------------------


def _quality(prep: Prepared, messages: list[str]) -> pd.DataFrame:
    """Missing values for every feature, unseen categories, numeric values outside the reference range."""
    steps: list[tuple[str, str, Callable[..., Any], list[str]]] = [
        ("missing", "missing values", nml.MissingValuesCalculator, prep.features),
        ("unseen", "unseen values", nml.UnseenValuesCalculator, [f for f in prep.categorical if f in prep.drift_features]),
        ("out_of_range", "numerical range", nml.NumericalRangeCalculator, [f for f in prep.continuous if f in prep.drift_features]),
    ]  # fmt: skip
    frames = []
    for kind, label, cls, columns in steps:
        if not columns:
            continue
        frame = _run(label, messages, functools.partial(_quality_step, prep, kind, cls, columns))
        if frame is not None:
            frames.append(frame)
    if not frames:
        return _empty(["chunk", "chunk_index", "feature"])
    out = frames[0]
    for frame in frames[1:]:
        out = out.merge(frame, on=["chunk", "chunk_index", "feature"], how="outer")
    order = {f: i for i, f in enumerate(prep.features)}
    out = out.sort_values(["chunk_index", "feature"], key=lambda s: s.map(order) if s.name == "feature" else s)
    alert_cols = [c for c in out.columns if c.endswith("_alert")]
    out["alert"] = out[alert_cols].fillna(False).astype(bool).any(axis=1)
    return out.drop(columns=alert_cols).reset_index(drop=True)


def _quality_step(prep: Prepared, kind: str, cls: Callable[..., Any], columns: list[str]) -> pd.DataFrame:
    calc = cls(column_names=columns, normalize=False, timestamp_column_name=prep.timestamp, chunker=prep.chunker)
    calc.fit(prep.reference)
    frame = _analysis_frame(calc.calculate(prep.analysis))
    parts = [
        pd.DataFrame(
            {
                "chunk": frame[("chunk", "key")],
                "chunk_index": frame[("chunk", "chunk_index")],
                "feature": f,
                kind: frame[(f, "value")].astype(float),
                f"{kind}_alert": frame[(f, "alert")].astype(bool),
            }
        )
        for f in columns
    ]
    return pd.concat(parts, ignore_index=True)


def _quality_rates(quality: pd.DataFrame) -> pd.DataFrame:
    for kind in ("missing", "unseen", "out_of_range"):
        if kind in quality.columns:
            quality[f"{kind}_rate"] = quality[kind] / quality["n_rows"]
    return quality


# --- assembly -----------------------------------------------------------------------------------


def _assemble(
    base: pd.DataFrame,
    spec: ProblemSpec,
    prep: Prepared,
    estimated: pd.DataFrame | None,
    realized: pd.DataFrame | None,
    drift: pd.DataFrame | None,
    multivariate: pd.DataFrame | None,
) -> pd.DataFrame:
    chunks = base.copy()
    for part in (estimated, realized, multivariate):
        if part is not None:
            chunks = chunks.merge(part, on="chunk", how="left")
    chunks = chunks.reindex(columns=[*chunks.columns, *(c for c in CHUNK_COLUMNS if c not in chunks.columns)])
    if spec.metric.name == "r2" and realized is not None:
        # NannyML reported MSE; R2 = 1 - MSE / Var(y) over the chunk's labelled rows.
        chunks["realized"] = 1 - chunks["realized"] / chunks["_r2_var"].where(chunks["_r2_var"] > 0)
    chunks.loc[chunks["n_labelled"] == 0, "realized"] = np.nan
    chunks["metric"] = spec.metric.name
    chunks["threshold"] = spec.metric.threshold
    chunks["estimated_alert"] = chunks["estimated"].map(lambda v: _fails(spec, v))
    chunks["realized_alert"] = chunks["realized"].map(lambda v: _fails(spec, v))
    chunks["estimation_error"] = chunks["estimated"].astype(float) - chunks["realized"].astype(float)
    chunks["multivariate_alert"] = chunks["multivariate_alert"].fillna(False).astype(bool)
    drifting = _drifting(drift)
    chunks["drifting_features"] = chunks["chunk"].map(lambda k: drifting.get(k, []))
    chunks["n_drifting_features"] = chunks["drifting_features"].map(len)
    return chunks.drop(columns=["_r2_var"])


def _fails(spec: ProblemSpec, value: float) -> bool:
    return bool(pd.notna(value) and not spec.metric.passes(float(value)))


def _drifting(drift: pd.DataFrame | None) -> dict[str, list[str]]:
    if drift is None or drift.empty:
        return {}
    alerts = drift[drift["alert"]]
    return {str(k): sorted(map(str, g["feature"])) for k, g in alerts.groupby("chunk", sort=False)}
