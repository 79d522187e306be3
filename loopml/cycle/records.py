"""The records a monitoring run stores: its results, the pointer to the latest run, each alert, the
"notified" marker of an alert, and the retraining decision.

Each is written by :mod:`loopml.cycle.monitoring_run` and read back through :mod:`loopml.storage.records`
(validated, a mismatch is a ``CorruptObject`` naming the key); the keys come from
:mod:`loopml.storage.layout`. The fields readers use are typed; everything else the writer adds (the
NannyML frames as records, the cost summary...) is kept as written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.storage.records import Record

if TYPE_CHECKING:  # loopml.monitoring imports NannyML: `loopml status` reads these records without it
    from loopml.monitoring.alerts import Alert

__all__ = ["Window", "AlertRecord", "Notified", "DecisionRecord", "ChunkSummary", "CostSummary", "MonitoringResults", "LatestRun"]


class Window(Record):
    """The dates a run monitored, inclusive (None: unbounded)."""

    start: str | None
    end: str | None


class AlertRecord(Record):
    """One alert as stored: what was found (:class:`loopml.monitoring.alerts.Alert`), by which run, on
    which version, when, and the key it is stored under."""

    kind: str
    chunk: str
    value: float | None
    threshold: float | None
    message: str
    run_id: str
    version: int
    at: str
    key: str

    def alert(self) -> Alert:
        """The alert itself, as the monitoring package publishes it."""
        from loopml.monitoring.alerts import Alert

        return Alert(self.kind, self.chunk, self.value, self.threshold, self.message)  # type: ignore[arg-type]


class Notified(Record):
    """The marker that an alert was published: the SNS message and topic."""

    message_id: str | None
    topic: str


class DecisionRecord(Record):
    """A retraining decision with the evidence it was made on (:class:`loopml.monitoring.decision.Decision`),
    the run that made it and the window and rows it judged."""

    retrain: bool
    reasons: list[str]
    evidence: dict[str, Any]
    run_id: str
    version: int
    at: str
    window: Window
    rows: int
    key: str


class ChunkSummary(Record):
    """One analysis chunk of a run's results: the figures a status and the demo show (the other columns are kept)."""

    chunk: str
    n_rows: int = 0
    estimated: float | None = None
    estimated_alert: bool | None = None
    realized: float | None = None
    n_drifting_features: int | float | None = None  # as written: a float when some chunk has none
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


class CostSummary(Record):
    """The run's cost summary (:func:`loopml.monitoring.cost.cost_summary`): the figures a status shows."""

    days: list[dict[str, Any]] | None = None
    usd_per_day: float | None = None
    projected_monthly_usd: float | None = None
    api_usd_per_1000: float | None = None
    over_budget: list[dict[str, Any]] | None = None


class MonitoringResults(Record):
    """A monitoring run's ``results.json``: the run, the window and its coverage, NannyML's results
    (:meth:`loopml.monitoring.result.MonitoringResult.to_dict`), the alerts it raised, those still open
    after it, and the key of its decision."""

    run_id: str
    version: int
    at: str
    window: Window
    rows: int
    coverage: dict[str, Any]
    metric: str
    chunks: list[ChunkSummary]
    drifting_features: list[str]
    messages: list[str]
    cost: CostSummary | None = None
    training: dict[str, Any] | None = None
    alerts: list[AlertRecord]
    open_alerts: list[AlertRecord]  # this run's, plus the previous run's when this one could not see it all
    decision: str


class LatestRun(Record):
    """``monitoring/latest.json``: which run was the last, and when it ran."""

    run_id: str
    at: str
