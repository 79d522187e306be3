"""Read-only views for people: status, experiment runs (Metaflow client), version comparison."""

from __future__ import annotations

from typing import Any

from loopml.cycle.records import CostSummary, DecisionRecord, LatestRun, MonitoringResults
from loopml.registry.records import DataRecord, LatencyRecord, LineageRecord, VersionRecord
from loopml.registry.registry import CHALLENGER, CHAMPION, Registry
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import DECISIONS, LATEST_RUN, monitoring_report_key, monitoring_results_key
from loopml.storage.records import read


def status(store: Store) -> dict[str, Any]:
    """What the store holds now, for people: versions, aliases and their last change, the last monitoring
    run with its open alerts, and the last retraining decision."""
    registry = Registry(store)
    champ = registry.alias(CHAMPION)
    out: dict[str, Any] = {"store": store.uri, "versions": registry.versions(), "champion": None,
                           "challenger": registry.alias(CHALLENGER), "last_monitoring": None, "open_alerts": [],
                           "last_decision": None, "last_alias_change": (registry.ledger() or [None])[-1]}
    if champ is not None:
        record = registry.get(champ).record
        out["champion"] = {"version": champ, "family": record.family, "metrics": record.metrics,
                           "created_at": record.created_at.isoformat(), "served_as": _served_as(record)}
    try:
        latest = read(store, LATEST_RUN, LatestRun)
        results = read(store, monitoring_results_key(latest.run_id), MonitoringResults)
    except KeyNotFound:
        results = None
    if results is not None:
        out["last_monitoring"] = last_monitoring(store, latest, results)
        # the last run's open alerts: its own, plus the previous run's when it could not see the whole window
        out["open_alerts"] = [a.to_plain() for a in results.open_alerts]
        out["last_decision"] = _decision(store, results.decision)
    decisions = store.list(DECISIONS + "/")
    if decisions and out["last_decision"] is None:
        out["last_decision"] = _decision(store, decisions[-1])
    return out


def last_monitoring(store: Store, latest: LatestRun, results: MonitoringResults) -> dict[str, Any]:
    """The last monitoring run in a few figures: its window, drift, each chunk's performance and latency,
    and the cost."""
    cost = results.cost or CostSummary()
    return {"run_id": latest.run_id, "at": latest.at, "version": results.version,
            "window": results.window.to_plain(), "drifting_features": results.drifting_features,
            "chunks": [{"chunk": c.chunk, "estimated": c.estimated, "realized": c.realized} for c in results.chunks],
            "report": store.url(monitoring_report_key(latest.run_id)), "rows": results.rows,
            "latency": [{"chunk": c.chunk, "latency_p50_ms": c.latency_p50_ms, "latency_p99_ms": c.latency_p99_ms}
                        for c in results.chunks if c.latency_p99_ms is not None],
            "cost": {k: getattr(cost, k) for k in ("days", "usd_per_day", "projected_monthly_usd", "api_usd_per_1000",
                                              "over_budget")}}


def _decision(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return read(store, key, DecisionRecord).to_plain()
    except KeyNotFound:
        return None


def training_runs(limit: int = 20) -> list[dict[str, Any]]:
    """TrainFlow runs from Metaflow's own metadata: the experiment log is Metaflow, not a second store."""
    from loopml.runtime.flowrun import ensure_user

    ensure_user()
    from metaflow import Flow, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    try:
        flow = Flow("TrainFlow")
        runs = iter(flow.runs())
    except MetaflowNotFound:
        return []
    rows = []
    while len(rows) < limit:
        try:
            run = next(runs)
        except StopIteration:
            break
        except Exception as err:  # the metadata itself cannot be read: say where, in one line
            raise ValueError(f"cannot list Metaflow's TrainFlow runs: {type(err).__name__}: {err}") from None
        rows.append(run_row(run))
    return rows


def run_row(run: Any) -> dict[str, Any]:
    """One run's line. A run whose artifacts cannot be read (failed, still running, or a datastore that
    moved with the project folder) is still listed, with what could not be read."""
    row: dict[str, Any] = {"run": getattr(run, "pathspec", str(run)), "successful": None}
    try:
        row["created"] = str(run.created_at)
        row["successful"] = run.successful
        data = run.data
        row.update(fingerprint=getattr(data, "data_fingerprint", None), family=data.winner.family,
                   params=data.params, metrics=data.metrics, version=getattr(data, "version", None))
    except Exception as err:
        row["problem"] = f"{type(err).__name__}: {' '.join(str(err).split())}"[:200]
    return row


def compare(store: Store, a: int, b: int) -> list[tuple[str, Any, Any]]:
    """Two versions side by side: (field, value in ``a``, value in ``b``) for lineage, metrics and gates."""
    registry = Registry(store)
    fa, fb = _flat(registry.get(a).record), _flat(registry.get(b).record)
    return [(k, fa.get(k), fb.get(k)) for k in dict.fromkeys([*fa, *fb])]


def _served_as(record: VersionRecord) -> str | None:
    return record.latency_ms.served_as if record.latency_ms else None


def _flat(r: VersionRecord) -> dict[str, Any]:
    """One version's record as the rows `loopml compare` shows."""
    data, lineage, latency = r.data or DataRecord(), r.lineage or LineageRecord(), r.latency_ms or LatencyRecord()
    rows = {"family": r.family, "params": r.params, "created_at": r.created_at.isoformat(),
            "data.fingerprint": (data.fingerprint or "")[:16], "data.rows": data.rows, "data.uri": data.uri,
            "metaflow_run": lineage.metaflow_run, "code_version": lineage.code_version,
            "spec_sha256": (lineage.spec_sha256 or "")[:16], "served_as": latency.served_as,
            "latency_p99_ms": latency.p99,
            "gates": "pass" if r.gates and r.gates.passes else "; ".join(r.gates.reasons if r.gates else [])}
    rows.update({f"test.{k}": v for k, v in r.metrics.items()})
    if r.fairness:
        rows["fairness.gap"] = r.fairness.gap
    return rows
