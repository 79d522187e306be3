"""TrainFlow's steps in one process, for benchmarks and tests that need a model without the cost of a
Metaflow run. The flow (flows/train_flow.py) remains the way to train for real."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopml.modeling.evaluate import Evaluation, evaluate
from loopml.modeling.register import register_version
from loopml.modeling.select import Selection, select
from loopml.modeling.split import Splits, make_splits
from loopml.modeling.tune import CandidateResult, LatencyMeasure, encode, refit, schema_of, tune
from loopml.modeling.windows import TrainingData, load_training_data
from loopml.registry.registry import Registry
from loopml.serving.predictor import latency_ms
from loopml.spec import ProblemSpec


@dataclass
class InProcessRun:
    """Everything TrainFlow's steps produce, kept for benches and tests that look inside."""

    spec: ProblemSpec
    data: TrainingData
    splits: Splits
    classes: list | None
    results: list[CandidateResult]
    selection: Selection
    winner: CandidateResult
    evaluation: Evaluation


def refit_and_evaluate(winner: CandidateResult, splits: Splits, spec: ProblemSpec, classes: list | None,
                       measure: LatencyMeasure = latency_ms) -> tuple[CandidateResult, Evaluation]:
    """The selected candidate refitted on every row the served model may learn from (train + validation),
    then evaluated on the test split, which stays held out: it is the monitoring reference."""
    fit = encode(pd.concat([splits.train, splits.valid], ignore_index=True), spec, classes)
    final = refit(winner, fit, encode(splits.valid, spec, classes), schema_of(spec, classes), measure)
    return final, evaluate(final, splits, spec, classes)


def fit_in_process(spec: ProblemSpec, uri: str | None = None, until: str | None = None,
                   measure: LatencyMeasure = latency_ms) -> InProcessRun:
    """TrainFlow's steps, sequentially, up to (not including) registration."""
    data = load_training_data(spec, uri=uri, until=until)
    splits, classes = make_splits(data.frame, spec)
    train, valid = encode(splits.train, spec, classes), encode(splits.valid, spec, classes)
    schema = schema_of(spec, classes)
    results = [tune(c, train, valid, spec, classes, schema, measure) for c in spec.candidates]
    selection = select([r.summary() for r in results], spec)
    winner, evaluation = refit_and_evaluate(results[selection.winner], splits, spec, classes, measure)
    return InProcessRun(spec, data, splits, classes, results, selection, winner, evaluation)


def train_in_process(spec: ProblemSpec, registry: Registry, run_pathspec: str = "in-process",
                     promote: bool = True, uri: str | None = None) -> tuple[int, dict[str, Any]]:
    """:func:`fit_in_process`, then register (and promote when the gates pass)."""
    r = fit_in_process(spec, uri)
    return register_version(registry, spec, r.data, r.winner, r.selection, r.evaluation, r.classes, run_pathspec,
                            promote=promote)
