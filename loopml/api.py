"""The Python API: what the ``loopml`` command does, for your own code and notebooks.

Every function takes the spec as a path to ``project.yaml`` (relative data paths resolve against its folder)
and the store as a folder or ``s3://bucket/prefix`` (default: ``$LOOPML_STORE`` or ``.loopml``). Training,
scoring and monitoring run the same Metaflow flows as the CLI, so each run is recorded by Metaflow like any
other; the scheduled cycle runs in this process, as the scheduled job does. Heavy libraries are imported
inside the functions, so ``import loopml`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

__all__ = ["TrainResult", "ScoreResult", "MonitorResult", "train", "score", "monitor", "run_cycle", "promote",
           "rollback", "status"]

PathLike = str | Path


@dataclass(frozen=True)
class TrainResult:
    version: int
    promoted: bool
    reasons: list[str]  # why it was not promoted (the gates it failed); empty when promoted
    run: str  # the Metaflow run, e.g. "TrainFlow/1712345"


@dataclass(frozen=True)
class ScoreResult:
    version: int  # the model version that scored
    partitions: dict[str, int]  # date -> rows written
    run: str

    @property
    def rows(self) -> int:
        return sum(self.partitions.values())


@dataclass(frozen=True)
class MonitorResult:
    run_id: str
    alerts: list[dict[str, Any]]
    decision: dict[str, Any]  # {"retrain": bool, "reasons": [...], ...}
    report_url: str
    run: str = field(default="")


def _store_uri(store: PathLike | None) -> str:
    from loopml.settings import get_settings

    return str(store) if store is not None else get_settings().store


def _day(value: date | str, name: str) -> date:
    if isinstance(value, date):
        return value
    from loopml.dates import parse_date

    return parse_date(value, name)


def _range(start: date | str, end: date | str | None) -> tuple[date, date]:
    first = _day(start, "start")
    last = _day(end, "end") if end else first
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    return first, last


def train(spec: PathLike, *, store: PathLike | None = None, mode: str = "promote", until: str | None = None,
          data: str | None = None, show_output: bool = False) -> TrainResult:
    """Train, register and, if it passes the spec's gates, promote (``mode="challenger"``: gate against the
    champion instead). Runs TrainFlow; raises :class:`loopml.runtime.flowrun.FlowFailed` when the flow fails."""
    from loopml.runtime.flowrun import run_flow
    from loopml.spec import load_spec

    if mode not in ("promote", "challenger"):
        raise ValueError(f"mode must be 'promote' or 'challenger', not {mode!r}")
    load_spec(spec)  # a bad spec fails here, with the field named, before a flow starts
    run = run_flow("train_flow", show_output, spec=str(spec), store=_store_uri(store), mode=mode, until=until,
                   data=data)
    d = run.data.decision
    return TrainResult(version=int(run.data.version), promoted=bool(d["promoted"]),
                       reasons=list(d["gates"]["reasons"]), run=run.pathspec)


def score(spec: PathLike, start: date | str, end: date | str | None = None, *, store: PathLike | None = None,
          data: str | None = None, show_output: bool = False) -> ScoreResult:
    """Score the new data of [start, end] (end defaults to start) with the champion. Runs ScoreFlow."""
    from loopml.runtime.flowrun import run_flow

    first, last = _range(start, end)
    run = run_flow("score_flow", show_output, spec=str(spec), store=_store_uri(store), start=first, end=last,
                   data=data)
    return ScoreResult(version=int(run.data.version), partitions=dict(run.data.partitions), run=run.pathspec)


def monitor(spec: PathLike, start: date | str, end: date | str | None = None, *, store: PathLike | None = None,
            as_of: datetime | str | None = None, show_output: bool = False) -> MonitorResult:
    """Monitor [start, end] with NannyML: estimated and realized performance, drift, alerts, the retraining
    decision. Runs MonitorFlow; ``as_of`` is the run's "now" when replaying history."""
    from loopml.runtime.flowrun import run_flow

    first, last = _range(start, end)
    when = as_of.isoformat() if isinstance(as_of, datetime) else as_of
    run = run_flow("monitor_flow", show_output, spec=str(spec), store=_store_uri(store), start=first, end=last,
                   as_of=when)
    return MonitorResult(run_id=run.data.run_id, alerts=list(run.data.alerts), decision=dict(run.data.decision),
                         report_url=run.data.report_url, run=run.pathspec)


def run_cycle(spec: PathLike, day: date | str, *, store: PathLike | None = None, days: int = 1,
              window_days: int | None = None, as_of: datetime | None = None, retrain: bool = True,
              topic_arn: str | None = None) -> dict[str, Any]:
    """One scheduled cycle for ``day``, in order: score the ``days`` ending on it, monitor the window ending on
    it, and retrain and gate a challenger when the decision says so. Safe to repeat: a second run of the same
    day changes nothing. Returns what the cycle did (:meth:`loopml.cycle.cycle.CycleResult.summary`)."""
    from loopml.cycle.cycle import run_cycle
    from loopml.spec import load_spec
    from loopml.storage import from_uri

    options: dict[str, Any] = {"days": days, "as_of": as_of, "retrain": retrain, "topic_arn": topic_arn}
    if window_days is not None:
        options["window_days"] = window_days
    result = run_cycle(from_uri(_store_uri(store)), load_spec(spec), _day(day, "day"), **options)
    return result.summary()


def promote(version: int, why: str, *, store: PathLike | None = None, force: bool = False) -> dict[str, Any]:
    """Make ``version`` the champion; the move is recorded in the ledger with ``why``. Returns the entry.
    A version failing its SHA-256 check or its gates is refused unless ``force`` (recorded as forced)."""
    from loopml.registry.registry import Registry
    from loopml.storage import from_uri

    return Registry(from_uri(_store_uri(store))).promote(version, why=why, force=force)


def rollback(why: str, *, to: int | None = None, store: PathLike | None = None, force: bool = False
             ) -> dict[str, Any]:
    """Put back the champion the current one replaced (or set version ``to``); recorded in the ledger.
    Returns the entry. A version failing its SHA-256 check or its gates is refused unless ``force``."""
    from loopml.registry.registry import Registry
    from loopml.storage import from_uri

    return Registry(from_uri(_store_uri(store))).rollback(why=why, to=to, force=force)


def status(*, store: PathLike | None = None) -> dict[str, Any]:
    """Champion, challenger, last monitoring run, open alerts and the last decision, as plain data."""
    from loopml.cycle.status import status as store_status
    from loopml.storage import from_uri

    return store_status(from_uri(_store_uri(store)))
