"""A version's vetting before it ships: its own problems (artifacts against their SHA-256, its gates) plus
the latest monitoring evidence about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.registry.registry import CHAMPION, Registry
from loopml.storage import Store
from loopml.storage.layout import MONITORING


# check -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    version: int
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return not self.reasons


def latest_monitoring(store: Store, version: int) -> dict[str, Any] | None:
    """The newest monitoring run that looked at ``version``'s predictions (``results.json`` of each run
    under ``monitoring/runs/``), or None when none has: a candidate that has never served."""
    found: list[dict[str, Any]] = []
    for key in store.list(f"{MONITORING}/runs/"):
        if not key.endswith("/results.json"):
            continue
        results = store.get_json(key)
        if isinstance(results, dict) and results.get("version") == version:
            # open_alerts: what is still open after this run (carried over, not yet resolved); older
            # results have only this run's alerts
            alerts = results.get("open_alerts", results.get("alerts")) or []
            found.append({"run_id": key.split("/")[2], "at": str(results.get("at") or ""),
                          "window": results.get("window"), "alerts": alerts})
    # run ids are <start>_<end>_v<version>: the latest window sorts last; `at` breaks ties
    return max(found, key=lambda r: (str((r["window"] or {}).get("end", "")), r["at"], r["run_id"]), default=None)


def check(store: Store, version: int, *, allow_alerts: bool = False) -> Verdict:
    """Why ``version`` must not be released from ``store`` (empty = it may)."""
    registry = Registry(store)
    v = registry.get(version)  # RegistryError names the store when it is not there
    reasons = list(registry.problems(v))
    monitoring = latest_monitoring(store, version)
    if monitoring and monitoring["alerts"] and not allow_alerts:
        kinds = sorted({str(a.get("kind", "alert")) for a in monitoring["alerts"]})
        reasons.append(f"its latest monitoring run {monitoring['run_id']} has {len(monitoring['alerts'])} open "
                       f"alert(s) ({', '.join(kinds)})")
    gates = v.record.gates.as_written() if v.record.gates else {}
    return Verdict(version, reasons, {"gates": gates, "metrics": v.record.metrics, "monitoring": monitoring,
                                      "champion": registry.alias(CHAMPION)})
