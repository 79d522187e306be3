"""MonitoringResult: what one monitoring run found, as frames for code and a dict for JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

# One row per analysis chunk; the order is the contract other modules (alerts, decision, report) read.
CHUNK_COLUMNS = [
    "chunk", "chunk_index", "start", "end", "n_rows", "n_labelled", "too_small", "failed_steps",
    "metric", "threshold", "estimated", "estimated_lower", "estimated_upper", "estimated_alert",
    "realized", "realized_alert", "estimation_error",
    "reconstruction_error", "reconstruction_upper_threshold", "reconstruction_lower_threshold", "multivariate_alert",
    "n_drifting_features", "drifting_features", "api_rows", "latency_p50_ms", "latency_p99_ms",
]  # fmt: skip
DRIFT_COLUMNS = ["chunk", "chunk_index", "feature", "method", "value", "p_value", "threshold", "alert"]
QUALITY_COLUMNS = [
    "chunk", "chunk_index", "feature", "n_rows", "missing", "missing_rate", "reference_missing_rate",
    "unseen", "unseen_rate", "out_of_range", "out_of_range_rate", "problems", "alert",
]  # fmt: skip
USAGE_COLUMNS = ["day", "rows", "requests", "billed_ms"]


@dataclass
class MonitoringResult:
    """One monitoring run's findings: per-chunk performance, drift and quality frames (columns in
    ``CHUNK_COLUMNS``, ``DRIFT_COLUMNS``, ``QUALITY_COLUMNS``), messages, failures, usage and cost."""

    task: str
    metric: str
    threshold: float
    higher_is_better: bool
    chunks: pd.DataFrame
    drift: pd.DataFrame
    quality: pd.DataFrame
    messages: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # calculator failures: {step, chunk, error}
    usage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=USAGE_COLUMNS))  # API traffic per day
    seconds: float = 0.0  # how long the computation took (the monitoring run's own cost)
    reference_rows: int = 0
    calibration: dict[str, Any] | None = None  # recomputed from the reference this run read
    # what training stored with the served version: {version, calibration, warnings} (a monitoring run sets it)
    training: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None  # loopml.monitoring.cost.cost_summary
    latency_limit_ms: float | None = None  # constraints.p99_latency_ms

    @property
    def drifting_features(self) -> list[str]:
        """Features that drifted in at least one chunk, most often first."""
        if self.drift.empty:
            return []
        counts = self.drift[self.drift["alert"].astype(bool)].groupby("feature").size().sort_values(ascending=False)
        return [str(f) for f in counts.index]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: NaN becomes None, timestamps ISO strings, numpy scalars Python ones."""
        return {
            "task": self.task,
            "metric": self.metric,
            "threshold": self.threshold,
            "higher_is_better": self.higher_is_better,
            "chunks": records(self.chunks),
            "drift": records(self.drift),
            "quality": records(self.quality),
            "drifting_features": self.drifting_features,
            "messages": list(self.messages),
            "failures": [{k: plain(v) for k, v in f.items()} for f in self.failures],
            "usage": records(self.usage),
            "seconds": self.seconds,
            "reference_rows": self.reference_rows,
            "calibration": self.calibration,
            "training": self.training,
            "cost": self.cost,
            "latency_limit_ms": self.latency_limit_ms,
        }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON-safe dicts (see :func:`plain`)."""
    return [{str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def plain(value: Any) -> Any:
    """One value as a JSON-safe Python object."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
