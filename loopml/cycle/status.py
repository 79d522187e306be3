"""Read-only views for people: status, experiment runs (Metaflow client), version comparison."""

from __future__ import annotations

from typing import Any

from loopml.registry.records import DataRecord, LatencyRecord, LineageRecord, VersionRecord
from loopml.registry.registry import CHALLENGER, CHAMPION, Registry
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import DECISIONS, LATEST_RUN, MONITORING


def status(store: Store) -> dict[str, Any]:
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
        latest = store.get_json(LATEST_RUN)
        results = store.get_json(f"{MONITORING}/runs/{latest['run_id']}/results.json")
        out["last_monitoring"] = {"run_id": latest["run_id"], "at": latest["at"], "version": results["version"],
                                  "window": results["window"], "drifting_features": results["drifting_features"],
                                  "chunks": [{k: c[k] for k in ("chunk", "estimated", "realized")} for c in results["chunks"]],
                                  "report": store.url(f"{MONITORING}/runs/{latest['run_id']}/report.html")}
        # the last run's open alerts: its own, plus the previous run's when it could not see the whole window
        out["open_alerts"] = results.get("open_alerts", results["alerts"])
        out["last_monitoring"]["rows"] = results["rows"]
        out["last_monitoring"]["latency"] = [{k: c.get(k) for k in ("chunk", "latency_p50_ms", "latency_p99_ms")}
                                             for c in results["chunks"] if c.get("latency_p99_ms") is not None]
        cost = results.get("cost") or {}
        out["last_monitoring"]["cost"] = {k: cost.get(k) for k in ("days", "usd_per_day", "projected_monthly_usd",
                                                                  "api_usd_per_1000", "over_budget")}
        if results.get("decision"):
            out["last_decision"] = store.get_json(results["decision"])
    except KeyNotFound:
        pass
    decisions = store.list(DECISIONS + "/")
    if decisions and out["last_decision"] is None:
        out["last_decision"] = store.get_json(decisions[-1])
    return out


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
