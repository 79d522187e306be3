"""Predictors: turn JSON rows into predictions, with no pandas on the ONNX path.

The model's schema (task, features, classes) travels in the version's metadata, so serving needs
neither the spec nor the training code. Classifiers are trained on class indices; ``classes`` maps
an index back to the label the user knows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Schema", "Predictor", "OnnxPredictor", "SklearnPredictor", "check_rows", "RowError", "MISSING"]

MISSING = "__missing__"  # same marker as loopml.data.features.MISSING (kept here so serving skips pandas)


@dataclass(frozen=True)
class Schema:
    task: str
    features: tuple[tuple[str, str], ...]  # (name, "numeric" | "categorical")
    classes: tuple[Any, ...] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        classes = d.get("classes")
        return cls(d["task"], tuple((f["name"], f["type"]) for f in d["features"]), tuple(classes) if classes else None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "features": [{"name": n, "type": t} for n, t in self.features],
            "classes": list(self.classes) if self.classes else None,
        }


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str


def check_rows(rows: list[Any], schema: Schema) -> list[RowError]:
    """Every problem in a batch, each naming the row and field; an empty list means valid."""
    errors: list[RowError] = []
    names = {n for n, _ in schema.features}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(RowError(i, "", f"expected an object of features, got {type(row).__name__}"))
            continue
        for name, kind in schema.features:
            if name not in row:
                errors.append(RowError(i, name, "missing feature (send null for an unknown value)"))
                continue
            v = row[name]
            if v is None:
                continue
            if kind == "numeric":
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    errors.append(RowError(i, name, f"expected a finite number, got {v!r}"))
            elif not isinstance(v, str | int | float | bool):
                errors.append(RowError(i, name, f"expected a string, got {type(v).__name__}"))
        extra = sorted(set(row) - names)
        if extra:
            errors.append(RowError(i, extra[0], f"unknown feature(s) {extra}"))
    return errors


def _category(v: Any) -> str:
    return MISSING if v is None else str(v)


@dataclass
class Outputs:
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


class Predictor(Protocol):
    schema: Schema
    kind: str

    def predict(self, rows: list[dict[str, Any]]) -> Outputs: ...


def _outputs(schema: Schema, values: np.ndarray, proba: np.ndarray | None) -> Outputs:
    if schema.task == "regression":
        return Outputs([float(v) for v in np.ravel(values)], None)
    classes = schema.classes or ()
    idx = np.argmax(proba, axis=1)
    keys = [str(c) for c in classes]
    probs = [dict(zip(keys, map(float, p), strict=True)) for p in proba.tolist()]
    return Outputs([classes[i] for i in idx], probs)


class OnnxPredictor:
    kind = "onnx"

    def __init__(self, model: bytes, schema: Schema) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one request per Lambda: threads only add contention
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.schema = schema
        self._outputs = [o.name for o in self.session.get_outputs()]

    def inputs(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        n = len(rows)
        for name, kind in self.schema.features:
            if kind == "numeric":
                col = [row[name] for row in rows]
                arr = np.array([np.nan if v is None else v for v in col], dtype=np.float32)
            else:
                arr = np.array([_category(row[name]) for row in rows], dtype=object)
            feeds[name] = arr.reshape(n, 1)
        return feeds

    def raw(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(predicted values or class indices, probabilities or None) for prepared column feeds."""
        result = self.session.run(None, feeds)
        if self.schema.task == "regression":
            return np.ravel(result[0]), None
        return np.ravel(result[0]), np.asarray(result[self._outputs.index("probabilities")])

    def predict(self, rows: list[dict[str, Any]]) -> Outputs:
        values, proba = self.raw(self.inputs(rows))
        return _outputs(self.schema, values, proba)


class SklearnPredictor:
    """The scikit-learn pipeline path: needs pandas; used when no ONNX artifact exists."""

    kind = "sklearn"

    def __init__(self, pipeline: Any, schema: Schema) -> None:
        self.pipeline = pipeline
        self.schema = schema

    def frame(self, rows: list[dict[str, Any]]) -> Any:
        import pandas as pd

        data = {}
        for name, kind in self.schema.features:
            col = [row[name] for row in rows]
            if kind == "numeric":
                data[name] = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
            else:
                data[name] = [_category(v) for v in col]
        return pd.DataFrame(data)

    def predict(self, rows: list[dict[str, Any]]) -> Outputs:
        X = self.frame(rows)
        if self.schema.task == "regression":
            return _outputs(self.schema, self.pipeline.predict(X), None)
        return _outputs(self.schema, np.empty(0), self.pipeline.predict_proba(X))


def latency_ms(predictor: Predictor, rows: list[dict[str, Any]], repeat: int = 200) -> tuple[float, float]:
    """Single-row p50 and p99 in milliseconds, measured on the predictor that would be served."""
    predictor.predict(rows[:1])  # warm-up
    times = []
    for i in range(repeat):
        row = rows[i % len(rows)]
        t0 = time.perf_counter()
        predictor.predict([row])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
