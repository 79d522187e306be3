"""Registration: the version record (model, metrics, gates, lineage, warnings) written to the registry,
and the promotion when the gates pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loopml.modeling.evaluate import Evaluation
from loopml.modeling.gates import gates
from loopml.modeling.lineage import check_traceable, code_version
from loopml.modeling.select import Selection
from loopml.modeling.tune import CandidateResult, schema_of
from loopml.modeling.windows import TrainingData
from loopml.registry.records import TrainingRecord
from loopml.registry.registry import Registry
from loopml.serving.predictor import Schema, example_rows, known_categories
from loopml.spec import ProblemSpec


def training_record(spec: ProblemSpec, data: TrainingData, winner: CandidateResult, selection: Selection,
                 ev: Evaluation, classes: list | None, run_pathspec: str | None,
                 as_of: datetime | None = None) -> TrainingRecord:
    """What training knows about the winner, as its version record holds it (the registry adds the
    number, the artifacts and the reference set)."""
    test = ev.reference
    schema = schema_of(spec, classes)
    # serving's contract (loopml.serving.predictor): known categories for the number/bool rule and the
    # OpenAPI enum, example rows from the reference set for the OpenAPI document
    schema = Schema(schema.task, schema.features, schema.classes,
                    {k: tuple(v) if v is not None else None for k, v in known_categories(data.frame, schema).items()})
    onnx_error = None if winner.onnx.model else (winner.onnx.error or "export failed")
    return TrainingRecord.model_validate({
        "name": spec.name, "task": spec.task, "family": winner.family, "params": winner.params,
        "schema": schema.to_dict(), "examples": example_rows(test, schema), "metrics": ev.metrics,
        "valid_score": winner.valid_score,
        "data": {"uri": data.uri, "fingerprint": data.fingerprint, "rows": len(data.frame), "window": data.window,
                 "as_of": str(data.frame[spec.timestamp].max()) if spec.timestamp else None,
                 # the served model is refitted on train + validation after selection; the test split stays
                 # held out: it is the monitoring reference and a fair ground for a challenger match
                 "fit_rows": len(data.frame) - len(test), "test_rows": len(test),
                 "test_from": str(test[spec.timestamp].min()) if spec.timestamp else None},
        "lineage": {"metaflow_run": run_pathspec, "code_version": code_version(), "spec_sha256": spec.fingerprint()},
        "onnx": {"parity_max_abs_diff": winner.onnx.max_abs_diff, "error": winner.onnx.error},
        "latency_ms": {"p50": winner.latency_p50_ms, "p99": winner.latency_p99_ms, "served_as": winner.served_as},
        "selection": selection.table, "selection_reason": selection.reason,
        "fairness": ev.fairness, "importance": ev.importance, "gates": gates(spec, ev.metrics, ev.fairness, onnx_error),
        "warnings": ev.warnings,
        "calibration": ev.calibration,
        "registered_at": as_of or datetime.now(UTC),
    })


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
    record = training_record(spec, data, winner, selection, ev, classes, run_pathspec, as_of)
    g = record.gates
    version = registry.register(artifacts, record, ev.reference, run_key=run_key)
    decision = {"version": version.number, "gates": g.as_written() if g else None, "promoted": False}
    if g is not None and g.passes and promote:
        if registry.alias() != version.number:  # a retried step finds its version promoted already
            registry.promote(version.number, why=f"trained by {run_pathspec}; test {str(g.metric).split()[0]} {g.value:.4f} passes {g.metric}")
        decision["promoted"] = True
    return version.number, decision
