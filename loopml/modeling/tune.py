"""One candidate family: a seeded randomized search scored on the validation split, then the
measurements the selection needs (latency and size of the artifact that would be served); and the
refit of the selected candidate on every row it may learn from (train + validation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import ParameterSampler
from sklearn.pipeline import Pipeline

from loopml.data import build_preprocessor, prepare
from loopml.modeling.candidates import default_space, make_estimator
from loopml.modeling.export import OnnxExport, to_joblib, to_onnx
from loopml.modeling.metrics import score
from loopml.serving.predictor import OnnxPredictor, Predictor, Schema, SklearnPredictor, latency_ms
from loopml.spec import Candidate, ProblemSpec

# (predictor, rows) -> (p50, p99) in ms; injected by tests so that no outcome depends on this machine's speed
LatencyMeasure = Callable[[Predictor, list[dict[str, Any]]], tuple[float, float]]


@dataclass
class Encoded:
    """Features and class-index targets of one split."""

    X: pd.DataFrame
    y: np.ndarray


def classes_of(df: pd.DataFrame, spec: ProblemSpec) -> list[Any] | None:
    """The target's classes, sorted (their order is the probabilities' column order); None for regression."""
    return sorted(df[spec.target].unique().tolist()) if spec.is_classifier else None


def schema_of(spec: ProblemSpec, classes: list | None) -> Schema:
    """The serving schema (task, features and their types, classes) a model of this spec answers with."""
    return Schema(spec.task, tuple((f.name, f.type) for f in spec.features), tuple(classes) if classes else None)


def encode(df: pd.DataFrame, spec: ProblemSpec, classes: list[Any] | None) -> Encoded:
    """The features as the pipeline reads them and the target as class indices (-1 for an unseen class)."""
    y = df[spec.target].to_numpy()
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index.get(v, -1) for v in y.tolist()])
    return Encoded(prepare(df, spec), y)


def model_outputs(pipeline: Pipeline, X: pd.DataFrame, spec: ProblemSpec, classes: list | None):
    """(predicted labels, probabilities or None) in the user's label space."""
    if not spec.is_classifier:
        return pipeline.predict(X), None
    proba = pipeline.predict_proba(X)
    return np.asarray(classes)[proba.argmax(axis=1)], proba


def true_labels(y: np.ndarray, classes: list | None) -> np.ndarray:
    """Encoded targets back in the user's label space (regression targets pass through)."""
    return np.asarray(classes)[y] if classes else y


def evaluate_metric(pipeline: Pipeline, data: Encoded, spec: ProblemSpec, classes: list | None) -> float:
    """The spec's success metric of ``pipeline`` on ``data``."""
    pred, proba = model_outputs(pipeline, data.X, spec, classes)
    return score(spec.metric.name, true_labels(data.y, classes), pred, proba, classes)


@dataclass
class CandidateResult:
    """One tuned candidate: its best parameters and validation score, every trial, and the artifacts that
    would be served with their latency and size."""

    family: str
    params: dict[str, Any]
    valid_score: float
    trials: list[dict[str, Any]]
    pipeline: Pipeline
    onnx: OnnxExport
    joblib_bytes: bytes
    latency_p50_ms: float
    latency_p99_ms: float
    size_mb: float
    served_as: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The fields selection judges (and the version record's selection table shows), without the artifacts."""
        return {
            "family": self.family,
            "params": self.params,
            "valid_score": self.valid_score,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "size_mb": self.size_mb,
            "served_as": self.served_as,
            "onnx_parity_max_abs_diff": self.onnx.max_abs_diff,
            "onnx_error": self.onnx.error,
            "trials": self.trials,
        }


def tune(candidate: Candidate, train: Encoded, valid: Encoded, spec: ProblemSpec, classes: list | None, schema: Schema,
         measure: LatencyMeasure = latency_ms) -> CandidateResult:
    """A seeded randomized search over the candidate's space, each trial fitted on ``train`` and scored on
    ``valid`` in the spec's metric; the best one exported and measured."""
    space = candidate.space or default_space(candidate.family, spec.task)
    base = Pipeline([("pre", build_preprocessor(spec, scale=candidate.family == "linear")), ("model", make_estimator(candidate.family, spec.task, spec.seed))])
    sampler = ParameterSampler(space, n_iter=candidate.n_iter, random_state=spec.seed)
    trials: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], Pipeline] | None = None
    sign = 1 if spec.metric.higher_is_better else -1
    for params in sampler:
        pipe = clone(base).set_params(**{f"model__{k}": v for k, v in params.items()})
        pipe.fit(train.X, train.y)
        value = evaluate_metric(pipe, valid, spec, classes)
        trials.append({"params": params, "valid_score": value})
        if best is None or sign * value > sign * best[0]:
            best = (value, params, pipe)
    assert best is not None
    value, params, pipe = best
    return CandidateResult(candidate.family, params, value, trials, **served_fields(pipe, schema, valid.X, measure))


def served_fields(pipe: Pipeline, schema: Schema, X_check: pd.DataFrame, measure: LatencyMeasure) -> dict[str, Any]:
    """The artifacts that would be served, with their latency and size: CandidateResult's fields after ``trials``."""
    onnx = to_onnx(pipe, schema, X_check.head(2000))
    jb = to_joblib(pipe)
    predictor: Predictor = OnnxPredictor(onnx.model, schema) if onnx.model else SklearnPredictor(pipe, schema)
    sample = X_check.head(200)
    rows = sample.astype(object).where(sample.notna(), None).to_dict("records")
    p50, p99 = measure(predictor, rows)
    return {"pipeline": pipe, "onnx": onnx, "joblib_bytes": jb, "latency_p50_ms": p50, "latency_p99_ms": p99,
            "size_mb": len(onnx.model or jb) / 1e6, "served_as": predictor.kind,
            "notes": [onnx.error] if onnx.error else []}


def refit(winner: CandidateResult, fit: Encoded, check: Encoded, schema: Schema,
          measure: LatencyMeasure = latency_ms) -> CandidateResult:
    """The selected family and parameters fitted again on ``fit`` (train + validation), so the served
    model has learned from the newest rows the test split does not hold out. Its artifacts, latency and
    size are those of the refitted model; ``valid_score`` stays the selection's (measured before refit)."""
    pipe = clone(winner.pipeline).fit(fit.X, fit.y)
    return replace(winner, **served_fields(pipe, schema, check.X, measure))
