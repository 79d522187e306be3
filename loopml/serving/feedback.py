"""Feedback: labels posted for prediction ids, validated against the model's schema and stored for
monitoring (realized performance) and retraining."""

from __future__ import annotations

import itertools
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopml.serving.prediction_log import PredictionLog
from loopml.serving.predictor import Schema, shown
from loopml.storage import Store, layout


# --- feedback --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelError:
    """A label refused: its position in the request, its id, and why."""

    index: int
    id: str
    message: str


def _label_value(label: Any, schema: Schema) -> tuple[Any, str | None]:
    """The label as the model's own class value (or a float for regression), or a problem."""
    if schema.task == "regression":
        if isinstance(label, bool) or not isinstance(label, int | float):
            return None, f"expected a number, got {shown(label)}"
        try:
            value = float(label)
        except OverflowError:
            return None, f"expected a finite number, got {shown(label)}"
        return (value, None) if math.isfinite(value) else (None, f"expected a finite number, got {shown(label)}")
    classes = schema.classes or ()
    for c in classes:
        # 1 == 1.0 == True in Python: match the kind too, so "1.0", true or 1 never stand in for another class
        same_kind = (isinstance(c, bool) == isinstance(label, bool)) and (isinstance(c, str) == isinstance(label, str))
        if same_kind and c == label:
            return c, None
    return None, f"{shown(label)} is not one of the model's classes {', '.join(shown(c, 30) for c in classes[:20])}"


def check_labels(labels: list[Any], schema: Schema) -> tuple[list[dict[str, Any]], list[LabelError]]:
    """Validated {id, label} items (label as the model's class value), or the problems naming each id."""
    out, errors = [], []
    for n, item in enumerate(labels):
        if not isinstance(item, dict) or set(item) != {"id", "label"}:
            errors.append(LabelError(n, "", "expected an object with exactly the fields id and label"))
            continue
        pid = item["id"]
        if not isinstance(pid, str) or not 1 <= len(pid) <= 64 or not pid.isprintable() or not pid.isascii():
            errors.append(LabelError(n, shown(pid, 70), "id must be the prediction id (a short ASCII string)"))
            continue
        value, problem = _label_value(item["label"], schema)
        if problem:
            errors.append(LabelError(n, pid, problem))
            continue
        out.append({"id": pid, "label": value})
    return out, errors


_feedback_instance = uuid.uuid4().hex[:8]


_feedback_seq = itertools.count()


def feedback_key(now: datetime) -> str:
    """Keys sort by arrival (time, then this process's counter), and readers apply labels in key
    order: the latest label for an id wins, the same way on every read."""
    return layout.feedback_key(now, _feedback_instance, next(_feedback_seq))


def record_feedback(store: Store, plog: PredictionLog, labels: list[dict[str, Any]],
                    now: datetime | None = None) -> dict[str, Any]:
    """Store validated labels for known prediction ids; unknown ids are reported back, not dropped
    silently. Within one request a later label for the same id replaces an earlier one."""
    latest: dict[str, Any] = {}
    for item in labels:
        latest.pop(item["id"], None)  # re-insert: the id takes the position of its last label
        latest[item["id"]] = item["label"]
    known = plog.known_ids(latest)
    accepted = [{"id": i, "label": v} for i, v in latest.items() if i in known]
    unknown = [i for i in latest if i not in known]
    if accepted:
        now = now or datetime.now(UTC)
        body = {"received_at": now.isoformat(), "labels": accepted}
        store.put(feedback_key(now), json.dumps(body, default=str).encode())
    return {"accepted": len(accepted), "unknown_ids": unknown}
