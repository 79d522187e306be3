"""Retraining: the newer window's data, one claim per window (cooldown, in flight), the challenger gate.

A retraining is claimed in the store before it starts (``monitoring/retraining/<until>.json``,
create-if-absent) and its outcome is written beside the claim when it ends. The claims are what
make a retried or re-run cycle start at most one retraining per window, none while another is in
flight, and none during the cooldown after a challenger lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from loopml.data import fingerprint, load_frame, validate
from loopml.labels import labelled_window
from loopml.modeling.metrics import score
from loopml.registry import CHALLENGER, Registry
from loopml.scoring import predict_frame
from loopml.serving import load_predictor
from loopml.spec import ProblemSpec
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import RETRAINING

__all__ = ["RETRAINING", "Claim", "claim_retraining", "record_started", "record_outcome", "retraining_state",
           "retraining_data", "challenge", "retrain_challenger", "start_once", "Retrainer", "MIN_COMPARE_ROWS"]

MIN_COMPARE_ROWS = 50  # fewer labelled recent rows than this and a metric difference is noise
Retrainer = Callable[[date], dict[str, Any]]  # until -> what was started (loopml.triggers.retrainer)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ------------------------------------------------------------------------------------------ claims
def claim_key(until: date) -> str:
    return f"{RETRAINING}/{until.isoformat()}.json"


def _suffixed(until: date, suffix: str) -> str:
    return f"{RETRAINING}/{until.isoformat()}.{suffix}.json"


@dataclass(frozen=True)
class Claim:
    """Whether this run may (re)start the retraining of the window ending ``until``, and why."""

    until: date
    granted: bool
    why: str
    resumed: bool = False  # the same run claimed it before (a retry): carry on where it stopped

    @property
    def key(self) -> str:
        return claim_key(self.until)

    def to_dict(self) -> dict[str, Any]:
        return {"until": self.until.isoformat(), "granted": self.granted, "why": self.why, "resumed": self.resumed,
                "key": self.key}


def _get(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return store.get_json(key)
    except KeyNotFound:
        return None


def retraining_state(store: Store) -> list[dict[str, Any]]:
    """Every claim with its start record and outcome (None while unknown), oldest window first."""
    out = []
    for key in store.list(RETRAINING + "/"):
        name = key.rsplit("/", 1)[1]
        if name.count(".") != 1:  # <until>.started.json / <until>.outcome.json are read with their claim
            continue
        until = date.fromisoformat(name.removesuffix(".json"))
        out.append({**store.get_json(key), "started": _get(store, _suffixed(until, "started")),
                    "outcome": _get(store, _suffixed(until, "outcome"))})
    return out


def _blocker(state: list[dict[str, Any]], spec: ProblemSpec, until: date, now: datetime) -> str | None:
    """Why no retraining may start now, or None."""
    for c in state:
        claimed_at, outcome = _utc(datetime.fromisoformat(c["claimed_at"])), c["outcome"]
        if c["until"] == until.isoformat():
            done = f"finished: {outcome['why']}" if outcome else "in flight"
            return f"the window until {until} was already claimed by {c['by']} at {c['claimed_at']} ({done})"
        if outcome is None and now - claimed_at < timedelta(hours=spec.retraining.in_flight_hours):
            return (f"a retraining (window until {c['until']}, by {c['by']}) is in flight since {c['claimed_at']} "
                    f"(in_flight_hours={spec.retraining.in_flight_hours:g})")
        if outcome is not None and not outcome["promoted"]:
            lost_at = _utc(datetime.fromisoformat(outcome["at"]))
            if now - lost_at < timedelta(days=spec.retraining.cooldown_days):
                return (f"the challenger for the window until {c['until']} lost at {outcome['at']}: cooling down for "
                        f"cooldown_days={spec.retraining.cooldown_days:g}")
    return None


def claim_retraining(store: Store, spec: ProblemSpec, until: date, run_key: str, now: datetime) -> Claim:
    """Claim the retraining of the window ending ``until`` for ``run_key``, unless another retraining is
    in flight, the window was already claimed, or a challenger lost within the cooldown.

    The same ``run_key`` gets its own claim back (``resumed``): a retried step carries on where it
    stopped, or finds the outcome already recorded (:func:`recorded_outcome`).
    """
    now = _utc(now)
    mine = _get(store, claim_key(until))
    if mine is not None and mine["by"] == run_key:
        return Claim(until, True, f"resuming the claim made at {mine['claimed_at']}", resumed=True)
    why = _blocker(retraining_state(store), spec, until, now)
    if why is not None:
        return Claim(until, False, why)
    body = {"until": until.isoformat(), "by": run_key, "claimed_at": now.isoformat()}
    if not store.put_new_json(claim_key(until), body):  # another run claimed it between our read and write
        return Claim(until, False, f"the window until {until} was claimed by another run just now")
    return Claim(until, True, "claimed")


def record_started(store: Store, until: date, started: dict[str, Any]) -> dict[str, Any]:
    """Record that the retraining was started elsewhere (a Step Functions execution...); the first
    record wins, and is returned, so a retried trigger can see it already fired."""
    key = _suffixed(until, "started")
    store.put_new_json(key, started)
    return store.get_json(key)


def was_started(store: Store, until: date) -> dict[str, Any] | None:
    return _get(store, _suffixed(until, "started"))


def start_once(store: Store, spec: ProblemSpec, until: date, run_key: str, now: datetime,
               start: Retrainer) -> dict[str, Any]:
    """Start a retraining elsewhere (a deployed TrainFlow) at most once: claim the window, then call
    ``start`` unless this claim already fired. The started TrainFlow records the outcome."""
    claim = claim_retraining(store, spec, until, run_key, now)
    if not claim.granted:
        return {"started": False, "why": claim.why, "claim": claim.to_dict()}
    fired = was_started(store, until)
    if fired is None:
        fired = record_started(store, until, start(until))
    return {**fired, "claim": claim.to_dict()}


def record_outcome(store: Store, until: date, outcome: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The claim's outcome (promoted or not, and why): written once; the recorded one is returned."""
    key = _suffixed(until, "outcome")
    store.put_new_json(key, {**outcome, "at": _utc(now).isoformat()})
    return store.get_json(key)


