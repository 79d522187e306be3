"""A version's vetting before it ships: its own problems (artifacts against their SHA-256, its gates) plus
the latest monitoring evidence about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.cycle.records import MonitoringResults
from loopml.registry.registry import CHAMPION, Registry
from loopml.storage import Store
from loopml.storage.layout import MONITORING_RUNS, results_run_id
from loopml.storage.records import read


# check -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """Whether a version may ship: the reasons it may not (none: it may) and the evidence looked at."""

    version: int
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        """No reason against it."""
        return not self.reasons


def latest_monitoring(store: Store, version: int) -> dict[str, Any] | None:
    """The newest monitoring run that looked at ``version``'s predictions (``results.json`` of each run
    under ``monitoring/runs/``), or None when none has: a candidate that has never served."""
    found: list[tuple[str, MonitoringResults]] = []
    for key in store.list(f"{MONITORING_RUNS}/"):
        run_id = results_run_id(key)
        if run_id is not None and (results := read(store, key, MonitoringResults)).version == version:
            found.append((run_id, results))
    if not found:
        return None
    # run ids are <start>_<end>_v<version>: the latest window sorts last; `at` breaks ties
    run_id, results = max(found, key=lambda f: (str(f[1].window.end), f[1].at, f[0]))
    # open_alerts: what is still open after this run (carried over, not yet resolved)
    return {"run_id": run_id, "at": results.at, "window": results.window.to_plain(),
            "alerts": [a.to_plain() for a in results.open_alerts]}


def check(store: Store, version: int, *, allow_alerts: bool = False) -> Verdict:
    """Why ``version`` must not be released from ``store`` (empty = it may)."""
    registry = Registry(store)
    v = registry.get(version)  # RegistryError names the store when it is not there
    reasons = list(registry.problems(v))
    monitoring = latest_monitoring(store, version)
    if monitoring and monitoring["alerts"] and not allow_alerts:
        kinds = sorted({a["kind"] for a in monitoring["alerts"]})
        reasons.append(f"its latest monitoring run {monitoring['run_id']} has {len(monitoring['alerts'])} open "
                       f"alert(s) ({', '.join(kinds)})")
    gates = v.record.gates.as_written() if v.record.gates else {}
    return Verdict(version, reasons, {"gates": gates, "metrics": v.record.metrics, "monitoring": monitoring,
                                      "champion": registry.alias(CHAMPION)})
