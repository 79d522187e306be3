"""The training run as a few core functions; ``flows/train_flow.py`` calls one per step."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data import fingerprint, load_frame, validate
from loopml.modeling.evaluate import fairness, importance
from loopml.modeling.metrics import all_metrics
from loopml.modeling.select import Selection
from loopml.modeling.split import Splits, split
from loopml.modeling.tune import CandidateResult, classes_of, encode, model_outputs, true_labels
from loopml.predictor import Schema, example_rows, known_categories
from loopml.registry import Registry
from loopml.spec import ProblemSpec


@dataclass
class TrainingData:
    frame: pd.DataFrame
    fingerprint: str
    uri: str
    window: dict[str, str] | None
    until: str | None = None


def load_training_data(spec: ProblemSpec, uri: str | None = None, until: str | None = None) -> TrainingData:
    """Load and validate; ``until`` and the spec's retraining window pick the newer data to train on."""
    uri = uri or spec.data.train
    df = validate(load_frame(uri), spec, source=uri)
    window = None
    if spec.timestamp and (until or spec.retraining.window_days):
        end = pd.Timestamp(until) if until else df[spec.timestamp].max()
        start = end - pd.Timedelta(days=spec.retraining.window_days) if spec.retraining.window_days else df[spec.timestamp].min()
        df = df[(df[spec.timestamp] > start) & (df[spec.timestamp] <= end)].reset_index(drop=True)
        window = {"start": str(start), "end": str(end)}
        if df.empty:
            raise ValueError(f"{uri}: no rows in the training window {window}")
    return TrainingData(df, fingerprint(df), uri, window, until)


def check_traceable(spec: ProblemSpec, data: TrainingData) -> None:
    """A version must point at data someone can get back: re-read the location and compare the
    fingerprint. Data that moved, vanished or changed during training is refused."""
    if not data.fingerprint or not data.uri:
        raise ValueError("refusing to register: the training data has no recorded location or fingerprint")
    try:
        again = load_training_data(spec, uri=data.uri, until=data.until).fingerprint
    except Exception as err:
        raise ValueError(f"refusing to register: the training data at {data.uri} cannot be read back ({err})") from None
    if again != data.fingerprint:
        raise ValueError(f"refusing to register: the training data at {data.uri} changed during the run "
                         f"(fingerprint {data.fingerprint[:12]} at load, {again[:12]} now)")


def schema_of(spec: ProblemSpec, classes: list | None) -> Schema:
    return Schema(spec.task, tuple((f.name, f.type) for f in spec.features), tuple(classes) if classes else None)


def make_splits(df: pd.DataFrame, spec: ProblemSpec) -> tuple[Splits, list | None]:
    return split(df, spec), classes_of(df, spec)


def with_predictions(df: pd.DataFrame, spec: ProblemSpec, pred: np.ndarray, proba: np.ndarray | None, classes: list | None) -> pd.DataFrame:
    """What NannyML needs: features, targets, timestamps and ids beside predictions and probabilities."""
    keep = [c for c in [spec.id, spec.timestamp, *spec.feature_names, spec.target] if c and c in df.columns]
    out = df[keep].reset_index(drop=True).copy()
    out["y_pred"] = pred.tolist() if spec.is_classifier else pred
    if proba is not None and classes is not None:
        if len(classes) == 2:
            out["y_pred_proba"] = proba[:, 1]
        else:
            for i, c in enumerate(classes):
                out[f"y_pred_proba_{c}"] = proba[:, i]
    return out


