"""Artifacts: joblib always, ONNX whenever the pipeline converts and matches scikit-learn."""

from __future__ import annotations

import io
from dataclasses import dataclass

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from loopml.serving.predictor import OnnxPredictor, Schema

PARITY_TOLERANCE = 1e-4  # ONNX Runtime computes in float32; trees see float32 in both (see features.py)


@dataclass
class OnnxExport:
    """The ONNX conversion of a pipeline: the model (None when it failed), its parity with scikit-learn, the error."""

    model: bytes | None
    max_abs_diff: float | None
    error: str | None


def to_joblib(pipeline: Pipeline) -> bytes:
    """The pipeline as compressed joblib bytes (the artifact served when ONNX is not possible)."""
    buf = io.BytesIO()
    joblib.dump(pipeline, buf, compress=3)
    return buf.getvalue()


def _convert(pipeline: Pipeline, schema: Schema) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [
        (name, FloatTensorType([None, 1]) if kind == "numeric" else StringTensorType([None, 1]))
        for name, kind in schema.features
    ]
    options = None
    if schema.task != "regression":
        options = {id(pipeline.steps[-1][1]): {"zipmap": False}}  # probabilities as a plain tensor
    onx = to_onnx(pipeline, initial_types=inputs, options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString()


def sklearn_outputs(pipeline: Pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    """What ONNX parity is checked on: predictions for regression, probabilities otherwise."""
    return pipeline.predict(X) if task == "regression" else pipeline.predict_proba(X)


def to_onnx(pipeline: Pipeline, schema: Schema, X_check: pd.DataFrame) -> OnnxExport:
    """Convert and check parity on ``X_check``; a model that fails either is served from joblib."""
    try:
        model = _convert(pipeline, schema)
        predictor = OnnxPredictor(model, schema)
    except Exception as err:  # skl2onnx does not cover every estimator
        return OnnxExport(None, None, f"ONNX conversion failed: {type(err).__name__}: {err}"[:500])
    rows = X_check.astype(object).where(X_check.notna(), None).to_dict("records")
    out = predictor.predict(rows)
    expected = sklearn_outputs(pipeline, X_check, schema.task)
    if schema.task == "regression":
        got = np.asarray(out.predictions, dtype=float)
        scale = max(1.0, float(np.abs(expected).max()))  # regression targets can be large: compare relatively
        diff = float(np.abs(got - expected).max()) / scale
    else:
        keys = [str(c) for c in schema.classes or ()]
        got = np.array([[p[k] for k in keys] for p in out.probabilities or []])
        diff = float(np.abs(got - expected).max())
    if diff > PARITY_TOLERANCE:
        return OnnxExport(None, diff, f"ONNX parity failed: max abs diff {diff:.2e} > {PARITY_TOLERANCE:g}")
    return OnnxExport(model, diff, None)
