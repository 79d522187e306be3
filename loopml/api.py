"""The service layer: every use case of loopml, done in one place for the ``loopml`` command, your own code
and notebooks alike (the CLI only parses its arguments, calls one function here and prints the result).

Every function takes the spec as a path to ``project.yaml`` (relative data paths resolve against its folder)
and the store as a folder or ``s3://bucket/prefix`` (default: ``$LOOPML_STORE`` or ``.loopml``). Training,
scoring and monitoring first run the preflight checks (:mod:`loopml.runtime.preflight`: the data, the store,
a champion), so a bad input fails in a second with one line, then run the Metaflow flows, so each run is
recorded by Metaflow like any other; the scheduled cycle runs in this process, as the scheduled job does.
Heavy libraries are imported inside the functions, so ``import loopml`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.registry.doctor import Finding
    from loopml.spec import ProblemSpec
    from loopml.storage import Store

__all__ = ["TrainResult", "ScoreResult", "MonitorResult", "DoctorResult", "PublishResult", "train", "score",
           "monitor", "run_cycle", "run_schedule", "promote", "rollback", "status", "ledger", "compare", "runs",
           "doctor", "publish", "start_rollout", "stop_rollout", "rollout_status", "store_uri"]

PathLike = str | Path
Output = Callable[[str], None]  # receives a flow's output line by line


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: the version it registered, whether it was promoted, and why not."""

    version: int
    promoted: bool
    reasons: list[str]  # why it was not promoted (the gates it failed); empty when promoted
    run: str  # the Metaflow run, e.g. "TrainFlow/1712345"
    metrics: dict[str, float] = field(default_factory=dict)  # on the held-out test split
    warnings: list[str] = field(default_factory=list)  # about the data (e.g. an id-like feature)


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run committed: rows per date, with the model version that scored them."""

    version: int  # the model version that scored
    partitions: dict[str, int]  # date -> rows written
    run: str
    score_run: str = ""  # the scoring run's id in the predictions manifest

    @property
    def rows(self) -> int:
        """Rows committed over all dates."""
        return sum(self.partitions.values())


@dataclass(frozen=True)
class MonitorResult:
    """What a monitoring run found: its alerts, the retraining decision and where its report is."""

    run_id: str
    alerts: list[dict[str, Any]]
    decision: dict[str, Any]  # {"retrain": bool, "reasons": [...], ...}
    report_url: str
    run: str = field(default="")
    rows: int = 0  # predictions in the window (0: an empty window, alert no_data)
    new_alerts: int = 0  # alerts this run raised first


@dataclass(frozen=True)
class DoctorResult:
    """The registry's problems as ``loopml doctor`` found them, repaired ones included."""

    store: str
    findings: list[Finding]

    @property
    def left(self) -> list[Finding]:
        """The problems still there (not repaired)."""
        return [f for f in self.findings if not f.repaired]


@dataclass(frozen=True)
class PublishResult:
    """Which versions a publish copied (or, on a dry run, would copy) and which were already there."""

    store: str  # the destination
    copied: list[int]
    already_there: list[int]


# ------------------------------------------------------------------------------------------ helpers
def store_uri(store: PathLike | None = None) -> str:
    """The store root: ``store`` when given, else the settings' (``$LOOPML_STORE`` or ``.loopml``)."""
    if store is not None and str(store):
        return str(store)
    from loopml.settings import get_settings  # pydantic-settings only when no store was given

    return get_settings().store


def _store(store: PathLike | None, existing: bool = False) -> Store:
    """The store itself. ``existing``: for use cases that only read, a store that does not exist is an
    error ("no such store"), not an empty registry."""
    from loopml.storage import from_uri

    opened = from_uri(store_uri(store))
    if existing:
        opened.require_existing()
    return opened


def _registry(store: PathLike | None, existing: bool = False) -> Any:
    from loopml.registry.registry import Registry

    return Registry(_store(store, existing))


def _spec(spec: PathLike | ProblemSpec) -> ProblemSpec:
    """The spec, loaded here so that a bad one fails with the field named, before a flow starts."""
    from loopml.spec import ProblemSpec, load_spec

    return spec if isinstance(spec, ProblemSpec) else load_spec(spec)


