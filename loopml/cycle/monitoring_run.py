"""A monitoring run recorded in the store: results, report, alerts and a decision, each written once.

``loopml.monitoring`` computes; this module reads its inputs from the store and records what it
found. Everything a run writes is keyed by what it judged (the window and the champion's version,
``<start>_<end>_v<N>``), not by when it ran, so a retried or re-run monitoring run changes nothing
the second time: alerts and decisions are created only if absent, an alert goes to SNS once, and a
retraining starts only for the run holding the window's claim (keys: :mod:`loopml.storage`).

A window with no predictions, one only partly scored, or one scored by several model versions is
not an all-clear: it raises an alert (``no_data``, ``partly_scored``, ``mixed_versions``) and keeps
the previous run's alerts open.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from loopml.cycle.records import AlertRecord, DecisionRecord, LatestRun, MonitoringResults, Notified, Window
from loopml.modeling.calibration import REFERENCE_WARNINGS
from loopml.monitoring import Alert, decide_retraining, evaluate_alerts, monitor, publish_alerts, render_report
from loopml.monitoring.alerts import DATA_KINDS
from loopml.monitoring.decision import Decision
from loopml.monitoring.result import MonitoringResult
from loopml.registry.records import VersionRecord
from loopml.registry.registry import ModelVersion, Registry
from loopml.retraining.claims import Retrainer, start_once
from loopml.scoring.labels import attach_labels, load_labels, scored_window
from loopml.scoring.manifest import committed
from loopml.spec import ProblemSpec
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import (
    LATEST_RUN,
    NOTIFIED,
    alert_key,
    decision_key,
    monitoring_report_key,
    monitoring_results_key,
    notified_key,
)
from loopml.storage.records import read, write, write_new

__all__ = ["LATEST", "NOTIFIED", "MonitoringRun", "RunContext", "Notifier", "Evidence", "Coverage", "run_monitoring",
           "record_alerts", "notify_alerts", "record_decision", "write_run", "window_coverage", "data_alerts",
           "model_age_from", "run_name"]

LATEST = LATEST_RUN


def model_age_from(record: VersionRecord) -> datetime:
    """When the model's age starts: its registration (``registered_at``, the replayed "now" when
    history is replayed; else the registry's ``created_at``). Not its newest training row: with
    labels that lag, every new model would be "too old" at birth."""
    moment = record.registered
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stored_diagnostics(version: ModelVersion) -> dict[str, Any]:
    """What training stored with the version about its reference: the calibration diagnostics and the
    warnings that say the estimates may not be reliable (shown in the report beside this run's figures)."""
    record = version.record
    warnings = [w.as_written() for w in record.warnings if w.kind in REFERENCE_WARNINGS]
    return {"version": version.number, "calibration": record.calibration, "warnings": warnings,
            "stored": "calibration" in record.model_fields_set}


def run_name(start: date | None, end: date | None, version: int) -> str:
    """A run's id: what it judged (the window and the champion's version), so a re-run is the same run."""
    return f"{start or 'begin'}_{end or 'end'}_v{version}"


# ------------------------------------------------------------------------------------- coverage
@dataclass(frozen=True)
class Coverage:
    """Which dates of the window hold predictions, and by which model versions."""

    expected: list[str]  # every date the window should hold
    by_date: dict[str, dict[int, int]]  # date -> {version: rows}
    rows_by_version: dict[int, int] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        """Expected dates without predictions."""
        return [d for d in self.expected if d not in self.by_date]

    @property
    def rows(self) -> int:
        """Predictions in the window, of every version."""
        return sum(self.rows_by_version.values())

    def to_dict(self) -> dict[str, Any]:
        """As stored in the run's results (``coverage``)."""
        return {"expected_dates": len(self.expected), "scored_dates": len(self.by_date), "missing": self.missing,
                "rows_by_version": {str(k): v for k, v in sorted(self.rows_by_version.items())}}


def _dates(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def window_coverage(store: Store, spec: ProblemSpec, scored: pd.DataFrame, start: date | None,
                    end: date | None) -> Coverage:
    """Dates in [start, end] and the versions that scored them (the predictions' ``model_version``).

    Dates before the store's first scored date are not expected: a window that reaches back before
    scoring began is not "partly scored"."""
    by_date: dict[str, dict[int, int]] = {}
    if not scored.empty and spec.timestamp and "model_version" in scored.columns:
        days = pd.to_datetime(scored[spec.timestamp]).dt.date.astype(str)
        for (day, version), n in scored.groupby([days, scored["model_version"]]).size().items():
            by_date.setdefault(str(day), {})[int(version)] = int(n)
    versions = scored["model_version"].value_counts() if "model_version" in scored.columns else pd.Series(dtype=int)
    first_ever = list(committed(store))[:1]  # committed dates only: a killed run's objects are not scores
    lo = max(filter(None, [start, date.fromisoformat(first_ever[0]) if first_ever else None]), default=None)
    hi = end or (max(date.fromisoformat(d) for d in by_date) if by_date else None)
    expected = _dates(lo, hi) if lo and hi and lo <= hi else sorted(by_date)
    return Coverage(expected, by_date, {int(k): int(v) for k, v in versions.items()})


def data_alerts(coverage: Coverage, champion: int, window: str) -> list[Alert]:
    """What is wrong with the window's data itself: nothing scored, dates missing, several versions."""
    if coverage.rows == 0:
        return [Alert("no_data", "window", 0.0, None, f"window {window}: no predictions at all; nothing was monitored")]
    alerts = []
    missing = coverage.missing
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        alerts.append(Alert("partly_scored", "window", float(len(missing)), 0.0,
                            f"window {window}: {len(missing)} of {len(coverage.expected)} dates hold no predictions ({listed})"))
    others = {v: n for v, n in coverage.rows_by_version.items() if v != champion}
    if others:
        mine = coverage.rows_by_version.get(champion, 0)
        desc = ", ".join(f"v{v}: {n} rows" for v, n in sorted(others.items()))
        alerts.append(Alert("mixed_versions", "window", float(coverage.rows - mine), 0.0,
                            f"window {window}: scored by several versions ({desc}); monitored only the champion "
                            f"v{champion}'s {mine} of {coverage.rows} rows"))
    return alerts


# ------------------------------------------------------------------------------------ the run
@dataclass
class MonitoringRun:
    """What one monitoring run recorded, as plain data (flow artifacts, the API's and CLI's answers): its
    results, the alerts and the decision as stored (the decision with ``retraining`` added when this run
    tried to start one), and where the report is."""

    run_id: str
    version: int
    results: dict[str, Any]
    alerts: list[dict[str, Any]]
    decision: dict[str, Any]
    report_key: str
    report_url: str
    new_alerts: int = 0  # alerts this run created (the others were there already: a re-run)
    notified: int = 0  # alerts this run published to SNS
    decision_key: str = ""

    @property
    def empty(self) -> bool:
        """Nothing was monitored: the window held no predictions of the champion."""
        return self.results["rows"] == 0


@dataclass(frozen=True)
class RunContext:
    """What every record of one run carries: the store it goes to, the spec, the run (its window and the
    champion's version) and the run's clock."""

    store: Store
    spec: ProblemSpec
    run_id: str
    version: int
    window: Window
    now: datetime

    def stamp(self) -> dict[str, Any]:
        """The fields that say which run wrote a record, and when."""
        return {"run_id": self.run_id, "version": self.version, "at": self.now.isoformat()}


@dataclass(frozen=True)
class Notifier:
    """Where alerts are published: an SNS topic (None: nowhere) and the client to publish with (None:
    a boto3 client made when there is something to publish)."""

    topic_arn: str | None = None
    sns_client: Any = None


@dataclass(frozen=True)
class Evidence:
    """What a run judged: the rows analysed (the champion's, labels joined) and the window's coverage."""

    analysis: pd.DataFrame
    coverage: Coverage

    def digest(self, spec: ProblemSpec) -> str:
        """What the decision was made on: the same inputs give the same key, so a re-run writes nothing new,
        while newer labels or partitions make a new, separately recorded decision."""
        labelled = int(self.analysis[spec.target].notna().sum()) if spec.target in self.analysis.columns else 0
        body = json.dumps({"by_date": self.coverage.by_date, "labelled": labelled}, sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def _evidence(store: Store, spec: ProblemSpec, champion: ModelVersion, start: date | None, end: date | None,
              labels_uri: str | None) -> Evidence:
    scored = scored_window(store, spec, start, end)
    coverage = window_coverage(store, spec, scored, start, end)
    if not scored.empty and "model_version" in scored.columns:
        # one model's reference judges only that model's rows; the others are reported (mixed_versions)
        scored = scored[scored["model_version"] == champion.number].reset_index(drop=True)
    return Evidence(attach_labels(scored, load_labels(store, spec, labels_uri), spec), coverage)


def record_alerts(ctx: RunContext, alerts: list[Alert]) -> tuple[list[AlertRecord], int]:
    """Each alert created only if absent: the stored records (the first writer's, on a re-run) and how
    many this call created."""
    stored, created = [], 0
    for a in alerts:
        key = alert_key(ctx.run_id, a.chunk, a.kind)
        created += write_new(ctx.store, key, AlertRecord(**a.to_dict(), **ctx.stamp(), key=key))
        stored.append(read(ctx.store, key, AlertRecord))
    return stored, created


def notify_alerts(ctx: RunContext, alerts: list[AlertRecord], notifier: Notifier) -> int:
    """Publish the alerts not yet published, then mark them. A crash between the two re-sends once
    on the retry (at least once): an alert is never silently lost."""
    if not notifier.topic_arn:
        return 0
    pending = [a for a in alerts if not ctx.store.exists(notified_key(a.key))]
    if not pending:
        return 0
    client = notifier.sns_client
    if client is None:
        import boto3

        client = boto3.client("sns")
    message_id = publish_alerts([a.alert() for a in pending], notifier.topic_arn, client,
                                model=f"{ctx.spec.name} v{ctx.version}")
    for a in pending:
        write_new(ctx.store, notified_key(a.key), Notified(message_id=message_id, topic=notifier.topic_arn))
    return len(pending)


def record_decision(ctx: RunContext, decision: Decision, evidence: Evidence) -> DecisionRecord:
    """The run's retraining decision, written once per evidence: a re-run on the same evidence gets the
    first decision back."""
    key = decision_key(ctx.run_id, evidence.digest(ctx.spec))
    record = DecisionRecord(**decision.to_dict(), **ctx.stamp(), window=ctx.window, rows=len(evidence.analysis),
                            key=key)
    return record if write_new(ctx.store, key, record) else read(ctx.store, key, DecisionRecord)


def _open_alerts(store: Store, own: list[AlertRecord], kinds: set[str]) -> list[AlertRecord]:
    """A run that could not see the whole window cannot close what the last run found: its problems
    stay open beside this run's data alerts."""
    if not kinds & set(DATA_KINDS):
        return own
    try:
        previous = read(store, monitoring_results_key(read(store, LATEST, LatestRun).run_id), MonitoringResults)
    except KeyNotFound:
        return own
    seen = {(a.chunk, a.kind) for a in own}
    return own + [a for a in previous.open_alerts if a.kind not in DATA_KINDS and (a.chunk, a.kind) not in seen]


def write_run(ctx: RunContext, result: MonitoringResult, evidence: Evidence, alerts: list[AlertRecord],
              raised: list[Alert], decision: DecisionRecord) -> MonitoringResults:
    """The run's report and results, then ``latest.json`` pointing at them (the run is complete only then)."""
    spec, window = ctx.spec, ctx.window
    results = MonitoringResults(**ctx.stamp(), window=window, rows=len(evidence.analysis),
                                coverage=evidence.coverage.to_dict(), **result.to_dict(), alerts=alerts,
                                open_alerts=_open_alerts(ctx.store, alerts, {a.kind for a in raised}),
                                decision=decision.key)
    html = render_report(result, spec, f"{spec.name}: monitoring {window.start} to {window.end}", str(ctx.version),
                         raised)
    ctx.store.put(monitoring_report_key(ctx.run_id), html.encode())
    write(ctx.store, monitoring_results_key(ctx.run_id), results)
    write(ctx.store, LATEST, LatestRun(run_id=ctx.run_id, at=ctx.now.isoformat()))
    return results


def run_monitoring(store: Store, spec: ProblemSpec, start: date | None, end: date | None, *,
                   now: datetime | None = None, topic_arn: str | None = None, sns_client: Any = None,
                   labels_uri: str | None = None, on_retrain: Retrainer | None = None,
                   run_key: str | None = None) -> MonitoringRun:
    """One monitoring run over [start, end] (dates, inclusive), recorded in the store: record alerts ▶
    notify ▶ record decision ▶ (start a retraining) ▶ write the run.

    ``on_retrain(end)`` starts a retraining elsewhere (e.g. :func:`loopml.retraining.triggers.start_retraining`)
    when the decision says so; it is called only when this run wins the window's retraining claim
    (see :mod:`loopml.retraining.claims`), keyed by ``run_key`` (default: the run's window and version).
    """
    now = now or datetime.now(UTC)
    registry = Registry(store)
    champion = registry.resolve()
    window = Window(start=str(start) if start else None, end=str(end) if end else None)
    ctx = RunContext(store, spec, run_name(start, end, champion.number), champion.number, window, now)
    evidence = _evidence(store, spec, champion, start, end, labels_uri)
    result = monitor(registry.reference(champion), evidence.analysis, spec, (champion.record.model_schema or {}).get("classes"))
    result.training = stored_diagnostics(champion)
    flagged = data_alerts(evidence.coverage, champion.number, f"{window.start}..{window.end}")
    raised = flagged + evaluate_alerts(result, spec)
    result.messages[:0] = [a.message for a in flagged]

    alerts, new = record_alerts(ctx, raised)
    notified = notify_alerts(ctx, alerts, Notifier(topic_arn, sns_client))
    decision = record_decision(ctx, decide_retraining(result.chunks, spec, model_age_from(champion.record), now),
                               evidence)
    plain_decision = decision.to_plain()
    if decision.retrain and on_retrain is not None:
        plain_decision["retraining"] = start_once(store, spec, end or now.date(), run_key or ctx.run_id, now,
                                                  on_retrain)
    results = write_run(ctx, result, evidence, alerts, raised, decision)
    report = monitoring_report_key(ctx.run_id)
    return MonitoringRun(ctx.run_id, ctx.version, results.to_plain(),
                         [a.to_plain() for a in alerts], plain_decision, report, store.url(report), new,
                         notified, decision.key)
