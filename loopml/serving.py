"""Stage 4, serving: the champion held in memory, swapped atomically, the prediction log and feedback.

No pandas, scikit-learn or pyarrow is imported here when the champion has an ONNX artifact.

Prediction ids say where their record is logged: ``p-<YYYYMMDD>-<instance><seq>``, where
``instance`` (8 hex) names the serving process and ``seq`` (10 hex) counts its predictions. The
log writes each flush as ``prediction-log/date=<day>/<instance>-<block>-<first>-<last>.jsonl`` with
``block = seq // BLOCK``, so finding an id lists one small prefix and reads one file: the cost of a
feedback request grows with the labels it sends, not with the day's traffic.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopml.predictor import OnnxPredictor, Outputs, Predictor, Schema, SklearnPredictor, shown
from loopml.registry import IntegrityError, MissingVersion, ModelVersion, Registry, RegistryError
from loopml.storage import Store
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG, partition_key

log = logging.getLogger("loopml.serving")

__all__ = ["LoadedModel", "ModelServer", "PredictionLog", "record_feedback", "load_predictor", "LabelError",
           "UnservableError", "parse_prediction_id", "prediction_records", "check_labels"]

BLOCK = 1024  # predictions per id block: a lookup lists at most the flushes of one block


@dataclass(frozen=True)
class LoadedModel:
    version: int
    meta: dict[str, Any]
    predictor: Predictor


class UnservableError(RuntimeError):
    """This deployment can never serve the version (e.g. no ONNX artifact and no scikit-learn)."""


def load_predictor(registry: Registry, version: ModelVersion) -> Predictor:
    """ONNX when the version has it (no pickle on the serving path); joblib otherwise. SHA-256 first."""
    schema = Schema.from_dict(version.meta["schema"])
    if version.has_onnx:
        return OnnxPredictor(registry.artifact(version, "model.onnx"), schema)
    try:
        import io

        import joblib  # only for models that did not convert to ONNX
    except ImportError:  # the Lambda package ships onnxruntime only
        raise UnservableError(f"version {version.number} has no ONNX artifact and this deployment has no "
                              "scikit-learn/joblib to load model.joblib") from None
    return SklearnPredictor(joblib.load(io.BytesIO(registry.artifact(version, "model.joblib"))), schema)


class ModelServer:
    """Holds the served model. ``current()`` re-reads the alias at most every ``ttl`` seconds and swaps
    the reference in one assignment, so a request that already holds a model finishes on it.
    A version that fails to load (for instance its SHA-256 check) is refused and the old one stays.

    Two messages describe what is wrong: ``problem`` is safe for anyone (no store URI, no bucket),
    ``last_error`` is the full story for operators and the logs."""

    def __init__(self, registry: Registry, alias: str = "champion", ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, required: bool = True) -> None:
        self.registry, self.alias, self.ttl, self.clock = registry, alias, ttl, clock
        self.required = required  # False for the candidate alias: its absence is the normal case
        self._model: LoadedModel | None = None
        self._checked_at: float | None = None
        self._refused: dict[int, str] = {}  # one entry per bad version: bounded by the registry, not traffic
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.problem: str | None = None
        self.target: int | None = None  # the version the alias names, as last read

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

    @property
    def refused(self) -> dict[int, str]:
        return dict(self._refused)

    def _fail(self, public: str, detail: str, level: int = logging.ERROR) -> None:
        self.problem, self.last_error = public, detail
        log.log(level, detail)

    def _public(self, err: Exception) -> str:
        return str(err).replace(self.registry.store.uri, "the store")

    def _refresh(self) -> None:
        try:
            number = self.registry.alias(self.alias)
        except Exception as err:  # store unreachable: keep serving what we have
            self._fail(f"could not read the {self.alias} alias from the store ({type(err).__name__})",
                       f"could not read the {self.alias} alias: {err}", logging.WARNING)
            return
        self.target = number
        if number is None and not self.required:
            self.problem = self.last_error = None
            self._model = None
            return
        if number is None:
            self._fail(f"no {self.alias} in the registry", f"no {self.alias} in the registry at {self.registry.store.uri}",
                       logging.WARNING)
            return
        if self._model is not None and self._model.version == number:
            self.problem = self.last_error = None
            return
        if number in self._refused:
            return
        try:
            version = self.registry.get(number)
            model = LoadedModel(number, version.meta, load_predictor(self.registry, version))
        except MissingVersion as err:  # not there (yet, or restored later): retry after the ttl, never refuse
            self._fail(f"could not load version {number} (missing)", f"could not load version {number}: {err}")
            return
        except (IntegrityError, RegistryError, UnservableError) as err:  # the version itself is bad: never retry
            self._refused[number] = self._public(err)
            self._fail(f"refused version {number}: {self._public(err)}", f"refused version {number}: {err}")
            return
        except Exception as err:  # the store or the runtime failed this time: keep serving, retry after the ttl
            self._fail(f"could not load version {number} ({type(err).__name__})",
                       f"could not load version {number}: {type(err).__name__}: {err}")
            return
        self._model = model  # the swap: one reference assignment
        self.problem = self.last_error = None
        log.info("serving version %s (%s)", number, model.predictor.kind)


# --- the prediction log --------------------------------------------------------------------------
def parse_prediction_id(prediction_id: str) -> tuple[str, str, int] | None:
    """(date YYYY-MM-DD, instance, seq) of an id this module made, None for anything else."""
    parts = prediction_id.split("-")
    if len(parts) != 3 or parts[0] != "p" or len(parts[1]) != 8 or not parts[1].isdigit():
        return None
    tail = parts[2]
    if len(tail) != 18 or any(c not in "0123456789abcdef" for c in tail):
        return None
    d = parts[1]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}", tail[:8], int(tail[8:], 16)


def _file_name(instance: str, seqs: list[int]) -> str:
    return f"{instance}-{seqs[0] // BLOCK:08x}-{seqs[0]:010x}-{seqs[-1]:010x}.jsonl"


def _block_prefix(date: str, instance: str, seq: int) -> str:
    return f"{PREDICTION_LOG}/date={date}/{instance}-{seq // BLOCK:08x}-"


def _file_range(key: str) -> tuple[int, int] | None:
    parts = key.rsplit("/", 1)[-1].removesuffix(".jsonl").split("-")
    try:
        return int(parts[2], 16), int(parts[3], 16)
    except (IndexError, ValueError):
        return None


class PredictionLog:
    """Buffers prediction records and writes them as JSON-lines objects off the request path.

    * A background thread flushes every ``flush_seconds`` or ``flush_rows``; ``flush()`` writes
      what is buffered now and first waits for a flush already in flight (shutdown, the end of a
      Lambda invocation and benches count on that: nothing answered is missing afterwards).
    * An id is "known" from the moment ``add`` returns: it is in the buffer, in the batch being
      written, or in the store; ``known_ids`` looks in that order.
    * Memory is bounded: at most ``max_buffer`` records wait; while the store is down the oldest are
      dropped and counted in ``dropped`` (their feedback will be reported unknown)."""

    def __init__(self, store: Store, flush_seconds: float = 5.0, flush_rows: int = 500,
                 max_buffer: int = 100_000, clock: Callable[[], float] = time.monotonic,
                 instance: str | None = None) -> None:
        self.store, self.flush_seconds, self.flush_rows, self.max_buffer, self.clock = (
            store, flush_seconds, flush_rows, max_buffer, clock)
        self.instance = instance or uuid.uuid4().hex[:8]
        self.dropped = 0
        self.written = 0
        self._seq = itertools.count()
        self._pending: dict[str, dict[str, Any]] = {}  # id -> record, insertion (= seq) ordered
        self._inflight: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()         # guards _pending/_inflight/_oldest/dropped
        self._flush_lock = threading.Lock()   # one flush at a time; flush() waits for the one in flight
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._oldest: float | None = None  # clock time of the oldest buffered record

    def new_ids(self, n: int, now: datetime) -> list[str]:
        day = f"{now:%Y%m%d}"
        with self._lock:  # ids of one request are consecutive, and seq order is record order
            seqs = [next(self._seq) for _ in range(n)]
        return [f"p-{day}-{self.instance}{s:010x}" for s in seqs]

    @property
    def buffered(self) -> int:
        return len(self._pending) + len(self._inflight)

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self._pending:
                self._oldest = self.clock()
            for r in records:
                self._pending[r["id"]] = r
            self._drop_over_cap()
            full = len(self._pending) >= self.flush_rows
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        if full:
            self._wake.set()

    def _drop_over_cap(self) -> None:
        over = len(self._pending) + len(self._inflight) - self.max_buffer
        if over <= 0:
            return
        for key in list(itertools.islice(self._pending, min(over, len(self._pending)))):
            del self._pending[key]
        self.dropped += over
        log.error("prediction log buffer full (%d records): dropped the %d oldest (%d dropped in all)",
                  self.max_buffer, over, self.dropped)

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
        """Write everything buffered; returns the number of records written by this call."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._inflight = batch
                self._oldest = None
            if not batch:
                return 0
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for r in batch.values():
                parsed = parse_prediction_id(str(r["id"]))
                block = f"{parsed[1]}-{parsed[2] // BLOCK:08x}" if parsed else "other"
                groups.setdefault((str(r["time"])[:10], block), []).append(r)
            done = 0
            try:
                for (date, block), records in groups.items():
                    self.store.put(partition_key(PREDICTION_LOG, date, self._name(block, records)),
                                   "\n".join(json.dumps(r, default=str) for r in records).encode())
                    for r in records:
                        del batch[r["id"]]
                    done += len(records)
            except Exception:
                with self._lock:  # what was not written goes back in front, under the same cap
                    self._pending = {**batch, **self._pending}
                    self._inflight = {}
                    self._oldest = self._oldest or self.clock()
                    self._drop_over_cap()
                self.written += done
                raise
            with self._lock:
                self._inflight = {}
            self.written += done
            return done

    @staticmethod
    def _name(block: str, records: list[dict[str, Any]]) -> str:
        parsed = [p for r in records if (p := parse_prediction_id(str(r["id"])))]
        if block == "other" or len(parsed) != len(records):
            return f"other-{uuid.uuid4().hex}.jsonl"
        return _file_name(parsed[0][1], [p[2] for p in parsed])

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Which ids were logged: the buffer and the batch in flight, then one block of the log per id."""
        ids = set(ids)
        with self._lock:
            found = {i for i in ids if i in self._pending or i in self._inflight}
        wanted: dict[str, set[int]] = {}  # block prefix -> seqs wanted there
        for i in ids - found:
            parsed = parse_prediction_id(i)
            if parsed:
                wanted.setdefault(_block_prefix(*parsed), set()).add(parsed[2])
        for prefix, seqs in wanted.items():
            for key in self.store.list(prefix):
                rng = _file_range(key)
                if rng and any(rng[0] <= s <= rng[1] for s in seqs):
                    found.update(i for line in self.store.get(key).splitlines()
                                 if (i := json.loads(line)["id"]) in ids)
        return found


def prediction_records(ids: list[str], rows: list[dict[str, Any]], out: Outputs, version: int, now: str,
                       **extra: Any) -> list[dict[str, Any]]:
    """One log record per row; ``extra`` (e.g. ``latency_ms`` of the request and ``request_rows``, which
    monitoring turns into latency per chunk and cost) is copied into each."""
    probs = out.probabilities or [None] * len(rows)
    return [{"id": i, "time": now, "version": version, "features": r, "prediction": p, "probabilities": pr, **extra}
            for i, r, p, pr in zip(ids, rows, out.predictions, probs, strict=True)]


# --- feedback --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelError:
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
    name = f"{now:%Y%m%dT%H%M%S%fZ}-{_feedback_instance}-{next(_feedback_seq):010d}.json"
    return partition_key(FEEDBACK, f"{now:%Y-%m-%d}", name)


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
