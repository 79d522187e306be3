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

__all__ = ["Schema", "Predictor", "OnnxPredictor", "SklearnPredictor", "prepare_rows", "RowError",
           "MISSING", "FLOAT32_MAX", "shown", "failing_rows", "MAX_CATEGORIES", "known_categories", "example_rows"]

MISSING = "__missing__"  # same marker as loopml.data.features.MISSING (kept here so serving skips pandas)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # ONNX models take float32: larger values become inf
MAX_CATEGORIES = 200  # a feature with more known categories than this is documented without an enum


@dataclass(frozen=True)
class Schema:
    """What a served model accepts and answers: its task, features with their types, classes and the
    categories seen in training. Stored in the version record (``to_dict``) and read back (``from_dict``)."""

    task: str
    features: tuple[tuple[str, str], ...]  # (name, "numeric" | "categorical")
    classes: tuple[Any, ...] | None = None
    # categorical feature -> the categories seen in the version's training data (None: not recorded,
    # or more than MAX_CATEGORIES). Serving uses them for the number/bool rule and the OpenAPI enum.
    categories: dict[str, tuple[str, ...] | None] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        """The schema as stored in a version record."""
        classes = d.get("classes")
        cats = d.get("categories")
        return cls(d["task"], tuple((f["name"], f["type"]) for f in d["features"]), tuple(classes) if classes else None,
                   {k: tuple(v) if v is not None else None for k, v in cats.items()} if cats else None)

    def to_dict(self) -> dict[str, Any]:
        """The schema as a version record stores it."""
        out = {
            "task": self.task,
            "features": [{"name": n, "type": t} for n, t in self.features],
            "classes": list(self.classes) if self.classes else None,
        }
        if self.categories is not None:
            out["categories"] = {k: list(v) if v is not None else None for k, v in self.categories.items()}
        return out

    def known(self, feature: str) -> tuple[str, ...] | None:
        """The categories seen in training for ``feature``; None when not recorded."""
        return (self.categories or {}).get(feature)


def known_categories(frame: Any, schema: Schema) -> dict[str, list[str] | None]:
    """The categories of each categorical feature in ``frame`` (a DataFrame), as the feature pipeline
    sees them (``str`` of the value; booleans read from Parquet/CSV become "True"/"False")."""
    out: dict[str, list[str] | None] = {}
    for name, kind in schema.features:
        if kind != "categorical" or name not in frame.columns:
            continue
        values = sorted({str(v) for v in frame[name].dropna().unique()})
        out[name] = values if len(values) <= MAX_CATEGORIES else None
    return out


def example_rows(frame: Any, schema: Schema, n: int = 2) -> list[dict[str, Any]]:
    """The first ``n`` rows of ``frame`` (a DataFrame) as an API client sends them: numbers as
    floats, categories as strings, null for missing. They become the OpenAPI document's examples."""
    rows = []
    for rec in frame.head(n).to_dict("records"):
        row: dict[str, Any] = {}
        for name, kind in schema.features:
            v = rec.get(name)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            row[name] = None if missing else float(v) if kind == "numeric" else str(v)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class RowError:
    """One problem with a request row: which row and field, and what is wrong."""

    row: int
    field: str
    message: str