def recorded_outcome(store: Store, until: date) -> dict[str, Any] | None:
    return _get(store, _suffixed(until, "outcome"))


# -------------------------------------------------------------------------------------------- data
def retraining_data(store: Store, spec: ProblemSpec, until: date) -> str:
    """The newer window to retrain on: the original training data plus every labelled scored row up to
    ``until``, written to the store as a Parquet input.

    The key holds the data's fingerprint and the object is created only if absent, so an earlier
    version's data is never overwritten (labels that arrive later make a new file) and stays
    reproducible.
    """
    base = validate(load_frame(spec.data.train), spec, source=spec.data.train)
    recent = labelled_window(store, spec, None, until)
    if not recent.empty:
        recent = validate(recent[[c for c in base.columns if c in recent.columns]], spec, source="labelled predictions")
        if spec.id:
            base[spec.id] = base[spec.id].astype(str)
    combined = pd.concat([base, recent], ignore_index=True) if not recent.empty else base
    key = f"inputs/retrain-until-{until.isoformat()}-{fingerprint(combined)[:16]}.parquet"
    if not store.exists(key):
        store.write_parquet(key, combined)
    return store.url(key)


# ------------------------------------------------------------------------------ the challenger gate
def challenge(store: Store, spec: ProblemSpec, challenger: int, start: date | None, end: date | None) -> dict[str, Any]:
    """Score champion and challenger on the same recent labelled rows; promote the challenger only if it
    passes its own gates and beats the champion on the spec's metric by more than ``min_improvement``.
    The ledger records why. Asked again about a challenger already judged, it moves nothing."""
    registry = Registry(store)
    chall = registry.get(challenger)
    if registry.alias() is None:  # nothing to beat: the gates alone decide
        passes = chall.meta.get("gates", {}).get("passes", False)
        why = "no champion yet; the challenger passes its gates" if passes else "no champion, and the challenger fails its gates"
        if passes:
            registry.promote(challenger, why=why)
        return {"champion": None, "challenger": challenger, "rows": 0, "promoted": passes, "why": why}
    if registry.alias() == challenger:  # a retry after the promotion: the ledger has it already
        return {"champion": challenger, "challenger": challenger, "rows": 0, "promoted": True,
                "why": f"version {challenger} is already the champion"}
    outcome = compare_on_recent(store, spec, registry.resolve().number, challenger, start, end)
    if outcome["promoted"]:
        registry.promote(challenger, why=outcome["why"])
    elif registry.alias(CHALLENGER) != challenger:
        registry.set_alias(CHALLENGER, challenger, why=outcome["why"], action="challenger")
    return outcome


