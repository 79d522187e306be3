"""Gradual model promotion: a share of requests goes to the ``candidate`` alias, each version's
outcomes are counted, and the candidate is rolled back automatically when it does worse.

Operators start a rollout by pointing the registry's ``candidate`` alias at a version (the
registry's public alias API: ``loopml rollout start N``); the API sends ``weight`` of its requests
there. Every process judges what it saw: once the candidate has answered ``min_requests`` requests,
it is rolled back (the alias is cleared through ``Registry.set_alias`` with the reason, so the ledger
and every other container see it) when its error rate is worse than the champion's by more than
``max_error_increase``, or its median latency is more than ``max_latency_ratio`` times the
champion's. Finishing a rollout is a normal promotion (``loopml promote N``): a candidate equal to
the champion receives no separate share.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from loopml.registry.registry import Registry
from loopml.serving.server import LoadedModel, ModelServer

log = logging.getLogger("loopml.rollout")

__all__ = ["CANDIDATE", "Outcomes", "Rollout", "Variant"]

CANDIDATE = "candidate"
Variant = Literal["champion", "candidate"]


@dataclass
class Outcomes:
    """What one version did in this process: a recent window, so memory stays bounded."""

    window: int = 1000
    requests: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=deque)
    results: deque[bool] = field(default_factory=deque)  # True = an error

    def add(self, error: bool, latency_ms: float) -> None:
        """Count one request's outcome; the oldest drops out of the window."""
        self.requests += 1
        self.errors += error
        self.results.append(error)
        self.latencies_ms.append(latency_ms)
        while len(self.results) > self.window:
            self.results.popleft()
            self.latencies_ms.popleft()

    @property
    def error_rate(self) -> float:
        """The share of errors in the window."""
        return sum(self.results) / len(self.results) if self.results else 0.0

    @property
    def p50_ms(self) -> float:
        """The median latency in the window (ms)."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


class Rollout:
    """A gradual promotion as this process sees it: which share of requests the candidate gets, each
    version's outcomes, and the automatic rollback of a candidate that does worse than the champion."""

    def __init__(self, champion: ModelServer, candidate: ModelServer | None, registry: Registry, weight: float = 0.1,
                 min_requests: int = 200, max_error_increase: float = 0.01, max_latency_ratio: float = 2.0,
                 rng: random.Random | None = None) -> None:
        self.champion, self.candidate, self.registry = champion, candidate, registry
        self.weight, self.min_requests = weight, min_requests
        self.max_error_increase, self.max_latency_ratio = max_error_increase, max_latency_ratio
        self.rng = rng or random.Random()
        self.outcomes: dict[int, Outcomes] = {}
        self.rolled_back: dict[int, str] = {}
        self._lock = threading.Lock()

    def candidate_model(self) -> LoadedModel | None:
        """The candidate when one is set, loadable, not rolled back here, and not the champion."""
        if self.candidate is None or self.weight <= 0:
            return None
        model = self.candidate.current()
        champ = self.champion.current()
        if model is None or model.version in self.rolled_back or (champ is not None and champ.version == model.version):
            return None
        return model

    def pick(self, champion: LoadedModel | None) -> tuple[Variant, LoadedModel | None]:
        """The model for one request: the candidate for ``weight`` of them when it can serve, else ``champion``."""
        cand = self.candidate_model()
        if cand is not None and self.rng.random() < self.weight:
            return "candidate", cand
        return "champion", champion

    def record(self, version: int, error: bool, latency_ms: float) -> None:
        """Count a request's outcome against ``version``; a candidate's outcome may roll it back (:meth:`judge`)."""
        with self._lock:
            self.outcomes.setdefault(version, Outcomes()).add(error, latency_ms)
        cand = self.candidate_model()
        if cand is not None and version == cand.version:
            self.judge()

    def judge(self) -> str | None:
        """Roll the candidate back when it does worse than the champion; returns the reason."""
        cand, champ = self.candidate_model(), self.champion.current()
        if cand is None or champ is None:
            return None
        with self._lock:
            c, b = self.outcomes.get(cand.version), self.outcomes.get(champ.version)
            if c is None or c.requests < self.min_requests or cand.version in self.rolled_back:
                return None
            reason = None
            base_rate, base_p50 = (b.error_rate, b.p50_ms) if b and b.requests else (0.0, None)
            if c.error_rate > base_rate + self.max_error_increase:
                reason = (f"error rate {c.error_rate:.2%} vs the champion's {base_rate:.2%} "
                          f"over its last {len(c.results)} requests")
            elif base_p50 and c.p50_ms > self.max_latency_ratio * base_p50:
                reason = f"median latency {c.p50_ms:.2f} ms vs the champion's {base_p50:.2f} ms"
            if reason is None:
                return None
            self.rolled_back[cand.version] = reason
        why = f"automatic rollback of candidate version {cand.version}: {reason}"
        log.error(why)
        try:
            if self.registry.alias(CANDIDATE) == cand.version:
                self.registry.set_alias(CANDIDATE, None, why=why, action="rollback", who="loopml-api")
        except Exception as err:  # this process stops routing to it anyway; others judge for themselves
            log.error("could not clear the %s alias: %s", CANDIDATE, err)
        return reason

    def status(self) -> dict[str, object]:
        """What /health shows operators: the candidate, its weight, rollbacks and each version's outcomes."""
        cand = self.candidate.target if self.candidate else None
        return {"candidate_version": cand, "weight": self.weight, "rolled_back": dict(self.rolled_back),
                "outcomes": {v: {"requests": o.requests, "error_rate": round(o.error_rate, 4), "p50_ms": round(o.p50_ms, 3)}
                             for v, o in self.outcomes.items()}}
