"""The gates a version must pass to become champion: the spec's success metric and fairness gap."""

from __future__ import annotations

from typing import Any

from loopml.spec import ProblemSpec


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
