"""Whether to retrain: time-based (the model is too old) and performance-based (it keeps failing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from loopml.dates import utc as _utc
from loopml.monitoring.result import plain
from loopml.spec import ProblemSpec

__all__ = ["Decision", "decide_retraining"]


@dataclass(frozen=True)
class Decision:
    """Whether to retrain, why, and the evidence (recent chunks, the model's age) the reasons rest on."""

    retrain: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return _json(asdict(self))


def decide_retraining(chunks: pd.DataFrame, spec: ProblemSpec, model_created_at: datetime, now: datetime) -> Decision:
    """Retrain when the model is older than ``max_age_days``, or when the metric fails the spec's
    threshold in each of the ``consecutive_chunks`` most recent chunks.

    A chunk's metric is its realized value when labels exist (ground truth beats an estimate), else
    its estimated value; a chunk with neither breaks the run of failures. Chunks marked ``too_small``
    are skipped: a handful of rows at a window's edge must not flip a decision.
    """
    reasons: list[str] = []
    age_days = _age_days(model_created_at, now)
    max_age = spec.retraining.max_age_days
    if max_age is not None and age_days > max_age:
        reasons.append(f"model is {age_days:.1f} days old, older than max_age_days={max_age:g}")

    needed = spec.retraining.consecutive_chunks
    recent = _recent(chunks, spec, needed)
    failing = _failing_streak(recent)
    if failing >= needed:
        reasons.append(f"{spec.metric} failed in the {failing} most recent chunk(s) (consecutive_chunks={needed})")

    evidence = {
        "model_created_at": _utc(model_created_at).isoformat(),
        "now": _utc(now).isoformat(),
        "age_days": age_days,
        "max_age_days": max_age,
        "metric": spec.metric.name,
        "threshold": spec.metric.threshold,
        "consecutive_chunks": needed,
        "consecutive_failing": failing,
        "recent_chunks": recent,
    }
    return Decision(retrain=bool(reasons), reasons=reasons, evidence=_json(evidence))


def _recent(chunks: pd.DataFrame, spec: ProblemSpec, n: int) -> list[dict[str, Any]]:
    """The n most recent chunks, newest first, with the value that judged each."""
    if chunks is None or chunks.empty:
        return []
    ordered = chunks.sort_values("chunk_index") if "chunk_index" in chunks.columns else chunks
    if "too_small" in ordered.columns:  # a chunk too small to trust decides nothing
        ordered = ordered[~ordered["too_small"].fillna(False).astype(bool)]
    rows = []
    for _, row in ordered.tail(n).iloc[::-1].iterrows():
        realized, estimated = row.get("realized"), row.get("estimated")
        source, value = ("realized", realized) if pd.notna(realized) else ("estimated", estimated)
        known = pd.notna(value)
        rows.append(
            {
                "chunk": row["chunk"],
                "estimated": estimated,
                "realized": realized,
                "judged_on": source if known else None,
                "fails": bool(known and not spec.metric.passes(float(value))),
            }
        )
    return rows


def _failing_streak(recent: list[dict[str, Any]]) -> int:
    streak = 0
    for row in recent:  # newest first
        if not row["fails"]:
            break
        streak += 1
    return streak


def _age_days(created: datetime, now: datetime) -> float:
    return (_utc(now) - _utc(created)).total_seconds() / 86400


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return plain(value)
