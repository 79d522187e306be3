"""The gates a version must pass to become champion: the spec's success metric and fairness gap."""

from __future__ import annotations

from typing import Any

from loopml.spec import ProblemSpec


def gates(spec: ProblemSpec, metrics: dict[str, float], fair: dict[str, Any] | None) -> dict[str, Any]:
    """Whether a version may become champion, and the reasons when it may not."""
    value = metrics[spec.metric.name]
    reasons = []
    if not spec.metric.passes(value):
        reasons.append(f"test {spec.metric.name} {value:.4f} misses the threshold ({spec.metric})")
    if fair is not None and not fair["passes"]:
        reasons.append(f"fairness gap in {fair['metric']} across {fair['group']} is {fair['gap']:.4f} > {fair['max_gap']:g}")
    return {"metric": str(spec.metric), "value": value, "passes": not reasons, "reasons": reasons}