# ------------------------------------------------------------------------------ train, score, monitor
def train(spec: PathLike, *, store: PathLike | None = None, mode: str = "promote", until: str | None = None,
          data: str | None = None, show_output: bool = False, output: Output | None = None) -> TrainResult:
    """Train, register and, if it passes the spec's gates, promote (``mode="challenger"``: gate against the
    champion instead). Checks the data and that the store is writable first, then runs TrainFlow; raises
    :class:`loopml.runtime.flowrun.FlowFailed` when the flow fails."""
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_train

    if mode not in ("promote", "challenger"):
        raise ValueError(f"mode must be 'promote' or 'challenger', not {mode!r}")
    root = store_uri(store)
    check_train(_spec(spec), root, data or None)
    run = run_flow("train_flow", show_output, output=output, spec=str(spec), store=root, mode=mode, until=until,
                   data=data)
    d = run.data.decision
    return TrainResult(version=int(run.data.version), promoted=bool(d["promoted"]),
                       reasons=list(d["gates"]["reasons"]), run=run.pathspec, metrics=dict(run.data.metrics),
                       warnings=[w["message"] for w in getattr(run.data, "warnings", [])])


def score(spec: PathLike, start: date | str, end: date | str | None = None, *, store: PathLike | None = None,
          data: str | None = None, replace: bool = False, show_output: bool = False,
          output: Output | None = None) -> ScoreResult:
    """Score the new data of [start, end] (end defaults to start) with the champion. Checks the data and
    that a champion exists first, then runs ScoreFlow. ``replace``: replace dates that already hold
    predictions (needed when the spec has no id)."""
    from loopml.dates import date_range
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_score

    first, last = date_range(start, end)
    root = store_uri(store)
    check_score(_spec(spec), root, data or None)
    run = run_flow("score_flow", show_output, output=output, spec=str(spec), store=root, start=first, end=last,
                   data=data, replace=replace or None)
    # reached only when the run committed: a failure before the commit raises with nothing published
    return ScoreResult(version=int(run.data.version), partitions=dict(run.data.partitions), run=run.pathspec,
                       score_run=str(run.data.score_run))


def monitor(spec: PathLike, start: date | str, end: date | str | None = None, *, store: PathLike | None = None,
            as_of: datetime | str | None = None, show_output: bool = False,
            output: Output | None = None) -> MonitorResult:
    """Monitor [start, end] with NannyML: estimated and realized performance, drift, alerts, the retraining
    decision. Checks that a champion exists first, then runs MonitorFlow; ``as_of`` is the run's "now"
    (an ISO time, UTC when it names no zone) when replaying history."""
    from loopml.dates import date_range, parse_as_of
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_monitor

    first, last = date_range(start, end)
    when = parse_as_of(as_of)
    root = store_uri(store)
    check_monitor(_spec(spec), root)
    run = run_flow("monitor_flow", show_output, output=output, spec=str(spec), store=root, start=first, end=last,
                   as_of=when.isoformat() if when else None)
    return MonitorResult(run_id=run.data.run_id, alerts=list(run.data.alerts), decision=dict(run.data.decision),
                         report_url=run.data.report_url, run=run.pathspec, rows=int(run.data.rows),
                         new_alerts=int(run.data.new_alerts))


# -------------------------------------------------------------------------------------------- the cycle
def run_cycle(spec: PathLike | ProblemSpec, day: date | str, *, store: PathLike | None = None, days: int = 1,
              window_days: int | None = None, as_of: datetime | None = None, retrain: bool = True,
              topic_arn: str | None = None) -> dict[str, Any]:
    """One scheduled cycle for ``day``, in this process: score the ``days`` ending on it, monitor the window
    ending on it, and retrain and gate a challenger when the decision says so. Checks that a champion
    exists first. Safe to repeat: a second run of the same day changes nothing. ``spec`` may also be a
    spec already loaded (the scheduled job reads it from S3). Returns what the cycle did
    (:meth:`loopml.cycle.cycle.CycleResult.summary`)."""
    from loopml.cycle.cycle import run_cycle as cycle
    from loopml.dates import as_date
    from loopml.runtime.preflight import check_monitor

    when, loaded, root = as_date(day, "day"), _spec(spec), store_uri(store)
    check_monitor(loaded, root)
    options: dict[str, Any] = {"days": days, "as_of": as_of, "retrain": retrain, "topic_arn": topic_arn}
    if window_days is not None:
        options["window_days"] = window_days
    return cycle(_store(root), loaded, when, **options).summary()