def code_version() -> str | None:
    """The git sha of the code that trained, marked ``-dirty`` with uncommitted changes."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=here)

    try:
        sha = git("rev-parse", "--verify", "HEAD")
        if sha.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Evaluation:
    metrics: dict[str, float]
    fairness: dict[str, Any] | None
    importance: list[dict[str, float]]
    reference: pd.DataFrame


def evaluate(winner: CandidateResult, splits: Splits, spec: ProblemSpec, classes: list | None) -> Evaluation:
    """Predict the test set once; metrics, fairness and the reference set all read those outputs."""
    test = encode(splits.test, spec, classes)
    pred, proba = model_outputs(winner.pipeline, test.X, spec, classes)
    y = true_labels(test.y, classes)
    return Evaluation(
        metrics=all_metrics(spec.task, y, pred, proba, classes),
        fairness=fairness(splits.test, y, pred, proba, spec, classes),
        importance=importance(winner.pipeline, test, spec, classes),
        reference=with_predictions(splits.test, spec, pred, proba, classes),
    )


def gates(spec: ProblemSpec, metrics: dict[str, float], fair: dict[str, Any] | None,
          onnx_error: str | None = None) -> dict[str, Any]:
    """Whether a version may become champion, and the reasons when it may not.
    ``onnx_error`` is set when the model has no ONNX artifact (why the export failed)."""
    value = metrics[spec.metric.name]
    reasons = []
    if onnx_error is not None and spec.constraints.serving == "lambda":
        # the Lambda package ships onnxruntime only (no scikit-learn/joblib): such a champion would
        # take every cold container down with a 503
        reasons.append(f"no ONNX artifact ({onnx_error}); the Lambda API cannot load a scikit-learn model "
                       "(set constraints.serving: any to serve it from a container instead)")
    if not spec.metric.passes(value):
        reasons.append(f"test {spec.metric.name} {value:.4f} misses the threshold ({spec.metric})")
    if fair is not None and not fair["passes"]:
        reasons.append(f"fairness gap in {fair['metric']} across {fair['group']} is {fair['gap']:.4f} > {fair['max_gap']:g}")
    return {"metric": str(spec.metric), "value": value, "passes": not reasons, "reasons": reasons}


def register_version(registry: Registry, spec: ProblemSpec, data: TrainingData, winner: CandidateResult,
                     selection: Selection, ev: Evaluation, classes: list | None, run_pathspec: str | None,
                     promote: bool = True, run_key: str | None = None,
                     as_of: datetime | None = None) -> tuple[int, dict[str, Any]]:
    """Register the winner with its lineage; promote it only when it passes the spec's gates.

    ``run_key`` names the run that registers: asked again with the same key (a retried step), the
    registry returns the version it already holds. ``as_of`` is the registration time the model's
    age counts from (a replay of history passes its own "now")."""
    check_traceable(spec, data)
    artifacts = {"model.joblib": winner.joblib_bytes}
    if winner.onnx.model:
        artifacts["model.onnx"] = winner.onnx.model
    g = gates(spec, ev.metrics, ev.fairness, None if winner.onnx.model else (winner.onnx.error or "export failed"))
    schema = schema_of(spec, classes)
    # serving's contract (loopml.predictor): known categories for the number/bool rule and the
    # OpenAPI enum, example rows from the reference set for the OpenAPI document
    schema = Schema(schema.task, schema.features, schema.classes,
                    {k: tuple(v) if v is not None else None for k, v in known_categories(data.frame, schema).items()})
    meta = {
        "name": spec.name, "task": spec.task, "family": winner.family, "params": winner.params,
        "schema": schema.to_dict(), "examples": example_rows(ev.reference, schema), "metrics": ev.metrics, "valid_score": winner.valid_score,
        "data": {"uri": data.uri, "fingerprint": data.fingerprint, "rows": len(data.frame), "window": data.window,
                 "as_of": str(data.frame[spec.timestamp].max()) if spec.timestamp else None,
                 # rows from here on were held out (the test split): a fair ground for a challenger match
                 "test_from": str(ev.reference[spec.timestamp].min()) if spec.timestamp else None},
        "lineage": {"metaflow_run": run_pathspec, "code_version": code_version(), "spec_sha256": spec.fingerprint()},
        "onnx": {"parity_max_abs_diff": winner.onnx.max_abs_diff, "error": winner.onnx.error},
        "latency_ms": {"p50": winner.latency_p50_ms, "p99": winner.latency_p99_ms, "served_as": winner.served_as},
        "selection": selection.table, "selection_reason": selection.reason,
        "fairness": ev.fairness, "importance": ev.importance, "gates": g,
        "registered_at": (as_of or datetime.now(UTC)).isoformat(),
    }
    version = registry.register(artifacts, meta, ev.reference, run_key=run_key)
    decision = {"version": version.number, "gates": g, "promoted": False}
    if g["passes"] and promote:
        if registry.alias() != version.number:  # a retried step finds its version promoted already
            registry.promote(version.number, why=f"trained by {run_pathspec}; test {g['metric'].split()[0]} {g['value']:.4f} passes {g['metric']}")
        decision["promoted"] = True
    return version.number, decision


@dataclass
class InProcessRun:
    """Everything TrainFlow's steps produce, kept for benches and tests that look inside."""

    spec: ProblemSpec
    data: TrainingData
    splits: Splits
    classes: list | None
    results: list[CandidateResult]
    selection: Selection
    winner: CandidateResult
    evaluation: Evaluation


def fit_in_process(spec: ProblemSpec, uri: str | None = None, until: str | None = None) -> InProcessRun:
    """TrainFlow's steps in one process, sequentially, up to (not including) registration: for
    benchmarks and tests that need a model without the cost of a Metaflow run. The flow remains the
    way to train for real."""
    from loopml.modeling.select import select
    from loopml.modeling.tune import tune

    data = load_training_data(spec, uri=uri, until=until)
    splits, classes = make_splits(data.frame, spec)
    train, valid = encode(splits.train, spec, classes), encode(splits.valid, spec, classes)
    schema = schema_of(spec, classes)
    results = [tune(c, train, valid, spec, classes, schema) for c in spec.candidates]
    selection = select([r.summary() for r in results], spec)
    winner = results[selection.winner]
    return InProcessRun(spec, data, splits, classes, results, selection, winner, evaluate(winner, splits, spec, classes))


def train_in_process(spec: ProblemSpec, registry: Registry, run_pathspec: str = "in-process",
                     promote: bool = True, uri: str | None = None) -> tuple[int, dict[str, Any]]:
    """:func:`fit_in_process`, then register (and promote when the gates pass)."""
    r = fit_in_process(spec, uri)
    return register_version(registry, spec, r.data, r.winner, r.selection, r.evaluation, r.classes, run_pathspec,
                            promote=promote)
