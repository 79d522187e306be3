"""The scheduled cycle, in order: score the day(s) ▶ monitor the window ▶ decide ▶ retrain a challenger ▶ gate.

One schedule runs this: CycleFlow (``flows/cycle_flow.py``) on Step Functions or Argo, the
scheduled Lambda (``handlers/scheduled.py``) for data that fits one machine, and ``loopml
run-schedule`` replaying history. Each step is one function below, so the flow's steps and
:func:`run_cycle` run the same code. Every side effect is keyed by what it is about (the dates, the
window, the model version, the cycle's ``run_key``), so a retried or re-run cycle changes nothing
the second time: see :mod:`loopml.cycle.monitoring_run` and :mod:`loopml.retraining.claims`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from loopml.cycle.monitoring_run import MonitoringRun, run_monitoring
from loopml.monitoring.chunks import cycle_window
from loopml.registry.registry import Registry
from loopml.retraining.challenge import retrain_challenger
from loopml.retraining.claims import Retrainer, claim_retraining, record_outcome, recorded_outcome, start_once
from loopml.scoring.batch import NothingToScore, ScoreResult, score_range
from loopml.spec import ProblemSpec
from loopml.storage import Store

__all__ = ["CycleResult", "run_cycle", "score_days", "monitor_window", "retrain_if_decided", "cycle_run_key",
           "replay_as_of", "describe", "day_count", "DEFAULT_WINDOW_DAYS"]

DEFAULT_WINDOW_DAYS = 28


def day_count(value: str | int, field: str) -> int:
    """A number of days given on a command line: a whole number, at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{field}: expected a whole number of days, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{field}: must be at least 1 day, got {n}")
    return n


def cycle_run_key(spec: ProblemSpec, day: date) -> str:
    """The cycle for ``day``: a retry or a re-run of it is the same cycle, and resumes its own claims."""
    return f"cycle/{spec.name}/{day.isoformat()}"


