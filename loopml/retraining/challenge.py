"""The challenger gate: champion and challenger scored on the same recent labelled rows; the challenger is
promoted only if it passes its own gates and beats the champion; and a challenger trained in process."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

from loopml.modeling.metrics import score
from loopml.registry.records import GatesRecord
from loopml.registry.registry import CHALLENGER, Registry
from loopml.retraining.data import retraining_data
from loopml.scoring.batch import predict_frame
from loopml.scoring.labels import labelled_window
from loopml.serving.server import load_predictor
from loopml.spec import ProblemSpec
from loopml.storage import Store

MIN_COMPARE_ROWS = 50  # fewer labelled recent rows than this and a metric difference is noise


# ------------------------------------------------------------------------------ the challenger gate
def challenge(store: Store, spec: ProblemSpec, challenger: int, start: date | None, end: date | None) -> dict[str, Any]:
    """Score champion and challenger on the same recent labelled rows; promote the challenger only if it
    passes its own gates and beats the champion on the spec's metric by more than ``min_improvement``.
    The ledger records why. Asked again about a challenger already judged, it moves nothing."""
    registry = Registry(store)
    chall = registry.get(challenger)
    if registry.alias() is None:  # nothing to beat: the gates alone decide
        passes = chall.record.gates is not None and chall.record.gates.passes
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
    held_out = chall.record.data.test_from if chall.record.data else None
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
    return {**outcome, **_verdict(outcome, chall.record.gates, spec)}


def _verdict(o: dict[str, Any], gates: GatesRecord | None, spec: ProblemSpec) -> dict[str, Any]:
    name, margin, n = spec.metric.name, spec.retraining.min_improvement, o["rows"]
    scores = f"challenger {name} {o['challenger_score']:.4f}", f"champion {o['champion_score']:.4f}"
    if gates is None or not gates.passes:
        return {"promoted": False, "why": "challenger fails its own gates: " + "; ".join(gates.reasons if gates else [])}
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
