"""Read-only views for people: status, experiment runs (Metaflow client), version comparison."""

from __future__ import annotations

from typing import Any

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
        meta = registry.get(champ).meta
        out["champion"] = {"version": champ, "family": meta["family"], "metrics": meta["metrics"],
                           "created_at": meta["created_at"], "served_as": meta["latency_ms"]["served_as"]}
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
    va, vb = registry.get(a).meta, registry.get(b).meta

    def flat(meta: dict[str, Any]) -> dict[str, Any]:
        rows = {"family": meta["family"], "params": meta["params"], "created_at": meta["created_at"],
                "data.fingerprint": meta["data"]["fingerprint"][:16], "data.rows": meta["data"]["rows"],
                "data.uri": meta["data"]["uri"], "metaflow_run": meta["lineage"]["metaflow_run"],
                "code_version": meta["lineage"]["code_version"], "spec_sha256": meta["lineage"]["spec_sha256"][:16],
                "served_as": meta["latency_ms"]["served_as"], "latency_p99_ms": meta["latency_ms"]["p99"],
                "gates": "pass" if meta["gates"]["passes"] else "; ".join(meta["gates"]["reasons"])}
        rows.update({f"test.{k}": v for k, v in meta["metrics"].items()})
        if meta.get("fairness"):
            rows["fairness.gap"] = meta["fairness"]["gap"]
        return rows

    fa, fb = flat(va), flat(vb)
    return [(k, fa.get(k), fb.get(k)) for k in dict.fromkeys([*fa, *fb])]