def replay_as_of(day: date) -> datetime:
    """The "now" of the cycle for ``day`` when history is replayed: just after the day ends."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def score_days(store: Store, spec: ProblemSpec, first: date, last: date, uri: str | None = None) -> ScoreResult:
    """Step 1: score the new data of [first, last] with the champion. Days without new data commit
    nothing; the cycle goes on, and monitoring reports the gap (no_data, partly_scored)."""
    try:
        return score_range(store, spec, first, last, uri=uri)
    except NothingToScore:
        return ScoreResult(Registry(store).resolve().number, {})


def monitor_window(store: Store, spec: ProblemSpec, first: date, last: date, now: datetime, *,
                   topic_arn: str | None = None, sns_client: Any = None, labels_uri: str | None = None) -> MonitoringRun:
    """Step 2: monitor [first, last] moved to whole chunk periods (:func:`cycle_window`): a window cut
    mid-week made small edge chunks that alerted and decided. A period still running is monitored by a
    later cycle once it is over; cycles asking for the same whole periods are the same run (same key),
    so a daily cycle records its alerts and decision once per week. Alerts and the decision are
    recorded once per window and evidence."""
    start, end = cycle_window(spec, first, last)
    return run_monitoring(store, spec, start, end, now=now, topic_arn=topic_arn, sns_client=sns_client,
                          labels_uri=labels_uri)


def retrain_if_decided(store: Store, spec: ProblemSpec, decision: dict[str, Any], until: date, *, run_key: str,
                       now: datetime, lineage: str | None = None, start: Retrainer | None = None) -> dict[str, Any] | None:
    """Step 3: when the decision says so, claim the window, train a challenger on it, gate it and
    record the outcome; with ``start``, start a deployed TrainFlow instead (once), which records the
    outcome itself. None when the decision was not to retrain; a record saying why when the claim
    was refused (in flight, already done, cooling down)."""
    if not decision.get("retrain"):
        return None
    if start is not None:
        return start_once(store, spec, until, run_key, now, start)
    claim = claim_retraining(store, spec, until, run_key, now)
    if not claim.granted:
        return {"started": False, "why": claim.why, "claim": claim.to_dict()}
    done = recorded_outcome(store, until)
    if done is None:  # else a retry after the outcome was written: nothing left to do
        outcome = retrain_challenger(store, spec, until, run_key=run_key, as_of=now, lineage=lineage)
        done = record_outcome(store, until, outcome, now)
    return {"started": True, "claim": claim.to_dict(), **done.to_plain()}


@dataclass
class CycleResult:
    """What one cycle did: the scoring, the monitoring run, and the retraining (None when none was decided)."""

    day: date
    scored: ScoreResult
    monitoring: MonitoringRun
    retraining: dict[str, Any] | None

    def summary(self) -> dict[str, Any]:
        """What the cycle did, as plain data (a flow artifact, the Lambda's response)."""
        m = self.monitoring
        return {"day": self.day.isoformat(), "scored": {"version": self.scored.version, "rows": self.scored.rows,
                                                        "partitions": dict(self.scored.partitions)},
                "monitoring": {"run_id": m.run_id, "rows": m.results["rows"], "window": m.results["window"],
                               "alerts": len(m.alerts), "new_alerts": m.new_alerts, "notified": m.notified,
                               "kinds": sorted({a["kind"] for a in m.alerts}), "report": m.report_url},
                "decision": {k: m.decision[k] for k in ("retrain", "reasons", "key")},
                "retraining": self.retraining}


def run_cycle(store: Store, spec: ProblemSpec, day: date, *, days: int = 1, window_days: int = DEFAULT_WINDOW_DAYS,
              as_of: datetime | None = None, run_key: str | None = None, retrain: bool = True,
              topic_arn: str | None = None, sns_client: Any = None, labels_uri: str | None = None,
              data_uri: str | None = None, on_retrain: Retrainer | None = None) -> CycleResult:
    """One scheduled cycle for ``day``: score the ``days`` ending on it, monitor the ``window_days``
    ending on it, and retrain a challenger when the decision says so (unless ``retrain`` is False).

    ``as_of`` is the cycle's clock (default: now): the decision's "now", the registration time of a
    challenger, and the cooldown's clock. A replay of history passes :func:`replay_as_of`.
    ``on_retrain`` (:func:`loopml.retraining.triggers.retrainer`) starts a deployed TrainFlow instead of
    training in this process.
    """
    days, window_days = day_count(days, "days"), day_count(window_days, "window_days")
    now = as_of or datetime.now(UTC)
    key = run_key or cycle_run_key(spec, day)
    scored = score_days(store, spec, day - timedelta(days=days - 1), day, uri=data_uri)
    run = monitor_window(store, spec, day - timedelta(days=window_days - 1), day, now, topic_arn=topic_arn,
                         sns_client=sns_client, labels_uri=labels_uri)
    retraining = (retrain_if_decided(store, spec, run.decision, day, run_key=key, now=now, start=on_retrain)
                  if retrain else None)
    return CycleResult(day, scored, run, retraining)


def describe(summary: dict[str, Any]) -> list[str]:
    """The cycle in a few lines for people (``loopml run-schedule``, the demo)."""
    s, m, d, r = summary["scored"], summary["monitoring"], summary["decision"], summary["retraining"]
    window = f"{m['window']['start']}..{m['window']['end']}"
    seen = (f"window {window} EMPTY: no predictions (alert no_data)" if m["rows"] == 0
            else f"window {window}: {m['rows']} rows")
    lines = [f"{summary['day']}: scored {s['rows']} rows with v{s['version']}; monitoring {m['run_id']}: {seen}; "
             f"{m['alerts']} alert(s) ({m['new_alerts']} new); retrain: {d['retrain']}"
             + (f" ({'; '.join(d['reasons'])})" if d["reasons"] else "")]
    if m["kinds"]:
        lines.append(f"  alert kinds: {', '.join(m['kinds'])}")
    if r is not None and not r.get("started"):
        lines.append(f"  no retraining: {r['why']}")
    elif r is not None and not r.get("version"):
        lines.append(f"  started the deployed TrainFlow on {r.get('engine')}: {r.get('execution')}")
    elif r is not None:
        verdict = "promoted" if r["promoted"] else "kept as challenger"
        lines.append(f"  retrained v{r['version']} on {r['data']}: {verdict}: {r['why']}")
    return lines