def compare_on_recent(store: Store, spec: ProblemSpec, champion: int, challenger: int,
                      start: date | None, end: date | None) -> dict[str, Any]:
    """The verdict, without moving any alias: both models on the recent labelled rows the challenger
    did not train on (its held-out test period onwards)."""
    registry = Registry(store)
    champ, chall = registry.get(champion), registry.get(challenger)
    data = labelled_window(store, spec, start, end)
    held_out = (chall.meta.get("data") or {}).get("test_from")
    if spec.timestamp and held_out and not data.empty:
        # only rows the challenger never trained on: its training window includes recent labelled rows
        data = data[data[spec.timestamp] >= pd.Timestamp(held_out)].reset_index(drop=True)
    outcome: dict[str, Any] = {"champion": champ.number, "challenger": challenger, "rows": len(data),
                               "metric": spec.metric.name, "compared_from": held_out}
    if len(data) < MIN_COMPARE_ROWS:
        return {**outcome, "promoted": False, "why": f"only {len(data)} labelled recent rows: too few to compare"}
    for role, version in (("champion_score", champ), ("challenger_score", chall)):
        predictor = load_predictor(registry, version)
        pred, proba = predict_frame(predictor, data, spec)
        classes = list(predictor.schema.classes) if predictor.schema.classes else None
        outcome[role] = score(spec.metric.name, data[spec.target].to_numpy(), pred, proba, classes)
    gain = outcome["challenger_score"] - outcome["champion_score"]
    outcome["gain"] = gain if spec.metric.higher_is_better else -gain
    return {**outcome, **_verdict(outcome, chall.meta.get("gates", {}), spec)}


def _verdict(o: dict[str, Any], gates: dict[str, Any], spec: ProblemSpec) -> dict[str, Any]:
    name, margin, n = spec.metric.name, spec.retraining.min_improvement, o["rows"]
    scores = f"challenger {name} {o['challenger_score']:.4f}", f"champion {o['champion_score']:.4f}"
    if not gates.get("passes", False):
        return {"promoted": False, "why": "challenger fails its own gates: " + "; ".join(gates.get("reasons", []))}
    if not o["gain"] > margin:
        return {"promoted": False, "why": (f"{scores[0]} does not beat {scores[1]} by more than {margin:g} "
                                           f"on {n} recent labelled rows it did not train on")}
    return {"promoted": True, "why": (f"{scores[0]} beats {scores[1]} by more than {margin:g} on {n} recent "
                                      "labelled rows it did not train on, and passes its gates")}


# ------------------------------------------------------------------------- retraining in process
def retrain_challenger(store: Store, spec: ProblemSpec, until: date, *, run_key: str, as_of: datetime,
                       lineage: str | None = None) -> dict[str, Any]:
    """Train a challenger on the newer window in this process, register it once (keyed by ``run_key``)
    and gate it against the champion. The cycle's retrain step: it runs wherever that step runs
    (this machine, AWS Batch, Kubernetes), so no second scheduler is involved. ``lineage`` is the
    run recorded in the version (e.g. the CycleFlow task's pathspec; default: ``run_key``)."""
    from loopml.modeling.inprocess import fit_in_process
    from loopml.modeling.register import register_version

    data_uri = retraining_data(store, spec, until)
    run = fit_in_process(spec, uri=data_uri, until=as_of.replace(tzinfo=None).isoformat())
    version, decision = register_version(Registry(store), spec, run.data, run.winner, run.selection, run.evaluation,
                                         run.classes, lineage or run_key, promote=False, run_key=run_key, as_of=as_of)
    return {"version": version, "data": data_uri, "gates": decision["gates"],
            **challenge(store, spec, version, None, None)}
