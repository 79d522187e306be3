"""monitor(): NannyML's estimators and calculators, fitted once on the reference, applied chunk by chunk.

loopml cuts the analysis data into chunks itself (:mod:`loopml.monitoring.chunks`) and hands NannyML
one chunk at a time, so :func:`monitor_stream` can read a window larger than memory piece by piece
(date partitions): peak memory is the reference plus one chunk.

Thresholds, and why they are quiet on stable data:

- Univariate drift: NannyML's two-sample statistics (Kolmogorov-Smirnov D for numeric features,
  chi-squared for categorical ones) turned into p-values with the chunk's and the reference's sizes.
  A feature drifts when its p-value is below ``drift_false_alarm_rate`` divided by the number of
  features (Bonferroni: a stable chunk flags any feature with at most that probability) *and* the
  effect (D, or Cramer's V) is at least ``min_drift_effect`` (big chunks make tiny shifts significant).
- Multivariate drift: NannyML's PCA reconstruction error, with a band from the reference cut into
  ``reference_chunks`` chunks. Each reference chunk's error is measured *out of fold*, by a PCA fitted on
  the rest of the reference: a chunk's error measured by the PCA fitted on its own rows is optimistic,
  so an in-sample band sits below every analysis chunk and stable data alerts. The band is a prediction
  interval for one new chunk at ``drift_false_alarm_rate`` (two-sided, Student's t over the reference
  chunks, plus the uncertainty of their mean), rescaled to each analysis chunk's size (the error is a
  mean over rows, so its spread shrinks as 1/sqrt(rows)), never narrower than the row-level standard
  error. ``multivariate_std``, when set, replaces the t quantile.

A calculator that fails (at fit, or on a chunk) is recorded in ``result.failures`` and becomes a
``monitoring_failed`` alert: a value is never silently NaN.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nannyml as nml
import numpy as np
import pandas as pd
from nannyml.chunk import Chunk as NannyChunk
from nannyml.chunk import Chunker, CountBasedChunker, SizeBasedChunker
from nannyml.thresholds import ConstantThreshold
from scipy import stats

from loopml.modeling.calibration import calibration_diagnostics
from loopml.monitoring._prepare import (
    LATENCY,
    REQUEST_SHARE,
    TS,
    Y_PRED,
    Y_TRUE,
    Notes,
    Reference,
    prepare_piece,
    prepare_reference,
)
from loopml.monitoring.chunks import Chunk, ChunkStream
from loopml.monitoring.cost import cost_summary
from loopml.monitoring.prices import prices as price_table
from loopml.monitoring.result import CHUNK_COLUMNS, DRIFT_COLUMNS, QUALITY_COLUMNS, MonitoringResult
from loopml.spec import ProblemSpec

__all__ = ["monitor", "monitor_stream", "NANNYML_METRIC"]

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
CONTINUOUS_METHOD, CATEGORICAL_METHOD = "kolmogorov_smirnov", "chi2"
DEFAULT_STREAM_CHUNK = 5000  # rows per chunk when neither a period nor a size nor the total is known
# Rows per batched NannyML call (see _Bounds): NannyML's own copies of a call's data (calibrated probabilities,
# imputed and reconstructed features) grow with it, so a group of chunks, not a whole piece, keeps memory small.
BATCH_ROWS = 250_000
CROSS_FIT_FOLDS = 2  # the multivariate band's reference chunks are measured by a PCA fitted on the other half

T = TypeVar("T")


def monitor(
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    spec: ProblemSpec,
    classes: list | None,
    batch_runs: list[dict[str, Any]] | None = None,
) -> MonitoringResult:
    """Estimated and realized performance, univariate and multivariate drift, data quality, API latency
    and cost per chunk, for an analysis frame in memory. ``batch_runs`` ({day, seconds}) are priced too."""
    return monitor_stream(reference, [analysis], spec, classes, total_rows=len(analysis), batch_runs=batch_runs)


def monitor_stream(
    reference: pd.DataFrame,
    pieces: Iterable[pd.DataFrame],
    spec: ProblemSpec,
    classes: list | None,
    total_rows: int | None = None,
    batch_runs: list[dict[str, Any]] | None = None,
) -> MonitoringResult:
    """:func:`monitor` over analysis data that arrives in pieces in time order (e.g. one date partition
    at a time). Each chunk is measured once it is complete and then dropped."""
    started = time.perf_counter()
    nml.disable_usage_logging()  # telemetry off before any NannyML call
    price_table(spec.monitoring.cost.prices)  # a bad price override fails now, before any work
    notes = Notes()
    ref = prepare_reference(reference, spec, classes, notes)
    run = _Run(spec, ref, _Calculators.fit(ref, spec, notes), notes)
    stream: ChunkStream | None = None
    out = _Collected()
    for piece in pieces:
        if piece is None or piece.empty:
            continue
        narrow = prepare_piece(piece, ref, spec, classes, notes)
        if stream is None:
            stream = ChunkStream(spec, TS if TS in narrow.columns else None, _chunk_size(spec, TS in narrow.columns, total_rows))
        elif stream.by_period and TS not in narrow.columns:
            notes.count("{n} analysis row(s) without the timestamp column were left out", len(narrow))
            continue
        _measure_all(run, list(stream.feed(narrow)), out)
    if stream is not None:
        _measure_all(run, list(stream.finish()), out)
        notes.count("{n} analysis row(s) arrived after their chunk was measured and were left out", stream.late_rows)
    if not out.chunks:
        notes.add("the analysis data is empty: nothing to monitor")
    _schema_notes(ref, notes, bool(out.chunks))
    result = _result(run, out, time.perf_counter() - started)
    result.cost = cost_summary(result.usage, spec, batch_runs=batch_runs, monitoring_seconds=result.seconds)
    return result


def _chunk_size(spec: ProblemSpec, has_timestamp: bool, total_rows: int | None) -> int | None:
    mon = spec.monitoring
    if mon.chunk_size:
        return mon.chunk_size
    if mon.chunk_period and has_timestamp:
        return None
    # Ten equal chunks, as NannyML's default, but never chunks below the minimum size.
    return max((total_rows or 0) // 10, mon.min_chunk_rows) if total_rows else max(DEFAULT_STREAM_CHUNK, mon.min_chunk_rows)


def _schema_notes(ref: Reference, notes: Notes, any_chunk: bool) -> None:
    if not any_chunk:
        return
    for f in ref.features:
        if f in ref.seen_features and f not in ref.valued_features:
            notes.add(f"feature {f!r} is entirely missing in the analysis data: no drift computed for it")
    if not ref.has_labels:
        notes.add("no labels in the analysis data yet: realized performance is not computed")


# --- the calculators, fitted once ---------------------------------------------------------------


def _quiet(fn: Callable[[], T]) -> T:
    with warnings.catch_warnings():
        # NannyML warns per chunk (few chunks, NaN metrics on unlabelled chunks); our notes say it once.
        warnings.simplefilter("ignore")
        return fn()


@dataclass
class _Baseline:
    """Reference chunks' out-of-fold reconstruction error: a band for a chunk of any size."""

    mean: float
    between_std: float  # spread of the reference chunks' mean error
    chunk_rows: float  # their typical size
    row_std: float  # spread of one row's error
    chunks: int  # how many reference chunks the mean and spread rest on
    dof: int  # degrees of freedom of between_std (pooled within folds)

    def band(self, rows: int, alpha: float, z: float | None = None) -> tuple[float, float]:
        """Two-sided prediction interval for one chunk of ``rows`` rows at false-alarm rate ``alpha``."""
        between = self.between_std**2 * self.chunk_rows / rows
        by_row = self.row_std**2 / rows
        # a new chunk's own spread (rescaled to its size, never below the row-level standard error) plus
        # the uncertainty of the reference mean it is compared with
        mean_var = max(self.between_std**2 / self.chunks, self.row_std**2 / (self.chunk_rows * self.chunks))
        se = math.sqrt(max(between, by_row) + mean_var)
        if z is None:
            # Student's t: the spread is estimated from a few reference chunks. A reference too small for
            # two chunks per fold has no such estimate, only the row-level spread (from every row): normal
            z = float(stats.t.isf(alpha / 2, self.dof) if self.dof >= 1 else stats.norm.isf(alpha / 2))
        return max(self.mean - z * se, 0.0), self.mean + z * se


