"""The smoke test: one real prediction through a deployed API, built from ``GET /model``'s schema."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from loopml.release.records import ReleaseError
from loopml.runtime.net import Unreachable, request_json


# smoke --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeResult:
    url: str
    model_version: int | None
    row: dict[str, Any]
    answer: dict[str, Any] | None
    problems: list[str]

    @property
    def passes(self) -> bool:
        return not self.problems


def smoke_row(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid row for the model's schema: 1.0 for a numeric feature, a plain string for a categorical
    one (the feature pipeline maps an unseen level to its missing bucket, as it must in production)."""
    features = schema.get("features") if isinstance(schema, dict) else None
    if not features:
        raise ReleaseError("GET /model has no schema.features: cannot build a prediction")
    return {f["name"]: 1.0 if f.get("type") == "numeric" else "smoke-test" for f in features}


def _http(method: str, url: str, key: str | None, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One request through the shared client; no answer at all is a release problem, named in one line."""
    try:
        return request_json(method, url, body, key=key, timeout=timeout)
    except Unreachable as err:
        raise ReleaseError(str(err)) from None


def smoke(url: str, key: str | None = None, *, expect_version: int | None = None, timeout: float = 30.0,
          wait: float = 0.0, poll: float = 5.0) -> SmokeResult:
    """GET /health, GET /model, then POST /predict one row built from the model's schema; every answer
    is checked (status, the served version, one prediction of a known class with probabilities that
    add up to 1). Problems are collected, not raised: the caller decides (exit 1, roll back).

    ``wait``: a warm API re-reads the alias only after its TTL, so /model is asked again (every
    ``poll`` seconds, up to ``wait``) until it serves ``expect_version``."""
    base = url.rstrip("/")
    problems: list[str] = []
    status, health = _http("GET", f"{base}/health", key, timeout=timeout)
    if status != 200:
        problems.append(f"GET /health answered {status}: {health}")
    deadline = time.monotonic() + wait
    while True:
        status, model = _http("GET", f"{base}/model", key, timeout=timeout)
        served = model.get("version") if isinstance(model, dict) else None
        if expect_version is None or served == expect_version or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if status != 200 or not isinstance(model, dict):
        return SmokeResult(url, None, {}, None, [*problems, f"GET /model answered {status}: {model}"])
    version = model.get("version")
    if expect_version is not None and version != expect_version:
        problems.append(f"the API serves version {version}, expected {expect_version}")
    row = smoke_row(model.get("schema") or {})
    status, answer = _http("POST", f"{base}/predict", key, {"rows": [row]}, timeout=timeout)
    if status != 200 or not isinstance(answer, dict):
        return SmokeResult(url, version, row, None, [*problems, f"POST /predict answered {status}: {answer}"])
    problems += _check_answer(answer, model, version)
    return SmokeResult(url, version, row, answer, problems)


def _check_answer(answer: dict[str, Any], model: dict[str, Any], version: Any) -> list[str]:
    problems = []
    if answer.get("model_version") != version:
        problems.append(f"/predict used version {answer.get('model_version')}, /model says {version}")
    preds = answer.get("predictions")
    if not isinstance(preds, list) or len(preds) != 1:
        return [*problems, f"expected one prediction, got {preds!r}"]
    p = preds[0]
    schema = model.get("schema") or {}
    classes = schema.get("classes")
    if schema.get("task") == "regression":
        if not isinstance(p.get("prediction"), int | float) or not math.isfinite(p["prediction"]):
            problems.append(f"prediction {p.get('prediction')!r} is not a finite number")
    else:
        if classes and p.get("prediction") not in classes:
            problems.append(f"prediction {p.get('prediction')!r} is not one of the classes {classes}")
        probs = p.get("probabilities")
        values = list(probs.values()) if isinstance(probs, dict) else probs
        if not isinstance(values, list) or not values or abs(sum(values) - 1.0) > 1e-3:
            problems.append(f"probabilities {probs!r} do not add up to 1")
    if not p.get("id"):
        problems.append("the prediction has no id (feedback could not be joined to it)")
    return problems
