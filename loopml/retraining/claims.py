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
from loopml.storage.layout import (
    RETRAINING,
    claim_until,
    retraining_claim_key,
    retraining_outcome_key,
    retraining_started_key,
)
from loopml.storage.records import R, Record, read, write_new

Retrainer = Callable[[date], dict[str, Any]]  # until -> what was started (loopml.retraining.triggers.retrainer)


# ----------------------------------------------------------------------------------------- records
class RetrainingClaim(Record):
    """``monitoring/retraining/<until>.json``: who claimed the retraining of the window, and when."""

    until: str
    by: str
    claimed_at: str


class RetrainingStarted(Record):
    """What a claim started elsewhere (:data:`Retrainer`'s answer: the engine, the execution, the data...)."""

    started: bool


class RetrainingOutcome(Record):
    """How a claimed retraining ended: promoted or not, why, and when (the challenge's figures are kept)."""

    promoted: bool
    why: str
    at: str


@dataclass(frozen=True)
class ClaimState:
    """A claim with what was recorded beside it (None while unknown)."""

    claim: RetrainingClaim
    started: RetrainingStarted | None
    outcome: RetrainingOutcome | None


# ------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class Claim:
    """Whether this run may (re)start the retraining of the window ending ``until``, and why."""

    until: date
    granted: bool
    why: str
    resumed: bool = False  # the same run claimed it before (a retry): carry on where it stopped

    @property
    def key(self) -> str:
        """Where the claim is stored."""
        return retraining_claim_key(self.until)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (a cycle's summary, a flow artifact)."""
        return {"until": self.until.isoformat(), "granted": self.granted, "why": self.why, "resumed": self.resumed,
                "key": self.key}


def _get(store: Store, key: str, cls: type[R]) -> R | None:
    try:
        return read(store, key, cls)
    except KeyNotFound:
        return None


def retraining_state(store: Store) -> list[ClaimState]:
    """Every claim with its start record and outcome (None while unknown), oldest window first."""
    out = []
    for key in store.list(RETRAINING + "/"):
        until = claim_until(key)
        if until is None:  # <until>.started.json / <until>.outcome.json are read with their claim
            continue
        out.append(ClaimState(read(store, key, RetrainingClaim), was_started(store, until),
                              recorded_outcome(store, until)))
    return out


def _blocker(state: list[ClaimState], spec: ProblemSpec, until: date, now: datetime) -> str | None:
    """Why no retraining may start now, or None."""
    for c in state:
        claim, outcome = c.claim, c.outcome
        claimed_at = _utc(datetime.fromisoformat(claim.claimed_at))
        if claim.until == until.isoformat():
            done = f"finished: {outcome.why}" if outcome else "in flight"
            return f"the window until {until} was already claimed by {claim.by} at {claim.claimed_at} ({done})"
        if outcome is None and now - claimed_at < timedelta(hours=spec.retraining.in_flight_hours):
            return (f"a retraining (window until {claim.until}, by {claim.by}) is in flight since {claim.claimed_at} "
                    f"(in_flight_hours={spec.retraining.in_flight_hours:g})")
        if outcome is not None and not outcome.promoted:
            lost_at = _utc(datetime.fromisoformat(outcome.at))
            if now - lost_at < timedelta(days=spec.retraining.cooldown_days):
                return (f"the challenger for the window until {claim.until} lost at {outcome.at}: cooling down for "
                        f"cooldown_days={spec.retraining.cooldown_days:g}")
    return None


def claim_retraining(store: Store, spec: ProblemSpec, until: date, run_key: str, now: datetime) -> Claim:
    """Claim the retraining of the window ending ``until`` for ``run_key``, unless another retraining is
    in flight, the window was already claimed, or a challenger lost within the cooldown.

    The same ``run_key`` gets its own claim back (``resumed``): a retried step carries on where it
    stopped, or finds the outcome already recorded (:func:`recorded_outcome`).
    """
    now = _utc(now)
    mine = _get(store, retraining_claim_key(until), RetrainingClaim)
    if mine is not None and mine.by == run_key:
        return Claim(until, True, f"resuming the claim made at {mine.claimed_at}", resumed=True)
    why = _blocker(retraining_state(store), spec, until, now)
    if why is not None:
        return Claim(until, False, why)
    claim = RetrainingClaim(until=until.isoformat(), by=run_key, claimed_at=now.isoformat())
    if not write_new(store, retraining_claim_key(until), claim):  # another run claimed it between our read and write
        return Claim(until, False, f"the window until {until} was claimed by another run just now")
    return Claim(until, True, "claimed")


def record_started(store: Store, until: date, started: dict[str, Any]) -> RetrainingStarted:
    """Record that the retraining was started elsewhere (a Step Functions execution...); the first
    record wins, and is returned, so a retried trigger can see it already fired."""
    key = retraining_started_key(until)
    write_new(store, key, RetrainingStarted.model_validate(started))
    return read(store, key, RetrainingStarted)


def was_started(store: Store, until: date) -> RetrainingStarted | None:
    """What the claim of the window ending ``until`` started, or None when it started nothing yet."""
    return _get(store, retraining_started_key(until), RetrainingStarted)


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
    return {**fired.to_plain(), "claim": claim.to_dict()}


def record_outcome(store: Store, until: date, outcome: dict[str, Any], now: datetime) -> RetrainingOutcome:
    """The claim's outcome (promoted or not, and why): written once; the recorded one is returned."""
    key = retraining_outcome_key(until)
    write_new(store, key, RetrainingOutcome.model_validate({**outcome, "at": _utc(now).isoformat()}))
    return read(store, key, RetrainingOutcome)


def recorded_outcome(store: Store, until: date) -> RetrainingOutcome | None:
    """The outcome recorded for the window ending ``until``, or None while the retraining is unfinished."""
    return _get(store, retraining_outcome_key(until), RetrainingOutcome)
