"""The records the API stores: a logged prediction (one line of a prediction-log object) and a feedback
object (labels posted to ``/feedback``).

Their writers stay on plain dicts: the prediction log is written for every request, and building a
model per prediction costs the warm p50. Readers validate (:func:`loopml.storage.records.read_lines`,
:func:`loopml.storage.records.read`), and a unit test checks that what the writers write validates.
"""

from __future__ import annotations

from typing import Any

from loopml.storage.records import Record

__all__ = ["LoggedPrediction", "FeedbackLabel", "FeedbackRecord"]


class LoggedPrediction(Record):
    """One answered prediction: its id, when, the model version, the row and what the model said.
    ``latency_ms`` and ``request_rows`` (the request's) feed monitoring's latency and cost."""

    id: str
    time: str
    version: int
    features: dict[str, Any]
    prediction: Any
    probabilities: dict[str, float | None] | None = None
    latency_ms: float | None = None
    request_rows: int = 1


class FeedbackLabel(Record):
    """The true label of one prediction, as the model's own class value (a number for regression)."""

    id: str
    label: Any


class FeedbackRecord(Record):
    """One accepted ``/feedback`` request: when it arrived and its labels (a later label for an id wins)."""

    received_at: str | None = None  # the writer always sets it; no reader needs it
    labels: list[FeedbackLabel]
