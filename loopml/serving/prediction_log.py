"""The prediction log: every answered prediction, buffered and written off the request path.

Prediction ids say where their record is logged: ``p-<YYYYMMDD>-<instance><seq>``, where
``instance`` (8 hex) names the serving process and ``seq`` (10 hex) counts its predictions. The
log writes each flush as ``prediction-log/date=<day>/<instance>-<block>-<first>-<last>.jsonl`` with
``block = seq // BLOCK``, so finding an id lists one small prefix and reads one file: the cost of a
feedback request grows with the labels it sends, not with the day's traffic."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from loopml.serving.predictor import Outputs
from loopml.serving.records import LoggedPrediction
from loopml.storage import Store
from loopml.storage.layout import (
    prediction_log_key,
    prediction_log_other_key,
    prediction_log_prefix,
    prediction_log_range,
)
from loopml.storage.records import read_lines

log = logging.getLogger("loopml.serving")

BLOCK = 1024  # predictions per id block: a lookup lists at most the flushes of one block


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
                    self.store.put(self._key(date, block, records),
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
    def _key(date: str, block: str, records: list[dict[str, Any]]) -> str:
        parsed = [p for r in records if (p := parse_prediction_id(str(r["id"])))]
        if block == "other" or len(parsed) != len(records):
            return prediction_log_other_key(date)
        instance, first, last = parsed[0][1], parsed[0][2], parsed[-1][2]
        return prediction_log_key(date, instance, first // BLOCK, first, last)

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Which ids were logged: the buffer and the batch in flight, then one block of the log per id."""
        ids = set(ids)
        with self._lock:
            found = {i for i in ids if i in self._pending or i in self._inflight}
        wanted: dict[str, set[int]] = {}  # block prefix -> seqs wanted there
        for i in ids - found:
            parsed = parse_prediction_id(i)
            if parsed:
                day, instance, seq = parsed
                wanted.setdefault(prediction_log_prefix(day, instance, seq // BLOCK), set()).add(seq)
        for prefix, seqs in wanted.items():
            for key in self.store.list(prefix):
                rng = prediction_log_range(key)
                if rng and any(rng[0] <= s <= rng[1] for s in seqs):
                    found.update(r.id for r in read_lines(self.store, key, LoggedPrediction) if r.id in ids)
        return found


def prediction_records(ids: list[str], rows: list[dict[str, Any]], out: Outputs, version: int, now: str,
                       **extra: Any) -> list[dict[str, Any]]:
    """One log record per row; ``extra`` (e.g. ``latency_ms`` of the request and ``request_rows``, which
    monitoring turns into latency per chunk and cost) is copied into each."""
    probs = out.probabilities or [None] * len(rows)
    return [{"id": i, "time": now, "version": version, "features": _capped(r), "prediction": p, "probabilities": pr,
             **extra} for i, r, p, pr in zip(ids, rows, out.predictions, probs, strict=True)]


MAX_LOGGED_TEXT = 256  # characters of one text value kept in the log: an unseen category is still unseen when cut


def _capped(row: dict[str, Any]) -> dict[str, Any]:
    """The row as logged: text values cut to MAX_LOGGED_TEXT, so that one request cannot put megabytes of
    category text into the log (the model saw the whole value; monitoring needs only that it is unseen)."""
    if not any(isinstance(v, str) and len(v) > MAX_LOGGED_TEXT for v in row.values()):
        return row
    return {k: v[:MAX_LOGGED_TEXT] if isinstance(v, str) else v for k, v in row.items()}
