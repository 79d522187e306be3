"""Stage 4, serving: the champion held in memory, swapped atomically, and the prediction log.

No pandas, scikit-learn or pyarrow is imported here when the champion has an ONNX artifact.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopml.predictor import OnnxPredictor, Outputs, Predictor, Schema, SklearnPredictor
from loopml.registry import IntegrityError, ModelVersion, Registry, RegistryError
from loopml.storage import Store
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG, partition_key

log = logging.getLogger("loopml.serving")

__all__ = ["LoadedModel", "ModelServer", "PredictionLog", "record_feedback", "new_prediction_id", "load_predictor"]


@dataclass(frozen=True)
class LoadedModel:
    version: int
    meta: dict[str, Any]
    predictor: Predictor


def load_predictor(registry: Registry, version: ModelVersion) -> Predictor:
    """ONNX when the version has it (no pickle on the serving path); joblib otherwise. SHA-256 first."""
    schema = Schema.from_dict(version.meta["schema"])
    if version.has_onnx:
        return OnnxPredictor(registry.artifact(version, "model.onnx"), schema)
    import io

    import joblib  # only for models that did not convert to ONNX

    return SklearnPredictor(joblib.load(io.BytesIO(registry.artifact(version, "model.joblib"))), schema)


class ModelServer:
    """Holds the served model. ``current()`` re-reads the alias at most every ``ttl`` seconds and swaps
    the reference in one assignment, so a request that already holds a model finishes on it.
    A version that fails to load (for instance its SHA-256 check) is refused and the old one stays."""

    def __init__(self, registry: Registry, alias: str = "champion", ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.alias, self.ttl, self.clock = registry, alias, ttl, clock
        self._model: LoadedModel | None = None
        self._checked_at: float | None = None
        self._refused: dict[int, str] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def current(self) -> LoadedModel | None:
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.ttl:
            with self._lock:
                if self._checked_at is None or now - self._checked_at >= self.ttl:
                    self._refresh()
                    self._checked_at = now
        return self._model

    def fresh(self) -> bool:
        """True while ``current()`` would answer from memory, without reading the store."""
        checked = self._checked_at
        return checked is not None and self.clock() - checked < self.ttl

    def _refresh(self) -> None:
        try:
            number = self.registry.alias(self.alias)
        except Exception as err:  # store unreachable: keep serving what we have
            self.last_error = f"could not read the {self.alias} alias: {err}"
            log.warning(self.last_error)
            return
        if number is None:
            self.last_error = f"no {self.alias} in the registry at {self.registry.store.uri}"
            return
        if self._model is not None and self._model.version == number:
            return
        if number in self._refused:
            return
        try:
            version = self.registry.get(number)
            model = LoadedModel(number, version.meta, load_predictor(self.registry, version))
        except (IntegrityError, RegistryError) as err:  # the version itself is bad: never try it again
            self._refused[number] = str(err)
            self.last_error = f"refused version {number}: {err}"
            log.error(self.last_error)
            return
        except Exception as err:  # the store or the runtime failed this time: keep serving, retry after the ttl
            self.last_error = f"could not load version {number}: {type(err).__name__}: {err}"
            log.error(self.last_error)
            return
        self._model = model  # the swap: one reference assignment
        self.last_error = None
        log.info("serving version %s (%s)", number, model.predictor.kind)


def new_prediction_id(now: datetime | None = None) -> str:
    """Ids carry their date, so feedback finds the right log partition without an index."""
    now = now or datetime.now(UTC)
    return f"p-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"


def _date_of(prediction_id: str) -> str | None:
    parts = prediction_id.split("-")
    if len(parts) != 3 or parts[0] != "p" or len(parts[1]) != 8 or not parts[1].isdigit():
        return None
    d = parts[1]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


@dataclass
class PredictionLog:
    """Buffers prediction records and writes them as JSON-lines objects off the request path.

    A background thread flushes every ``flush_seconds`` or ``flush_rows``; ``flush()`` writes what is
    buffered now (called on shutdown and before feedback looks ids up)."""

    store: Store
    flush_seconds: float = 5.0
    flush_rows: int = 500
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _known: set[str] = field(default_factory=set)

    clock: Callable[[], float] = time.monotonic
    _oldest: float | None = None  # clock time of the oldest buffered record

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self._buffer:
                self._oldest = self.clock()
            self._buffer.extend(records)
            full = len(self._buffer) >= self.flush_rows
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as err:  # never let logging take the API down; retry next round
                log.error("prediction log flush failed: %s", err)

    def flush_if_due(self) -> int:
        """Flush now when the oldest record has waited ``flush_seconds``: called after each Lambda
        invocation, because a frozen or reclaimed container never runs the background thread again."""
        oldest = self._oldest
        if oldest is None or self.clock() - oldest < self.flush_seconds:
            return 0
        return self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._oldest = None
        if not batch:
            return 0
        by_date: dict[str, list[dict[str, Any]]] = {}
        for r in batch:
            by_date.setdefault(r["time"][:10], []).append(r)
        try:
            for date, records in by_date.items():
                body = "\n".join(json.dumps(r, default=str) for r in records).encode()
                self.store.put(partition_key(PREDICTION_LOG, date, f"{uuid.uuid4().hex}.jsonl"), body)
        except Exception:
            with self._lock:  # put them back so nothing is lost
                self._buffer[:0] = batch
                self._oldest = self._oldest or self.clock()
            raise
        self._known.update(r["id"] for r in batch)
        return len(batch)

    def known_ids(self, ids: list[str]) -> set[str]:
        """Which ids were logged (this process's recent ids, then the log partitions of their dates)."""
        self.flush()
        found = {i for i in ids if i in self._known}
        dates = {d for i in ids if i not in found and (d := _date_of(i))}
        for date in sorted(dates):
            for key in self.store.list(f"{PREDICTION_LOG}/date={date}/"):
                for line in self.store.get(key).splitlines():
                    pid = json.loads(line)["id"]
                    self._known.add(pid)
        return {i for i in ids if i in self._known}


def prediction_records(ids: list[str], rows: list[dict[str, Any]], out: Outputs, version: int, now: str,
                       **extra: Any) -> list[dict[str, Any]]:
    """One log record per row; ``extra`` (e.g. ``latency_ms`` of the request and ``request_rows``, which
    monitoring turns into latency per chunk and cost) is copied into each."""
    probs = out.probabilities or [None] * len(rows)
    return [{"id": i, "time": now, "version": version, "features": r, "prediction": p, "probabilities": pr, **extra}
            for i, r, p, pr in zip(ids, rows, out.predictions, probs, strict=True)]


def record_feedback(store: Store, plog: PredictionLog, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Store labels for known prediction ids; unknown ids are reported back, not dropped silently."""
    ids = [str(item["id"]) for item in labels]
    known = plog.known_ids(ids)
    accepted = [{"id": str(item["id"]), "label": item["label"]} for item in labels if str(item["id"]) in known]
    unknown = [i for i in ids if i not in known]
    if accepted:
        now = datetime.now(UTC)
        body = {"received_at": now.isoformat(), "labels": accepted}
        store.put(partition_key(FEEDBACK, f"{now:%Y-%m-%d}", f"{uuid.uuid4().hex}.json"), json.dumps(body, default=str).encode())
    return {"accepted": len(accepted), "unknown_ids": unknown}