def run_schedule(spec: PathLike, start: date | str, end: date | str, *, store: PathLike | None = None,
                 every_days: int = 7, window_days: int = 28, retrain: bool = True,
                 show_output: bool = False) -> Iterator[str]:
    """Replay the scheduled cycle over [start, end], one CycleFlow run every ``every_days`` days, each
    monitoring the ``window_days`` before it. Checks the spec and that a champion exists now; the
    returned iterator runs the cycles one by one, yielding what each did in a few lines."""
    from loopml.cycle.replay import replay
    from loopml.dates import date_range
    from loopml.runtime.preflight import check_monitor

    first, last = date_range(start, end)
    root = store_uri(store)
    check_monitor(_spec(spec), root)
    return replay(str(spec), root, first, last, every_days=every_days, window_days=window_days, retrain=retrain,
                  show_output=show_output)


# ----------------------------------------------------------------------------------------- the registry
def promote(version: int, why: str, *, store: PathLike | None = None, force: bool = False) -> dict[str, Any]:
    """Make ``version`` the champion; the move is recorded in the ledger with ``why``. Returns the entry.
    A version failing its SHA-256 check or its gates is refused unless ``force`` (recorded as forced)."""
    return _registry(store).promote(version, why=why, force=force)


def rollback(why: str, *, to: int | None = None, store: PathLike | None = None, force: bool = False
             ) -> dict[str, Any]:
    """Put back the champion the current one replaced (or set version ``to``); recorded in the ledger.
    Returns the entry. A version failing its SHA-256 check or its gates is refused unless ``force``."""
    return _registry(store).rollback(why=why, to=to, force=force)


def start_rollout(version: int, why: str = "", *, store: PathLike | None = None) -> dict[str, Any]:
    """Gradual promotion: make ``version`` the API's candidate, which answers a share of ``/predict``
    (:mod:`loopml.serving.rollout`). Returns the ledger entry."""
    from loopml.serving.rollout import CANDIDATE

    return _registry(store).set_alias(CANDIDATE, version, why=why or "gradual promotion", action="rollout")


def stop_rollout(why: str = "", *, store: PathLike | None = None) -> dict[str, Any]:
    """Clear the API's candidate: the champion answers every request again. Returns the ledger entry."""
    from loopml.serving.rollout import CANDIDATE

    return _registry(store).set_alias(CANDIDATE, None, why=why or "rollout stopped", action="rollback")


def rollout_status(*, store: PathLike | None = None) -> tuple[int | None, dict[str, Any] | None]:
    """The API's candidate version (None: no rollout) and the last change of it (None: never set)."""
    from loopml.serving.rollout import CANDIDATE

    registry = _registry(store)
    return registry.alias(CANDIDATE), next(reversed(registry.ledger(CANDIDATE)), None)


def ledger(*, store: PathLike | None = None) -> list[dict[str, Any]]:
    """Every alias change, oldest first."""
    return _registry(store, existing=True).ledger()


def doctor(*, store: PathLike | None = None, repair: bool = False, grace_hours: float = 1.0) -> DoctorResult:
    """Check aliases, ledger, versions and artifacts; with ``repair``, fix what is safe. Leftovers younger
    than ``grace_hours`` may belong to a run in progress and are left alone."""
    from loopml.registry.doctor import examine

    checked = _store(store, existing=True)
    return DoctorResult(checked.uri, examine(checked, repair=repair, grace_seconds=grace_hours * 3600))


def publish(to: str, *, store: PathLike | None = None, dry_run: bool = False,
            say: Callable[[str], None] = lambda _: None) -> PublishResult:
    """Copy the versions missing at the store ``to`` there (never its aliases or ledger); ``say`` hears
    each copy as it starts."""
    from loopml.registry.publish import publish as copy_versions
    from loopml.storage import from_uri

    source, dest = _store(store, existing=True), from_uri(to)
    report = copy_versions(source, dest, dry_run=dry_run, say=say)
    return PublishResult(dest.uri, report.copied, report.already_there)


# ------------------------------------------------------------------------------------------------ views
def status(*, store: PathLike | None = None) -> dict[str, Any]:
    """Champion, challenger, last monitoring run, open alerts and the last decision, as plain data."""
    from loopml.cycle.status import status as store_status

    return store_status(_store(store, existing=True))


def compare(a: int, b: int, *, store: PathLike | None = None) -> list[tuple[str, Any, Any]]:
    """Two versions side by side: (field, value in ``a``, value in ``b``) for every field either has."""
    from loopml.cycle.status import compare as compare_versions

    return compare_versions(_store(store, existing=True), a, b)


def runs(limit: int = 20) -> list[dict[str, Any]]:
    """The latest TrainFlow runs from Metaflow: data fingerprint, parameters, metrics, version."""
    from loopml.cycle.status import training_runs

    return training_runs(limit)
