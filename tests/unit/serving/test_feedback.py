"""Feedback that can be trusted (issue 9 §5): labels checked against the model, the latest label
wins, ids known from the moment /predict answers, lookups that do not scan the day, a bounded log
buffer, and a flush that waits for the one in flight."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.app import create_app
from handlers.deps import build_deps
from loopml.serving.feedback import check_labels, record_feedback
from loopml.serving.prediction_log import BLOCK, PredictionLog
from loopml.serving.predictor import Schema
from loopml.storage import MemoryStore
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG
from tests.support.api import KEY, settings


class SlowStore(MemoryStore):
    """A store whose writes take a while (and can be made to fail): the flush races happen here."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__("slow")
        self.delay, self.down = delay, False
        self.calls: list[tuple[str, str]] = []
        self.writing = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        self.calls.append(("put", key))
        self.writing.set()
        time.sleep(self.delay)
        if self.down:
            raise ConnectionError("store down")
        super().put(key, data)

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return super().get(key)

    def list(self, prefix: str = "") -> list[str]:
        self.calls.append(("list", prefix))
        return super().list(prefix)


def logged_ids(store: MemoryStore) -> list[str]:
    return [json.loads(line)["id"] for k in store.list(PREDICTION_LOG + "/") for line in store.get(k).splitlines()]