@dataclass
class _Calculators:
    estimator: Any = None
    realized: Any = None
    univariate: Any = None
    multivariate: Any = None
    baseline: _Baseline | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    drift_features: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    legacy_strings: bool = False

    @classmethod
    def fit(cls, ref: Reference, spec: ProblemSpec, notes: Notes) -> _Calculators:
        self = cls()
        mon = spec.monitoring
        n = len(ref.frame)
        parts = min(mon.reference_chunks, max(n // 50, 2))
        if parts < mon.reference_chunks:
            notes.add(f"the reference has {n} rows: thresholds rest on {parts} reference chunks of {n // parts} rows")
        fit_chunker = SizeBasedChunker(chunk_size=max(n // parts, 1), incomplete="append")
        # Realized performance, univariate drift and data quality use their reference chunks only for NannyML's
        # own alert thresholds, which loopml never reads (it alerts on the spec's threshold, p-values and the
        # reference's rates): two chunks instead of ``parts`` spare ~1 s of fitting; the values are the same.
        unused = SizeBasedChunker(chunk_size=max(n // 2, 1), incomplete="append")
        self.drift_features = [f for f in ref.features if ref.non_null[f] > 0]
        for f in ref.features:
            if f not in self.drift_features:
                notes.add(f"feature {f!r} is entirely missing in the reference data: no drift computed for it")
        self.legacy_strings = spec.task == "regression" and bool(ref.categorical)
        metric = NANNYML_METRIC[spec.metric.name]
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("estimator", "performance estimation", lambda: _estimator(ref, spec, metric, fit_chunker)),
            ("realized", "realized performance", lambda: nml.PerformanceCalculator(
                metrics=[metric], y_true=Y_TRUE, y_pred=Y_PRED, problem_type=PROBLEM_TYPE[spec.task],
                y_pred_proba=ref.y_pred_proba, chunker=unused, thresholds=_thresholds(spec))),
        ]  # fmt: skip
        if self.drift_features:
            steps += [
                ("univariate", "univariate drift", lambda: nml.UnivariateDriftCalculator(
                    column_names=self.drift_features,
                    treat_as_categorical=[f for f in ref.categorical if f in self.drift_features],
                    treat_as_numerical=[f for f in ref.continuous if f in self.drift_features],
                    continuous_methods=[CONTINUOUS_METHOD], categorical_methods=[CATEGORICAL_METHOD],
                    chunker=unused)),
                ("multivariate", "multivariate drift", lambda: _reconstruction(self.drift_features, fit_chunker)),
            ]  # fmt: skip
        quality = [
            ("missing", nml.MissingValuesCalculator, ref.features),
            ("unseen", nml.UnseenValuesCalculator, [f for f in ref.categorical if f in self.drift_features]),
            ("out_of_range", nml.NumericalRangeCalculator, [f for f in ref.continuous if f in self.drift_features]),
        ]
        for kind, calc_cls, columns in quality:
            if columns:
                steps.append((f"quality:{kind}", f"data quality ({kind.replace('_', ' ')})",
                              lambda c=calc_cls, cols=columns: c(column_names=cols, normalize=False, chunker=unused)))  # fmt: skip
        whole = CountBasedChunker(chunk_number=1)
        for attr, step, make in steps:
            try:
                with self._strings():
                    calc = _quiet(lambda make=make: make().fit(ref.frame))
            except Exception as err:  # noqa: BLE001 - a failed calculator is an alert, not a crash
                self.failures.append({"step": step, "chunk": None, "error": _error(err)})
                continue
            calc.chunker = whole  # from now on: one call, one chunk
            if attr.startswith("quality:"):
                self.quality[attr.split(":", 1)[1]] = calc
            else:
                setattr(self, attr, calc)
        if self.multivariate is not None:
            self._fit_baseline(ref, parts)
        return self

    def _fit_baseline(self, ref: Reference, parts: int) -> None:
        try:
            with self._strings():
                # the folds' PCAs keep as many components as the fitted one (NannyML 0.13's ``_pca``): a fold's
                # 65% of the variance can take one component more or fewer, and the error's level jumps with it
                pca = getattr(self.multivariate, "_pca", None)
                components = int(pca.n_components_) if pca is not None else None
                make = lambda: _reconstruction(self.drift_features, _one_chunk(), components)  # noqa: E731
                values, rows = _quiet(lambda: _out_of_fold(make, ref.frame, parts))
        except Exception as err:  # noqa: BLE001 - without a band there is no multivariate alert: say so
            self.failures.append({"step": "multivariate drift", "chunk": None, "error": _error(err)})
            self.multivariate = None
            return
        self.baseline = _baseline(self.multivariate, values, rows)

    def _strings(self) -> contextlib.AbstractContextManager[Any]:
        """NannyML 0.13.1's DLE encodes categoricals via ``.values.reshape``, which pandas 3's Arrow-backed
        ``str`` columns do not support; while it runs, let pandas infer ``object`` for strings again."""
        return pd.option_context("future.infer_string", False) if self.legacy_strings else contextlib.nullcontext()


@dataclass(frozen=True)
class _Run:
    """What every step of one monitoring run reads: the spec, the prepared reference, the calculators fitted
    on it and the notes the run collects (the reference, calculators and notes themselves accumulate)."""

    spec: ProblemSpec
    ref: Reference
    calcs: _Calculators
    notes: Notes


def _error(err: Exception) -> str:
    """One line: NannyML wraps the cause in a multi-line message."""
    return " ".join(f"{type(err).__name__}: {err}".split())[:500]


def _estimator(ref: Reference, spec: ProblemSpec, metric: str, chunker: Any) -> Any:
    common = dict(y_pred=Y_PRED, y_true=Y_TRUE, metrics=[metric], chunker=chunker, thresholds=_thresholds(spec))
    if spec.task == "regression":
        # LightGBM prints every fit to stdout: verbosity -1 keeps a scheduled run's log readable
        return nml.DLE(feature_column_names=ref.features, hyperparameters={"verbosity": -1}, **common)
    return nml.CBPE(y_pred_proba=ref.y_pred_proba, problem_type=PROBLEM_TYPE[spec.task], **common)


def _thresholds(spec: ProblemSpec) -> dict[str, ConstantThreshold]:
    """The spec's threshold as NannyML's alert line (r2 is converted and alerted on by us)."""
    m = spec.metric
    if m.name == "r2":
        return {}
    bound = {"lower": m.threshold} if m.higher_is_better else {"upper": m.threshold}
    return {NANNYML_METRIC[m.name]: ConstantThreshold(**bound)}


def _one_chunk() -> CountBasedChunker:
    """A fit that measures the reference as one chunk: the cheapest, when its per-chunk results are not used."""
    return CountBasedChunker(chunk_number=1)


def _reconstruction(features: list[str], chunker: Any, components: int | None = None) -> Any:
    """NannyML's PCA reconstruction; ``components`` pins the number of components (default: 65% of the variance)."""
    return nml.DataReconstructionDriftCalculator(column_names=features, chunker=chunker,
                                                 n_components=components if components else 0.65)


def _out_of_fold(make: Callable[[], Any], frame: pd.DataFrame, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``parts`` contiguous reference chunks' reconstruction error, measured by a PCA fitted on
    the other fold. Chunks are dealt alternately into the folds, so each fit spans the reference's time
    range; two folds cost about one extra fit of the whole reference and, on NannyML's datasets, remove
    the in-sample optimism as well as five did."""
    n = len(frame)
    size = n // parts
    bounds = [(i * size, (i + 1) * size if i < parts - 1 else n) for i in range(parts)]
    folds = min(CROSS_FIT_FOLDS, parts)
    values, rows = np.zeros(parts), np.array([hi - lo for lo, hi in bounds], dtype="float64")
    for fold in range(folds):
        held = [i for i in range(parts) if i % folds == fold]
        keep = np.ones(n, dtype=bool)
        for i in held:
            keep[bounds[i][0] : bounds[i][1]] = False
        calc = make().fit(frame[keep].reset_index(drop=True))
        # the held chunks back to back: cut every `size` rows, the last one keeps the remainder as before
        calc.chunker = SizeBasedChunker(chunk_size=size, incomplete="append")
        result = calc.calculate(frame[~keep].reset_index(drop=True)).data
        analysis = result[result[("chunk", "period")] == "analysis"]
        values[held] = analysis[("reconstruction_error", "value")].astype(float).to_numpy()
    return values, rows


def _baseline(calc: Any, values: np.ndarray, rows: np.ndarray) -> _Baseline:
    """The band's parameters: out-of-fold chunk errors, and the row-level spread of the fitted calculator."""
    data = calc.result.data
    ref = data[data[("chunk", "period")] == "reference"]
    ref_rows = (ref[("chunk", "end_index")] - ref[("chunk", "start_index")] + 1).astype(float).to_numpy()
    row_std = float(np.nanmean(ref[("reconstruction_error", "sampling_error")].astype(float).to_numpy() * np.sqrt(ref_rows)))
    dof = len(values) - min(CROSS_FIT_FOLDS, len(values))  # one mean per fold is estimated
    return _Baseline(float(np.nanmean(values)), _within_fold_std(values), float(np.median(rows)), row_std, len(values), dof)


def _within_fold_std(values: np.ndarray) -> float:
    """The chunks' spread around their own fold's mean (pooled): each fold's PCA has its own level, and that
    offset is not how much one chunk's error varies."""
    folds = min(CROSS_FIT_FOLDS, len(values))
    groups = [values[f::folds] for f in range(folds)]
    dof = sum(len(g) - 1 for g in groups)
    if dof < 1:
        return 0.0
    return float(math.sqrt(sum(float(np.sum((g - g.mean()) ** 2)) for g in groups) / dof))


def _row(result: Any) -> pd.Series:
    """The single analysis row of a NannyML result (one chunk per call)."""
    return _rows(result, 1)[0]


def _rows(result: Any, count: int) -> list[pd.Series]:
    """The last ``count`` analysis rows of a NannyML result, in chunk order."""
    data = result.data
    period = next(c for c in data.columns if c[0] == "chunk" and c[-1] == "period")
    rows = data[data[period] == "analysis"]
    if len(rows) < count:
        raise ValueError(f"NannyML returned {len(rows)} analysis chunk(s), {count} expected")
    return [rows.iloc[i] for i in range(len(rows) - count, len(rows))]


# --- all chunks of a piece in one NannyML call ----------------------------------------------------


class _Bounds(Chunker):
    """loopml's chunks, concatenated in order, cut back at their row counts.

    Every NannyML calculate() call pays a fixed cost (result frames, alert thresholds, the reference rows
    copied back in) of ~0.1 s: one call per calculator per chunk made monitoring ~2.5x slower than plain
    NannyML. The rows of each chunk are the ones the chunk-by-chunk call saw, so the values are the same.
    """

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = sizes

    def _split(self, data: pd.DataFrame) -> list[NannyChunk]:
        if len(data) != sum(self.sizes):
            raise ValueError(f"{len(data)} rows for chunks of {sum(self.sizes)}")
        chunks, start = [], 0
        for i, size in enumerate(self.sizes):
            part = data.iloc[start : start + size].reset_index(drop=True)  # as each chunk alone: index from 0
            chunks.append(NannyChunk(key=str(i), data=part, start_index=start, end_index=start + size - 1))
            start += size
        return chunks


Batched = dict[tuple[str, int], pd.Series]  # (calculator, chunk index) -> its NannyML result row


def _batched(calcs: _Calculators, chunks: list[Chunk]) -> Batched:
    """Each calculator called once over the chunks it measures. A calculator that fails here is left to
    the chunk-by-chunk calls, which record the failure on the chunk it happened in."""
    out: Batched = {}
    if len(chunks) < 2:
        return out
    whole = pd.concat([c.data for c in chunks], ignore_index=True)
    predicted = [c for c in chunks if c.data[Y_PRED].notna().any()]
    labelled = [c for c in predicted if c.data[Y_TRUE].notna().any()]

    def run(name: str, calc: Any, picked: list[Chunk], call: Callable[[pd.DataFrame], Any],
            frames: Callable[[], pd.DataFrame]) -> None:  # fmt: skip
        if calc is None or len(picked) < 2:
            return
        one = calc.chunker
        calc.chunker = _Bounds([_rows_measured(name, c) for c in picked])
        try:
            with calcs._strings():
                rows = _quiet(lambda: _rows(call(frames()), len(picked)))
        except Exception:  # noqa: BLE001 - measured chunk by chunk below, where a failure is recorded
            return
        finally:
            calc.chunker = one
        out.update({(name, c.index): r for c, r in zip(picked, rows, strict=True)})

    run("estimator", calcs.estimator, predicted, lambda d: calcs.estimator.estimate(d.drop(columns=[Y_TRUE])),
        lambda: whole if len(predicted) == len(chunks) else pd.concat([c.data for c in predicted], ignore_index=True))
    run("realized", calcs.realized, labelled, lambda d: calcs.realized.calculate(d),
        lambda: pd.concat([_labelled_rows(c.data) for c in labelled], ignore_index=True))
    run("univariate", calcs.univariate, chunks, lambda d: calcs.univariate.calculate(d), lambda: whole)
    run("multivariate", calcs.multivariate, chunks, lambda d: calcs.multivariate.calculate(d), lambda: whole)
    for kind, calc in calcs.quality.items():
        run(f"quality:{kind}", calc, chunks, lambda d, calc=calc: calc.calculate(d), lambda: whole)
    return out


def _labelled_rows(data: pd.DataFrame) -> pd.DataFrame:
    return data[data[Y_TRUE].notna()]


def _rows_measured(name: str, chunk: Chunk) -> int:
    """How many of the chunk's rows the calculator sees: realized performance only the labelled ones."""
    return len(_labelled_rows(chunk.data)) if name == "realized" else len(chunk.data)


def _measure_all(run: _Run, chunks: list[Chunk], out: _Collected) -> None:
    """The chunks measured in groups of up to ``BATCH_ROWS`` rows, one NannyML call per calculator and group."""
    group: list[Chunk] = []
    for chunk in [*chunks, None]:
        if group and (chunk is None or sum(len(c.data) for c in group) + len(chunk.data) > BATCH_ROWS):
            batched = _batched(run.calcs, group)
            for one in group:
                out.add(_measure(run, one, batched))
            group = []
        if chunk is not None:
            group.append(chunk)


# --- one chunk ----------------------------------------------------------------------------------


@dataclass
class _Measured:
    chunk: dict[str, Any]
    drift: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    usage: list[dict[str, Any]]


@dataclass
class _Collected:
    chunks: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)

    def add(self, m: _Measured) -> None:
        self.chunks.append(m.chunk)
        self.drift += m.drift
        self.quality += m.quality
        self.usage += m.usage


def _measure(run: _Run, chunk: Chunk, batched: Batched | None = None) -> _Measured:
    calcs, ref, spec = run.calcs, run.ref, run.spec
    batched = batched or {}

    def row_of(name: str, calc: Callable[[], Any]) -> pd.Series:
        """The batched call's row for this chunk, or this chunk's own call."""
        found = batched.get((name, chunk.index))
        return found if found is not None else _row(calc())

    data = chunk.data
    labelled = int(data[Y_TRUE].notna().sum())
    row: dict[str, Any] = {
        "chunk": chunk.key, "chunk_index": chunk.index, "start": chunk.start, "end": chunk.end,
        "n_rows": len(data), "n_labelled": labelled, "too_small": chunk.too_small, "failed_steps": [],
    }  # fmt: skip

    def step(name: str, fn: Callable[[], T]) -> T | None:
        try:
            with calcs._strings():
                return _quiet(fn)
        except Exception as err:  # noqa: BLE001 - recorded, alerted, and the other steps still run
            calcs.failures.append({"step": name, "chunk": chunk.key, "error": _error(err)})
            row["failed_steps"].append(name)
            return None

    has_pred = bool(data[Y_PRED].notna().any())
    if calcs.estimator is not None and has_pred:
        est = step("performance estimation", lambda: _estimate(
            row_of("estimator", lambda: calcs.estimator.estimate(data.drop(columns=[Y_TRUE]))), spec, ref))
        if est:
            row.update(est)
    if calcs.realized is not None and labelled and has_pred:
        real = step("realized performance", lambda: _realize(
            row_of("realized", lambda: calcs.realized.calculate(_labelled_rows(data))), data, spec))
        if real is not None:
            row["realized"] = real
    drift: list[dict[str, Any]] = []
    if calcs.univariate is not None:
        drift = step("univariate drift", lambda: _univariate(
            row_of("univariate", lambda: calcs.univariate.calculate(data)), run, chunk)) or []
    if calcs.multivariate is not None:
        mv = step("multivariate drift", lambda: _multivariate(
            row_of("multivariate", lambda: calcs.multivariate.calculate(data)), calcs, data, spec))
        if mv:
            row.update(mv)
    quality = _quality(run, chunk, step, row_of)
    row.update(_latency(data))
    _no_silent_nan(row, has_pred, calcs, chunk)
    return _Measured(row, drift, quality, _usage(chunk))


def _estimate(r: pd.Series, spec: ProblemSpec, ref: Reference) -> dict[str, float]:
    """The estimate's row (estimation needs no labels; dropping them keeps CBPE from computing a second
    realized value) as loopml's columns."""
    metric = NANNYML_METRIC[spec.metric.name]
    out = {
        "estimated": float(r[(metric, "value")]),
        "estimated_lower": float(r[(metric, "lower_confidence_boundary")]),
        "estimated_upper": float(r[(metric, "upper_confidence_boundary")]),
    }
    if spec.metric.name == "r2":  # Estimated R2 = 1 - MSE / Var(y), Var(y) from the reference (labels are unknown)
        var = float(np.var(ref.frame[Y_TRUE].to_numpy()))
        r2 = lambda mse: 1 - mse / var if var > 0 else np.nan  # noqa: E731
        out = {"estimated": r2(out["estimated"]), "estimated_lower": r2(out["estimated_upper"]),
               "estimated_upper": r2(out["estimated_lower"])}  # fmt: skip
    return out


def _realize(r: pd.Series, data: pd.DataFrame, spec: ProblemSpec) -> float:
    value = float(r[(NANNYML_METRIC[spec.metric.name], "value")])
    if spec.metric.name == "r2":  # NannyML reported MSE; R2 = 1 - MSE / Var(y) over the chunk's labelled rows
        var = float(np.var(_labelled_rows(data)[Y_TRUE].to_numpy()))
        return 1 - value / var if var > 0 else np.nan
    return value


def _univariate(r: pd.Series, run: _Run, chunk: Chunk) -> list[dict[str, Any]]:
    calcs, ref, mon = run.calcs, run.ref, run.spec.monitoring
    alpha = mon.drift_false_alarm_rate / max(len(calcs.drift_features), 1)  # Bonferroni over the features
    rows = []
    for f in calcs.drift_features:
        values = chunk.data[f].dropna()
        n, big_n = len(values), ref.non_null[f]
        if f in ref.categorical:
            stat = float(r[(f, CATEGORICAL_METHOD, "value")])
            k = len(ref.categories[f] | set(values.astype(str).unique()))
            effect, p, crit = _chi2(stat, n, big_n, k, alpha)
            method = CATEGORICAL_METHOD
        else:
            effect = float(r[(f, CONTINUOUS_METHOD, "value")])
            p, crit = _ks(effect, n, big_n, alpha)
            method = CONTINUOUS_METHOD
        threshold = max(crit, mon.min_drift_effect)
        rows.append({"chunk": chunk.key, "chunk_index": chunk.index, "feature": f, "method": method, "value": effect,
                     "p_value": p, "threshold": threshold,
                     "alert": bool(n and pd.notna(effect) and effect > threshold and p < alpha)})  # fmt: skip
    return rows


def _ks(d: float, n: int, big_n: int, alpha: float) -> tuple[float, float]:
    """(p-value, critical D at ``alpha``) of a two-sample Kolmogorov-Smirnov D (asymptotic)."""
    if not n or not big_n or pd.isna(d):
        return float("nan"), float("nan")
    en = math.sqrt(n * big_n / (n + big_n))
    return float(stats.kstwobign.sf(d * en)), float(stats.kstwobign.isf(alpha) / en)


def _chi2(stat: float, n: int, big_n: int, categories: int, alpha: float) -> tuple[float, float, float]:
    """(Cramer's V, p-value, critical V at ``alpha``) of NannyML's chi-squared reference-vs-chunk table."""
    if not n or not big_n or pd.isna(stat):
        return float("nan"), float("nan"), float("nan")
    dof = max(categories - 1, 1)
    total = n + big_n
    return math.sqrt(stat / total), float(stats.chi2.sf(stat, dof)), math.sqrt(stats.chi2.isf(alpha, dof) / total)


def _multivariate(r: pd.Series, calcs: _Calculators, data: pd.DataFrame, spec: ProblemSpec) -> dict[str, Any]:
    assert calcs.baseline is not None
    value = float(r[("reconstruction_error", "value")])
    mon = spec.monitoring
    lower, upper = calcs.baseline.band(len(data), mon.drift_false_alarm_rate, mon.multivariate_std)
    return {"reconstruction_error": value, "reconstruction_upper_threshold": upper,
            "reconstruction_lower_threshold": lower, "multivariate_alert": bool(value > upper or value < lower)}  # fmt: skip


def _quality(run: _Run, chunk: Chunk, step: Callable[[str, Callable[[], Any]], Any],
             row_of: Callable[[str, Callable[[], Any]], pd.Series]) -> list[dict[str, Any]]:  # fmt: skip
    calcs, ref, q = run.calcs, run.ref, run.spec.monitoring.quality
    n = len(chunk.data)
    per: dict[str, dict[str, Any]] = {f: {"chunk": chunk.key, "chunk_index": chunk.index, "feature": f, "n_rows": n}
                                      for f in ref.features}  # fmt: skip
    for kind, calc in calcs.quality.items():
        r = step(f"data quality ({kind.replace('_', ' ')})",
                 lambda kind=kind, calc=calc: row_of(f"quality:{kind}", lambda: calc.calculate(chunk.data)))
        if r is None:
            continue
        for f in calc.column_names:
            per[f][kind] = float(r[(f, "value")])
            per[f][f"{kind}_rate"] = per[f][kind] / n if n else np.nan
    for f, row in per.items():
        reasons = []
        if row.get("missing_rate", 0) - ref.missing_rate[f] > q.max_missing_rate_increase:
            reasons.append("missing_values")
        if row.get("unseen_rate", 0) > q.max_unseen_rate:
            reasons.append("unseen_categories")
        if row.get("out_of_range_rate", 0) > q.max_out_of_range_rate:
            reasons.append("out_of_range")
        row["reference_missing_rate"] = ref.missing_rate[f]
        row["problems"] = reasons
        row["alert"] = bool(reasons)
    return list(per.values())


def _latency(data: pd.DataFrame) -> dict[str, Any]:
    if LATENCY not in data.columns:
        return {"api_rows": 0}
    lat = data[LATENCY].dropna().to_numpy()
    if not len(lat):
        return {"api_rows": 0}
    p50, p99 = np.percentile(lat, [50, 99])
    return {"api_rows": len(lat), "latency_p50_ms": float(p50), "latency_p99_ms": float(p99)}


def _usage(chunk: Chunk) -> list[dict[str, Any]]:
    """API traffic per day (rows, requests, billed milliseconds): what the cost estimate reads."""
    data = chunk.data
    if LATENCY not in data.columns or not data[LATENCY].notna().any():
        return []
    api = data[data[LATENCY].notna()]
    share = api[REQUEST_SHARE] if REQUEST_SHARE in api.columns else pd.Series(1.0, index=api.index)
    share = pd.to_numeric(share, errors="coerce").fillna(1.0)
    frame = pd.DataFrame({"rows": 1, "requests": share, "billed_ms": api[LATENCY] * share})
    day = api[TS].dt.strftime("%Y-%m-%d") if TS in api.columns else pd.Series(chunk.key, index=api.index)
    sums = frame.groupby(day.to_numpy()).sum()
    return [{"day": str(d), "rows": int(r["rows"]), "requests": float(r["requests"]), "billed_ms": float(r["billed_ms"])}
            for d, r in sums.iterrows()]  # fmt: skip


def _no_silent_nan(row: dict[str, Any], has_pred: bool, calcs: _Calculators, chunk: Chunk) -> None:
    """A chunk big enough to judge whose estimate (or realized value) came back empty is a failure."""
    if chunk.too_small:
        return
    checks = [("performance estimation", "estimated", calcs.estimator is not None and has_pred),
              ("realized performance", "realized", calcs.realized is not None and has_pred and row["n_labelled"] > 0)]  # fmt: skip
    for name, column, expected in checks:
        if expected and name not in row["failed_steps"] and pd.isna(row.get(column, np.nan)):
            calcs.failures.append({"step": name, "chunk": chunk.key, "error": f"NannyML returned no {column} value"})
            row["failed_steps"].append(name)


# --- assembly -----------------------------------------------------------------------------------


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def _result(run: _Run, out: _Collected, seconds: float) -> MonitoringResult:
    spec, ref, calcs, notes = run.spec, run.ref, run.calcs, run.notes
    for f in calcs.failures:
        where = f" on chunk {f['chunk']}" if f["chunk"] else ""
        notes.add(f"{f['step']} failed{where}: {f['error']}")
    chunks = pd.DataFrame(out.chunks) if out.chunks else _empty(CHUNK_COLUMNS)
    drift = pd.DataFrame(out.drift) if out.drift else _empty(DRIFT_COLUMNS)
    # a feature absent from every analysis piece is a schema change, not a drift of NaNs
    drift = drift[drift["feature"].isin(ref.seen_features)] if not drift.empty else drift
    quality = pd.DataFrame(out.quality) if out.quality else _empty(QUALITY_COLUMNS)
    chunks = _assemble(chunks, spec, drift)
    small = int(chunks["too_small"].sum()) if not chunks.empty else 0
    if small:
        notes.add(f"{small} chunk(s) have fewer than min_chunk_rows={spec.monitoring.min_chunk_rows} rows: "
                  f"shown, but they raise no alert and decide nothing")  # fmt: skip
    return MonitoringResult(
        task=spec.task,
        metric=spec.metric.name,
        threshold=spec.metric.threshold,
        higher_is_better=spec.metric.higher_is_better,
        chunks=chunks.reindex(columns=CHUNK_COLUMNS),
        drift=drift.reset_index(drop=True).reindex(columns=DRIFT_COLUMNS),
        quality=quality.reindex(columns=QUALITY_COLUMNS),
        messages=notes.messages(),
        failures=list(calcs.failures),
        usage=_daily_usage(out.usage),
        seconds=seconds,
        reference_rows=len(ref.frame),
        calibration=_reference_calibration(ref, spec),
        latency_limit_ms=spec.constraints.p99_latency_ms,
    )


def _reference_calibration(ref: Reference, spec: ProblemSpec) -> dict[str, Any] | None:
    """How well the served model's probabilities are calibrated on the reference: what CBPE rests on."""
    frame, proba = ref.frame, ref.y_pred_proba
    if spec.task == "binary" and isinstance(proba, str):
        return calibration_diagnostics(frame[Y_TRUE].to_numpy(), frame[proba].to_numpy(), [0.0, 1.0])
    if spec.task == "multiclass" and isinstance(proba, dict):
        labels = list(proba)
        return calibration_diagnostics(frame[Y_TRUE].to_numpy(), frame[[proba[c] for c in labels]].to_numpy(), labels)
    return None


def _daily_usage(usage: list[dict[str, Any]]) -> pd.DataFrame:
    if not usage:
        return pd.DataFrame(columns=["day", "rows", "requests", "billed_ms"])
    return pd.DataFrame(usage).groupby("day", as_index=False).sum().sort_values("day").reset_index(drop=True)


def _assemble(chunks: pd.DataFrame, spec: ProblemSpec, drift: pd.DataFrame) -> pd.DataFrame:
    if chunks.empty:
        return chunks
    chunks = chunks.reindex(columns=[*chunks.columns, *(c for c in CHUNK_COLUMNS if c not in chunks.columns)])
    chunks["too_small"] = chunks["too_small"].astype(bool)
    chunks["metric"] = spec.metric.name
    chunks["threshold"] = spec.metric.threshold
    for column in ("estimated", "realized"):
        chunks[column] = chunks[column].astype(float)
        chunks[f"{column}_alert"] = chunks[column].map(lambda v: _fails(spec, v)) & ~chunks["too_small"]
    chunks["estimation_error"] = chunks["estimated"] - chunks["realized"]
    chunks["multivariate_alert"] = chunks["multivariate_alert"].astype("boolean").fillna(False).astype(bool)
    drifting = _drifting(drift)
    chunks["drifting_features"] = chunks["chunk"].map(lambda k: drifting.get(k, []))
    chunks["n_drifting_features"] = chunks["drifting_features"].map(len)
    return chunks


def _fails(spec: ProblemSpec, value: float) -> bool:
    return bool(pd.notna(value) and not spec.metric.passes(float(value)))


def _drifting(drift: pd.DataFrame) -> dict[str, list[str]]:
    if drift.empty:
        return {}
    alerts = drift[drift["alert"].astype(bool)]
    return {str(k): sorted(map(str, g["feature"])) for k, g in alerts.groupby("chunk", sort=False)}
