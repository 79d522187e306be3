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
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from loopml.modeling.calibration import REFERENCE_WARNINGS
from loopml.monitoring import Alert, decide_retraining, evaluate_alerts, monitor, publish_alerts, render_report
from loopml.monitoring.alerts import DATA_KINDS
from loopml.registry.records import VersionRecord
from loopml.registry.registry import ModelVersion, Registry
from loopml.retraining.claims import Retrainer, start_once
from loopml.scoring.labels import attach_labels, load_labels, scored_window
from loopml.scoring.manifest import committed
from loopml.spec import ProblemSpec
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import ALERTS, DECISIONS, LATEST_RUN, MONITORING, NOTIFIED

__all__ = ["LATEST", "NOTIFIED", "MonitoringRun", "Coverage", "run_monitoring", "window_coverage", "data_alerts",
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
        return [d for d in self.expected if d not in self.by_date]

    @property
    def rows(self) -> int:
        return sum(self.rows_by_version.values())

    def to_dict(self) -> dict[str, Any]:
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
        return self.results["rows"] == 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "chunk"


def _analysis(store: Store, spec: ProblemSpec, champion: ModelVersion, start: date | None, end: date | None,
              labels_uri: str | None) -> tuple[pd.DataFrame, Coverage]:
    scored = scored_window(store, spec, start, end)
    coverage = window_coverage(store, spec, scored, start, end)
    if not scored.empty and "model_version" in scored.columns:
        # one model's reference judges only that model's rows; the others are reported (mixed_versions)
        scored = scored[scored["model_version"] == champion.number].reset_index(drop=True)
    return attach_labels(scored, load_labels(store, spec, labels_uri), spec), coverage


def _write_alerts(store: Store, run_id: str, alerts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Each alert created only if absent: the stored records (the first writer's, on a re-run) and how
    many this call created."""
    stored, created = [], 0
    for a in alerts:
        key = f"{ALERTS}/{run_id}/{_slug(a['chunk'])}-{a['kind']}.json"
        if store.put_new_json(key, {**a, "key": key}):
            created += 1
        stored.append(store.get_json(key))
    return stored, created


def _notify(store: Store, spec: ProblemSpec, run_id: str, version: int, alerts: list[dict[str, Any]],
            topic_arn: str | None, sns_client: Any) -> int:
    """Publish the alerts not yet published, then mark them. A crash between the two re-sends once
    on the retry (at least once): an alert is never silently lost."""
    if not topic_arn:
        return 0
    pending = [a for a in alerts if not store.exists(a["key"].replace(ALERTS, NOTIFIED, 1))]
    if not pending:
        return 0
    if sns_client is None:
        import boto3

        sns_client = boto3.client("sns")
    objs = [Alert(a["kind"], a["chunk"], a["value"], a["threshold"], a["message"]) for a in pending]
    message_id = publish_alerts(objs, topic_arn, sns_client, model=f"{spec.name} v{version}")
    for a in pending:
        store.put_new_json(a["key"].replace(ALERTS, NOTIFIED, 1), {"message_id": message_id, "topic": topic_arn})
    return len(pending)


def _open_alerts(store: Store, own: list[dict[str, Any]], kinds: set[str]) -> list[dict[str, Any]]:
    """A run that could not see the whole window cannot close what the last run found: its problems
    stay open beside this run's data alerts."""
    if not kinds & set(DATA_KINDS):
        return own
    try:
        previous = store.get_json(f"{MONITORING}/runs/{store.get_json(LATEST)['run_id']}/results.json")
    except KeyNotFound:
        return own
    seen = {(a["chunk"], a["kind"]) for a in own}
    carried = [a for a in previous.get("open_alerts", previous.get("alerts", []))
               if a["kind"] not in DATA_KINDS and (a["chunk"], a["kind"]) not in seen]
    return own + carried


def _evidence_digest(coverage: Coverage, analysis: pd.DataFrame, spec: ProblemSpec) -> str:
    """What the decision was made on: the same inputs give the same key, so a re-run writes nothing new,
    while newer labels or partitions make a new, separately recorded decision."""
    labelled = int(analysis[spec.target].notna().sum()) if spec.target in analysis.columns else 0
    body = json.dumps({"by_date": coverage.by_date, "labelled": labelled}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def run_monitoring(store: Store, spec: ProblemSpec, start: date | None, end: date | None, *,
                   now: datetime | None = None, topic_arn: str | None = None, sns_client: Any = None,
                   labels_uri: str | None = None, on_retrain: Retrainer | None = None,
                   run_key: str | None = None) -> MonitoringRun:
    """One monitoring run over [start, end] (dates, inclusive), recorded in the store.

    ``on_retrain(end)`` starts a retraining elsewhere (e.g. :func:`loopml.retraining.triggers.start_retraining`)
    when the decision says so; it is called only when this run wins the window's retraining claim
    (see :mod:`loopml.retraining.claims`), keyed by ``run_key`` (default: the run's window and version).
    """
    now = now or datetime.now(UTC)
    registry = Registry(store)
    champion = registry.resolve()
    run_id = run_name(start, end, champion.number)
    window = {"start": str(start) if start else None, "end": str(end) if end else None}
    analysis, coverage = _analysis(store, spec, champion, start, end, labels_uri)
    result = monitor(registry.reference(champion), analysis, spec, (champion.record.model_schema or {}).get("classes"))
    result.training = stored_diagnostics(champion)
    flagged = data_alerts(coverage, champion.number, f"{window['start']}..{window['end']}")
    alerts = flagged + evaluate_alerts(result, spec)
    result.messages[:0] = [a.message for a in flagged]
    at = {"run_id": run_id, "version": champion.number, "at": now.isoformat()}
    stored, new = _write_alerts(store, run_id, [{**a.to_dict(), **at} for a in alerts])
    notified = _notify(store, spec, run_id, champion.number, stored, topic_arn, sns_client)

    decision_key = f"{DECISIONS}/{run_id}-{_evidence_digest(coverage, analysis, spec)}.json"
    record = {**decide_retraining(result.chunks, spec, model_age_from(champion.record), now).to_dict(), **at,
              "window": window, "rows": len(analysis), "key": decision_key}
    if not store.put_new_json(decision_key, record):  # a re-run on the same evidence: the first decision stands
        record = store.get_json(decision_key)
    if record["retrain"] and on_retrain is not None:
        record = {**record, "retraining": start_once(store, spec, end or now.date(), run_key or run_id, now, on_retrain)}

    base = f"{MONITORING}/runs/{run_id}"
    results = {**at, "window": window, "rows": len(analysis), "coverage": coverage.to_dict(), **result.to_dict(),
               "alerts": stored, "open_alerts": _open_alerts(store, stored, {a.kind for a in alerts}),
               "decision": decision_key}
    html = render_report(result, spec, f"{spec.name}: monitoring {window['start']} to {window['end']}",
                         str(champion.number), alerts)
    store.put(f"{base}/report.html", html.encode())
    store.put_json(f"{base}/results.json", results)
    store.put_json(LATEST, {"run_id": run_id, "at": now.isoformat()})
    return MonitoringRun(run_id, champion.number, results, stored, record, f"{base}/report.html",
                         store.url(f"{base}/report.html"), new, notified, decision_key)
