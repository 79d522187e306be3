"""Which rows a training run learns from: load, validate, then cut the time window (``until``, ``window_days``).

The window is ``(until - window_days, until]``: the newest row at ``until`` is in, and so is every older row
when the spec sets no ``window_days``. A naive ``until`` is read in the data's time zone, an aware one is
converted to it (a naive timestamp column is taken as UTC wall time).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from loopml.data import fingerprint, load_frame, validate
from loopml.spec import ProblemSpec


@dataclass
class TrainingData:
    """The validated training frame with its content fingerprint, where it came from and the time window kept."""

    frame: pd.DataFrame
    fingerprint: str
    uri: str
    window: dict[str, str | None] | None
    until: str | None = None


def as_column_time(moment: str | pd.Timestamp, column: pd.Series) -> pd.Timestamp:
    """``moment`` comparable with ``column``: naive and aware timestamps never meet in a comparison."""
    ts = pd.Timestamp(moment)
    tz = getattr(column.dt, "tz", None)
    if tz is not None:
        return ts.tz_localize(tz) if ts.tzinfo is None else ts.tz_convert(tz)
    return ts if ts.tzinfo is None else ts.tz_convert("UTC").tz_localize(None)


def time_window(df: pd.DataFrame, column: str, until: str | None, window_days: int | None
                ) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """Rows in ``(until - window_days, until]``; no lower bound without ``window_days``."""
    ts = df[column]
    end = as_column_time(until, ts) if until else ts.max()
    start = end - pd.Timedelta(days=window_days) if window_days else None
    keep = ts <= end
    if start is not None:
        keep &= ts > start
    return df[keep].reset_index(drop=True), {"start": None if start is None else str(start), "end": str(end)}


def load_training_data(spec: ProblemSpec, uri: str | None = None, until: str | None = None) -> TrainingData:
    """Load and validate; ``until`` and the spec's retraining window pick the newer data to train on."""
    uri = uri or spec.data.train
    df = validate(load_frame(uri), spec, source=uri)
    window = None
    if spec.timestamp and (until or spec.retraining.window_days):
        df, window = time_window(df, spec.timestamp, until, spec.retraining.window_days)
        if df.empty:
            raise ValueError(f"{uri}: no rows in the training window {window}")
    return TrainingData(df, fingerprint(df), uri, window, until)
