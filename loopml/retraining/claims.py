"""Retraining: the newer window's data, one claim per window (cooldown, in flight), the challenger gate.

A retraining is claimed in the store before it starts (``monitoring/retraining/<until>.json``,
create-if-absent) and its outcome is written beside the claim when it ends. The claims are what
make a retried or re-run cycle start at most one retraining per window, none while another is in
flight, and none during the cooldown after a challenger lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from loopml.dates import utc as _utc
from loopml.spec import ProblemSpec
from loopml.storage import KeyNotFound, Store
from loopml.storage.layout import RETRAINING

Retrainer = Callable[[date], dict[str, Any]]  # until -> what was started (loopml.retraining.triggers.retrainer)


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