def records(plog: PredictionLog, n: int, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime(2026, 3, 1, 12, tzinfo=UTC)
    return [{"id": i, "time": now.isoformat(), "version": 1, "features": {}, "prediction": 1.0, "probabilities": None}
            for i in plog.new_ids(n, now)]


# --- labels against the model ---------------------------------------------------------------------
BINARY = Schema("binary", (("x", "numeric"),), (0.0, 1.0))
TEXT = Schema("multiclass", (("x", "numeric"),), ("cat", "dog", "fish"))
REGRESSION = Schema("regression", (("x", "numeric"),))


@pytest.mark.parametrize("schema, label, stored", [
    (BINARY, 1, 1.0), (BINARY, 0.0, 0.0), (TEXT, "dog", "dog"), (REGRESSION, 3, 3.0), (REGRESSION, -2.5, -2.5)])
def test_valid_labels_are_stored_as_the_models_values(schema, label, stored):
    items, errors = check_labels([{"id": "p-1", "label": label}], schema)
    assert errors == [] and items == [{"id": "p-1", "label": stored}]
    assert type(items[0]["label"]) is type(stored)


@pytest.mark.parametrize("schema, label", [
    (BINARY, "1.0"), (BINARY, "banana"), (BINARY, True), (BINARY, 2), (BINARY, None),
    (TEXT, "Dog"), (TEXT, 1), (REGRESSION, "3"), (REGRESSION, True), (REGRESSION, float("inf")), (REGRESSION, 10**400)])
def test_invalid_labels_are_refused_naming_the_id(schema, label):
    items, [err] = check_labels([{"id": "ok", "label": 0.0 if schema is BINARY else "cat" if schema is TEXT else 1},
                                 {"id": "p-bad", "label": label}], schema)
    assert len(items) == 1 and (err.index, err.id) == (1, "p-bad") and err.message


@pytest.fixture
def client(served: int, client: TestClient) -> TestClient:
    """The API (tests/unit/conftest.py), started with the champion already registered."""
    return client


def test_string_labels_get_a_422_naming_the_id_and_nothing_is_stored(client, store, sample_rows):
    [pid] = [p["id"] for p in client.post("/predict", json={"row": sample_rows[0]}, headers=KEY).json()["predictions"]]
    r = client.post("/feedback", json={"labels": [{"id": pid, "label": "1.0"}]}, headers=KEY)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["id"] == pid and "not one of the model's classes" in err["msg"]
    nan = client.post("/feedback", content=f'{{"labels": [{{"id": "{pid}", "label": NaN}}]}}',
                      headers={**KEY, "content-type": "application/json"})
    assert nan.status_code == 400
    assert store.list(FEEDBACK + "/") == []


def test_the_latest_label_wins_in_key_order(client, store, sample_rows):
    """40 labels, then 40 corrections: reading the feedback objects in key order (as monitoring does)
    leaves every correction, every time; within one request the last label for an id wins too."""
    ids = [p["id"] for p in client.post("/predict", json={"rows": sample_rows[:5]}, headers=KEY).json()["predictions"]]
    for round_ in range(8):
        label = float(round_ % 2)
        body = {"labels": [{"id": i, "label": label} for i in ids]}
        assert client.post("/feedback", json=body, headers=KEY).json()["accepted"] == 5
    dup = {"labels": [{"id": ids[0], "label": 0.0}, {"id": ids[0], "label": 1.0}]}
    assert client.post("/feedback", json=dup, headers=KEY).json() == {"accepted": 1, "unknown_ids": []}
    final: dict[str, Any] = {}
    keys = store.list(FEEDBACK + "/")
    assert keys == sorted(keys) and len(keys) == 9
    for key in keys:
        final.update({x["id"]: x["label"] for x in store.get_json(key)["labels"]})
    assert final == {ids[0]: 1.0, **{i: 1.0 for i in ids[1:]}}


def test_feedback_keys_sort_by_arrival_even_within_one_clock_tick():
    store, plog = MemoryStore(), PredictionLog(MemoryStore())
    plog.add(records(plog, 1))
    [pid] = list(plog._pending)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for label in (0.0, 1.0, 0.0, 1.0):
        record_feedback(store, plog, [{"id": pid, "label": label}], now=now)
    labels = [store.get_json(k)["labels"][0]["label"] for k in store.list(FEEDBACK + "/")]
    assert labels == [0.0, 1.0, 0.0, 1.0]


# --- ids known from the moment /predict answers --------------------------------------------------
def test_an_id_in_a_flush_in_flight_is_known():
    store = SlowStore(delay=0.5)
    plog = PredictionLog(store, flush_seconds=3600)
    plog.add(records(plog, 3))
    ids = list(plog._pending)
    flusher = threading.Thread(target=plog.flush)
    flusher.start()
    assert store.writing.wait(5)  # the batch is being written right now
    assert plog.known_ids(ids) == set(ids)
    flusher.join()
    assert plog.known_ids(ids) == set(ids) and logged_ids(store) == ids


def test_ids_are_found_by_another_process_without_scanning_the_day():
    store = SlowStore()
    writer = PredictionLog(store, flush_seconds=3600)
    all_ids = []
    for _ in range(60):  # 60 flushes of 50 predictions: 3000 records in ~60 files over 3 blocks
        batch = records(writer, 50)
        all_ids += [r["id"] for r in batch]
        writer.add(batch)
        writer.flush()
    assert len(store.list(PREDICTION_LOG + "/")) >= 60
    reader = PredictionLog(store)  # a fresh container: nothing in memory
    wanted = [all_ids[5], all_ids[2999], "p-20260301-ffffffff0000000001"]
    store.calls.clear()
    assert reader.known_ids(wanted) == {all_ids[5], all_ids[2999]}
    lists = [c for c in store.calls if c[0] == "list"]
    gets = [c for c in store.calls if c[0] == "get"]
    assert len(lists) == 3 and len(gets) == 2, store.calls  # one block listed per id, one file read per found id
    assert all(f"{writer.instance}-" in prefix or "ffffffff" in prefix for _, prefix in lists)
    assert 2999 // BLOCK == 2


def test_ids_of_a_malformed_shape_are_unknown_without_any_store_read():
    store = SlowStore()
    plog = PredictionLog(store)
    assert plog.known_ids(["p-20200101-abc", "not-an-id", "p-2020-x"]) == set()
    assert store.calls == []


# --- bounded memory -------------------------------------------------------------------------------
def test_the_buffer_is_capped_while_the_store_is_down_and_drops_are_counted():
    store = SlowStore()
    store.down = True
    plog = PredictionLog(store, flush_seconds=3600, max_buffer=100)
    for _ in range(10):
        plog.add(records(plog, 30))
        with pytest.raises(ConnectionError):
            plog.flush()
    assert plog.buffered == 100 and plog.dropped == 200
    store.down = False
    assert plog.flush() == 100 and plog.buffered == 0
    kept = logged_ids(store)
    assert kept == sorted(kept) and len(kept) == 100  # the newest 100, in order


def test_health_reports_dropped_records_to_operators_only(client, deps):
    deps.log.dropped = 7
    assert "log_dropped" not in client.get("/health").json()
    assert client.get("/health", headers=KEY).json()["log_dropped"] == 7


# --- nothing answered is missing ------------------------------------------------------------------
def test_flush_waits_for_the_flush_in_flight():
    store = SlowStore(delay=0.3)
    plog = PredictionLog(store, flush_seconds=3600, flush_rows=10)
    plog.add(records(plog, 10))  # full: wakes the background thread, which starts writing
    assert store.writing.wait(5)
    plog.add(records(plog, 5))
    plog.flush()  # must not return while the background batch is still being written
    assert len(logged_ids(store)) == 15 and plog.buffered == 0


def test_shutdown_logs_every_answered_prediction_under_concurrent_load(store, linear_trained, sample_rows):
    slow = SlowStore(delay=0.02)
    linear_trained.register(slow)
    deps = build_deps(settings(log_flush_seconds=0.01, log_flush_rows=3), slow)
    answered: list[str] = []
    with TestClient(create_app(deps)) as c:
        def client_loop() -> None:
            for i in range(15):
                r = c.post("/predict", json={"rows": sample_rows[i % 3: i % 3 + 2]}, headers=KEY)
                answered.extend(p["id"] for p in r.json()["predictions"])

        threads = [threading.Thread(target=client_loop) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(logged_ids(slow)) == sorted(answered) and len(answered) == 120


def test_ids_carry_their_date_and_sort_in_answer_order():
    plog = PredictionLog(MemoryStore())
    day = datetime(2026, 3, 1, tzinfo=UTC)
    a = plog.new_ids(2, day)
    b = plog.new_ids(1, day + timedelta(days=1))
    assert a[0] < a[1] and a[0].startswith("p-20260301-") and b[0].startswith("p-20260302-")


# --- what the writers write is what the readers validate -------------------------------------------
def test_the_prediction_log_and_feedback_objects_validate_as_their_records():
    from loopml.serving.prediction_log import prediction_records
    from loopml.serving.predictor import Outputs
    from loopml.serving.records import FeedbackRecord, LoggedPrediction
    from loopml.storage.records import read, read_lines

    store = MemoryStore()
    plog = PredictionLog(store, flush_seconds=3600)
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    ids = plog.new_ids(2, now)
    out = Outputs([1.0, 0.0], [{"0.0": 0.2, "1.0": 0.8}, {"0.0": 0.9, "1.0": 0.1}])
    plog.add(prediction_records(ids, [{"x": 1.5, "c": "a"}, {"x": None, "c": True}], out, 3, now.isoformat(),
                                latency_ms=2.5, request_rows=2))
    plog.flush()
    [key] = store.list(PREDICTION_LOG + "/")
    logged = read_lines(store, key, LoggedPrediction)
    assert [r.id for r in logged] == ids and logged[0].latency_ms == 2.5 and logged[1].request_rows == 2
    assert logged[0].probabilities == {"0.0": 0.2, "1.0": 0.8} and logged[1].features == {"x": None, "c": True}

    assert record_feedback(store, plog, [{"id": ids[0], "label": 1.0}], now=now) == {"accepted": 1, "unknown_ids": []}
    [fb] = store.list(FEEDBACK + "/")
    body = read(store, fb, FeedbackRecord)
    assert body.received_at == now.isoformat() and [(x.id, x.label) for x in body.labels] == [(ids[0], 1.0)]


def test_the_log_keeps_at_most_max_logged_text_characters_of_a_text_value():
    from loopml.serving.prediction_log import MAX_LOGGED_TEXT, prediction_records
    from loopml.serving.predictor import Outputs

    huge = "z" * 6_000_000  # a request's worth of unseen category text
    rows = [{"x": 1.0, "c": huge}, {"x": 2.0, "c": "a"}]
    records = prediction_records(["p1", "p2"], rows, Outputs([1.0, 0.0], None), 1, "2026-03-01T00:00:00+00:00")
    assert records[0]["features"] == {"x": 1.0, "c": "z" * MAX_LOGGED_TEXT}
    assert records[1]["features"] is rows[1]  # nothing to cut: the row itself, no copy on the hot path
    assert rows[0]["c"] is huge  # the request's row is left as the model saw it