def shown(value: Any, limit: int = 60) -> str:
    """A value as it may appear in an error message: ASCII only (a lone surrogate cannot be encoded
    into a UTF-8 response), short, and never the repr of a container (deep nesting would recurse)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        text = ascii(value)
    elif isinstance(value, int):
        text = repr(value) if value.bit_length() <= 64 else "a very long integer"
    elif isinstance(value, float):
        text = repr(value)
    else:
        kind = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__
        return f"a JSON {kind}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": no model runtime can take it
        return False
    return True


def _numeric_problem(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"expected a finite number, got {shown(v)}"
    try:
        f = float(v)
    except OverflowError:  # an int too long for a float
        return f"expected a finite number, got {shown(v)}"
    if not math.isfinite(f):
        return f"expected a finite number, got {shown(v)}"
    if abs(f) > FLOAT32_MAX:
        return f"{shown(v)} is outside the model's float32 range (|x| <= {FLOAT32_MAX:.6g})"
    return None


def _category_of(v: Any, known: tuple[str, ...] | None) -> tuple[str | None, str | None]:
    """(the category string, or None with a problem). The rule for categorical features:
    a string is the category as is (an unseen one is allowed: the model ignores it and drift
    monitoring sees it); a number or a bool is accepted only when it names a known category
    (true -> "True", 3 or 3.0 -> "3", 2.5 -> "2.5"), because otherwise it would silently become a
    new category ("1.0", "True") that the model never saw."""
    if isinstance(v, str):
        if not _encodable(v):
            return None, "not valid Unicode text (a lone surrogate?)"
        return v, None
    if isinstance(v, bool) or isinstance(v, int | float):
        forms = [str(v)]
        if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            forms.insert(0, str(int(v)))
        if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
            forms = []
        for form in forms:
            if known is not None and form in known:
                return form, None
        if known is None:
            return None, f"expected a string, got {shown(v)} (send categories as strings)"
        return None, f"{shown(v)} is not a known category; send a string (known: {_listed(known)})"
    return None, f"expected a string, got {shown(v)}"


def _listed(values: tuple[str, ...], most: int = 10) -> str:
    text = ", ".join(shown(v, 40) for v in values[:most])
    return text + (f", ... ({len(values)} in all)" if len(values) > most else "")


def prepare_rows(rows: list[Any], schema: Schema) -> tuple[list[dict[str, Any]], list[RowError]]:
    """The rows as the model takes them (categoricals as strings) and every problem, each naming
    the row and the field. Problems are reported for the whole batch, not only the first."""
    errors: list[RowError] = []
    out: list[dict[str, Any]] = []
    names = {n for n, _ in schema.features}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(RowError(i, "", f"expected an object of features, got {shown(row)}"))
            continue
        clean: dict[str, Any] = {}
        for name, kind in schema.features:
            if name not in row:
                errors.append(RowError(i, name, "missing feature (send null for an unknown value)"))
                continue
            v = row[name]
            if v is None:
                clean[name] = None
            elif kind == "numeric":
                problem = _numeric_problem(v)
                if problem:
                    errors.append(RowError(i, name, problem))
                clean[name] = v
            else:
                cat, problem = _category_of(v, schema.known(name))
                if problem:
                    errors.append(RowError(i, name, problem))
                clean[name] = cat
        extra = sorted(k for k in row if k not in names)
        if extra:
            listed = [k if k.isascii() and k.isprintable() and len(k) <= 40 else shown(k, 40) for k in extra[:5]]
            errors.append(RowError(i, listed[0], f"unknown feature(s) {', '.join(listed)}"))
        out.append(clean)
    return out, errors


def failing_rows(predictor: Predictor, rows: list[dict[str, Any]]) -> list[RowError]:
    """After a batch failed in the model runtime: which rows fail on their own. One bad row must
    be named, never fail the batch with a bare 500."""
    bad = []
    for i, row in enumerate(rows):
        try:
            predictor.predict([row])
        except Exception as err:
            bad.append(RowError(i, "", f"the model could not score this row ({type(err).__name__})"))
    return bad


def _category(v: Any) -> str:
    return MISSING if v is None else str(v)


@dataclass
class Outputs:
    """A predictor's answer: one prediction per row and, for classifiers, each row's class probabilities."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


class Predictor(Protocol):
    """A loaded model that answers prepared rows; ``kind`` says which artifact it runs (onnx or sklearn)."""

    schema: Schema
    kind: str

    def predict(self, rows: list[dict[str, Any]]) -> Outputs:
        """Predictions for rows already checked by :func:`prepare_rows`."""
        ...


def _outputs(schema: Schema, values: np.ndarray, proba: np.ndarray | None) -> Outputs:
    if schema.task == "regression":
        return Outputs([float(v) for v in np.ravel(values)], None)
    classes = schema.classes or ()
    idx = np.argmax(proba, axis=1)
    keys = [str(c) for c in classes]
    probs = [dict(zip(keys, map(float, p), strict=True)) for p in proba.tolist()]
    return Outputs([classes[i] for i in idx], probs)


class OnnxPredictor:
    """The ONNX Runtime path (no pandas, no pickle): one single-threaded session per model."""

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
        """The rows as the session's column feeds: float32 numbers (NaN when unknown), category strings."""
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
        """Predictions (and probabilities) for prepared rows."""
        values, proba = self.raw(self.inputs(rows))
        return _outputs(self.schema, values, proba)


class SklearnPredictor:
    """The scikit-learn pipeline path: needs pandas; used when no ONNX artifact exists."""

    kind = "sklearn"

    def __init__(self, pipeline: Any, schema: Schema) -> None:
        self.pipeline = pipeline
        self.schema = schema

    def frame(self, rows: list[dict[str, Any]]) -> Any:
        """The rows as the DataFrame the pipeline was fitted on."""
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
        """Predictions (and probabilities) for prepared rows."""
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
