"""Train / validation / test splits: by time when the spec has a timestamp, else seeded and stratified."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
from sklearn.model_selection import train_test_split

from loopml.spec import ProblemSpec


class Splits(NamedTuple):
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def split(df: pd.DataFrame, spec: ProblemSpec, valid: float = 0.2, test: float = 0.2) -> Splits:
    if len(df) < 30:
        raise ValueError(f"need at least 30 rows to split into train/validation/test, got {len(df)}")
    if spec.timestamp:
        # the test set is the most recent period: it is what the model will face next
        ordered = df.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)
        n = len(ordered)
        a, b = int(n * (1 - valid - test)), int(n * (1 - test))
        return Splits(ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:])
    strat = df[spec.target] if spec.is_classifier else None
    rest, test_df = train_test_split(df, test_size=test, random_state=spec.seed, stratify=strat)
    strat = rest[spec.target] if spec.is_classifier else None
    train_df, valid_df = train_test_split(
        rest, test_size=valid / (1 - test), random_state=spec.seed, stratify=strat
    )
    return Splits(train_df.reset_index(drop=True), valid_df.reset_index(drop=True), test_df.reset_index(drop=True))
