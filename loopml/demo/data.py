"""The demo's data: NannyML's synthetic car loan set, shipped inside the nannyml package (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

CAR_LOAN_FEATURES = [
    ("car_value", "numeric"), ("salary_range", "categorical"), ("debt_to_income_ratio", "numeric"),
    ("loan_length", "numeric"), ("repaid_loan_on_prev_car", "categorical"),
    ("size_of_downpayment", "categorical"), ("driver_tenure", "numeric"),
]


def car_loan_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training data, new data without labels, late labels by id)."""
    import nannyml

    nannyml.disable_usage_logging()
    reference, analysis, targets = nannyml.load_synthetic_car_loan_dataset()
    drop = ["y_pred", "y_pred_proba"]  # NannyML's own model outputs: loopml trains its own
    return reference.drop(columns=drop), analysis.drop(columns=drop), targets


def car_loan_spec(data_dir: str, threshold: float = 0.9) -> dict[str, Any]:
    """The car loan project as ``project.yaml``'s fields, its data files in ``data_dir``; the metric must
    reach ``threshold`` for a model to pass its gates."""
    return {
        "name": "car_loan",
        "task": "binary",
        "target": "repaid",
        "timestamp": "timestamp",
        "id": "id",
        "features": [{"name": n, "type": t} for n, t in CAR_LOAN_FEATURES],
        "metric": {"name": "roc_auc", "threshold": threshold},
        "data": {"train": f"{data_dir}/train.parquet", "new": f"{data_dir}/new.parquet",
                 "labels": f"{data_dir}/labels.parquet"},
        "constraints": {"p99_latency_ms": 50, "fairness": {"group": "salary_range", "max_gap": 0.05}},
        "candidates": [{"family": "linear", "n_iter": 3}, {"family": "random_forest", "n_iter": 3}],
        "monitoring": {"chunk_period": "M", "max_drifting_features": 2},
        "retraining": {"max_age_days": 180, "consecutive_chunks": 2, "window_days": 300},
    }


def write_car_loan(data_dir: str | Path, labels_until: str | None = None) -> dict[str, Path]:
    """train/new/labels Parquet files; with ``labels_until``, labels only for new rows before that time
    (labels arrive late)."""
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    train, new, labels = car_loan_frames()
    if labels_until is not None:
        labels = new.loc[new["timestamp"] < labels_until, ["id"]].merge(labels, on="id")
    paths = {"train": d / "train.parquet", "new": d / "new.parquet", "labels": d / "labels.parquet"}
    train.to_parquet(paths["train"], index=False)
    new.to_parquet(paths["new"], index=False)
    labels.to_parquet(paths["labels"], index=False)
    return paths
