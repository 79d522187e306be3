"""The demo's car loan data as the tests use it (NannyML's synthetic set, shipped in the package: offline),
and the cheap spec the flows train on."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml


class CarLoan(NamedTuple):
    """(training data, new data, late labels by id)."""

    train: pd.DataFrame
    new: pd.DataFrame
    labels: pd.DataFrame


def car_loan(train_rows: int | None = None, new_rows: int | None = None, *, train_from_start: bool = False,
             predictions: bool = False, labels_joined: bool = False) -> CarLoan:
    """The car loan frames, a fresh copy each call (callers modify them).

    ``train_rows`` / ``new_rows``: that many rows spread evenly over time, so every period is represented
    (``train_from_start``: the first ``train_rows`` instead); None keeps them all. The labels are those of
    the new rows kept. ``predictions``: with NannyML's own model outputs (``y_pred``, ``y_pred_proba``),
    which loopml's demo drops, for monitoring without a model. ``labels_joined``: the target joined onto
    the new rows."""
    return CarLoan(*(df.copy() for df in _car_loan(train_rows, new_rows, train_from_start, predictions, labels_joined)))


@cache
def _car_loan(train_rows: int | None, new_rows: int | None, train_from_start: bool, predictions: bool,
              labels_joined: bool) -> CarLoan:
    train, new, labels = _frames(predictions)
    if labels_joined:
        new = new.merge(labels, on="id")
    train = train.head(train_rows) if train_from_start else _spread(train, train_rows)
    new = _spread(new, new_rows)
    if new_rows is not None:
        labels = labels[labels["id"].isin(new["id"])]
    return CarLoan(train.reset_index(drop=True), new.reset_index(drop=True), labels.reset_index(drop=True))


def _frames(predictions: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if not predictions:
        from loopml.demo.data import car_loan_frames

        return car_loan_frames()
    import nannyml

    nannyml.disable_usage_logging()
    return nannyml.load_synthetic_car_loan_dataset()


def _spread(df: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    return df if rows is None else df.iloc[:: len(df) // rows].head(rows)


def small_spec(data: dict[str, str], threshold: float = 0.9, **overrides: Any) -> dict[str, Any]:
    """The demo's car loan spec, made cheap: one-iteration candidates, the given data URIs."""
    from loopml.demo.data import car_loan_spec

    spec = car_loan_spec("unused", threshold=threshold)
    spec["data"] = data
    spec["candidates"] = [{"family": "linear", "n_iter": 1}, {"family": "random_forest", "n_iter": 1,
                                                              "space": {"n_estimators": [30], "max_depth": [8]}}]
    spec["retraining"] = {"max_age_days": 365, "consecutive_chunks": 2}
    # small samples make group metrics noisy: keep the fairness gate, with room for 6000 rows' noise
    spec["constraints"] = {"p99_latency_ms": 50, "fairness": {"group": "salary_range", "max_gap": 0.15}}
    for k, v in overrides.items():
        spec[k] = v
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> str:
    """``spec`` as project.yaml at ``path``; the path as a string."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)
