"""Train / validation / test splits: by time when the spec has a timestamp, else seeded and stratified.

A time split never cuts through rows that share a timestamp: a cut moves back to the start of its tie,
so rows recorded at the same moment always land in the same split.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from loopml.modeling.tune import classes_of
from loopml.spec import ProblemSpec


class Splits(NamedTuple):
    """Train, validation and test frames; by time when the spec has a timestamp (test is the most recent)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def tie_safe_cuts(times: pd.Series, cuts: list[int]) -> list[int]:
    """Each cut moved back to the first row of the run of equal timestamps it would split (times sorted)."""
    values = times.to_numpy()
    return [int(np.searchsorted(values, values[c], side="left")) if 0 < c < len(values) else c for c in cuts]


def split(df: pd.DataFrame, spec: ProblemSpec, valid: float = 0.2, test: float = 0.2) -> Splits:
    """Cut ``df`` by time (never splitting equal timestamps) or, without a timestamp, at random, stratified
    for classifiers; ValueError when there are too few rows or a split would be empty."""
    if len(df) < 30:
        raise ValueError(f"need at least 30 rows to split into train/validation/test, got {len(df)}")
    if spec.timestamp:
        # the test set is the most recent period: it is what the model will face next
        ordered = df.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)
        n = len(ordered)
        a, b = tie_safe_cuts(ordered[spec.timestamp], [int(n * (1 - valid - test)), int(n * (1 - test))])
        parts = Splits(ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:])
        empty = [name for name, part in zip(Splits._fields, parts, strict=True) if part.empty]
        if empty:
            raise ValueError(f"timestamp {spec.timestamp!r}: too many rows share a timestamp to split by time "
                             f"(the {', '.join(empty)} split would be empty)")
        return parts
    strat = df[spec.target] if spec.is_classifier else None
    rest, test_df = train_test_split(df, test_size=test, random_state=spec.seed, stratify=strat)
    strat = rest[spec.target] if spec.is_classifier else None
    train_df, valid_df = train_test_split(
        rest, test_size=valid / (1 - test), random_state=spec.seed, stratify=strat
    )
    return Splits(train_df.reset_index(drop=True), valid_df.reset_index(drop=True), test_df.reset_index(drop=True))


def make_splits(df: pd.DataFrame, spec: ProblemSpec) -> tuple[Splits, list[Any] | None]:
    """The splits and the classes (None for regression), as every training run starts."""
    return split(df, spec), classes_of(df, spec)
