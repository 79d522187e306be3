"""Stage 4, serving: the FastAPI app through its ASGI interface, and the ModelServer's swap rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.app import create_app
from handlers.deps import build_deps
from loopml.registry.registry import Registry
from loopml.serving.feedback import record_feedback
from loopml.serving.prediction_log import PredictionLog
from loopml.serving.server import ModelServer
from loopml.settings import Settings
from loopml.storage import MemoryStore
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG
from tests.support.api import KEY, MAX_ROWS, settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _predict(client, body, headers=KEY, **kw):
    return client.post("/predict", json=body, headers=headers, **kw)


# routes -----------------------------------------------------------------------------------------
def test_health_needs_no_key(client, served):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model_version": served, "problem": None}


def test_predict_single_row(client, served, sample_rows):
    r = _predict(client, {"row": sample_rows[0]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == served and body["served_as"] == "onnx"
    [p] = body["predictions"]
    assert p["id"].startswith("p-")
    assert p["prediction"] in (0.0, 1.0)
    assert set(p["probabilities"]) == {"0.0", "1.0"}
    assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert p["prediction"] == float(max(p["probabilities"], key=p["probabilities"].get))


def test_predict_matches_the_model(client, served, sample_rows, linear_trained, spec):
    """The API answers what the scikit-learn pipeline answers (ONNX parity, end to end)."""
    import pandas as pd

    from loopml.data import prepare

    r = _predict(client, {"rows": sample_rows[:MAX_ROWS]})
    got = [p["probabilities"]["1.0"] for p in r.json()["predictions"]]
    X = prepare(pd.DataFrame(sample_rows[:MAX_ROWS]), spec)
    expected = linear_trained.winner.pipeline.predict_proba(X)[:, 1]
    assert got == pytest.approx(expected.tolist(), abs=1e-4)


def test_predict_batch_gives_one_id_per_row(client, served, sample_rows):
    r = _predict(client, {"rows": sample_rows[:MAX_ROWS]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == MAX_ROWS
    assert len({p["id"] for p in preds}) == MAX_ROWS
    assert all(p["probabilities"] is not None for p in preds)


def test_null_is_an_accepted_unknown_value(client, served, sample_rows):
    row = {**sample_rows[0], "car_value": None, "salary_range": None}
    assert _predict(client, {"row": row}).status_code == 200


def _detail(r) -> list[dict[str, Any]]:
    assert r.status_code == 422, r.text
    return r.json()["detail"]


def test_invalid_value_is_422_naming_the_field(client, served, sample_rows):
    rows = [sample_rows[0], {**sample_rows[1], "loan_length": "long"}]
    [err] = _detail(_predict(client, {"rows": rows}))
    assert err["loc"] == ["body", "rows", 1, "loan_length"]
    assert "finite number" in err["msg"]


def test_missing_feature_is_422(client, served, sample_rows):
    row = dict(sample_rows[0])
    row.pop("driver_tenure")
    [err] = _detail(_predict(client, {"row": row}))
    assert err["loc"][-1] == "driver_tenure" and "missing feature" in err["msg"]


def test_unknown_feature_is_422(client, served, sample_rows):
    [err] = _detail(_predict(client, {"row": {**sample_rows[0], "colour": "red"}}))
    assert err["loc"][-1] == "colour" and "unknown feature" in err["msg"]


@pytest.mark.parametrize("body", [{"rows": []}, {"rows": "x"}, {"something": 1}, [1, 2]])
def test_wrong_body_shape_is_422(client, served, body):
    assert _predict(client, body).status_code == 422


def test_no_champion_is_503_saying_so(client):
    r = _predict(client, {"row": {"a": 1}})
    assert r.status_code == 503
    assert "no champion" in r.json()["detail"]
    health = client.get("/health").json()
    assert health["model_version"] is None and "no champion" in health["problem"]


def test_missing_key_is_401(client, served, sample_rows):
    r = _predict(client, {"row": sample_rows[0]}, headers={})
    assert r.status_code == 401 and "x-api-key" in r.json()["detail"]
    assert client.get("/model").status_code == 401
    assert client.post("/feedback", json={"labels": [{"id": "p", "label": 1}]}).status_code == 401


def test_wrong_key_is_403(client, served, sample_rows):
    r = _predict(client, {"row": sample_rows[0]}, headers={"x-api-key": "guess"})
    assert r.status_code == 403


def test_no_key_configured_means_open(store, served, sample_rows):
    with TestClient(create_app(build_deps(settings(api_key_sha256=None), store))) as c:
        assert _predict(c, {"row": sample_rows[0]}, headers={}).status_code == 200


def test_batch_over_the_cap_is_413(client, served, sample_rows):
    rows = (sample_rows * 2)[: MAX_ROWS + 1]
    r = _predict(client, {"rows": rows})
    assert r.status_code == 413 and str(MAX_ROWS) in r.json()["detail"]


def test_body_over_the_byte_cap_is_413(store, served, sample_rows):
    with TestClient(create_app(build_deps(settings(max_body_bytes=1024), store))) as c:
        big = {"row": sample_rows[0], "padding": "x" * 2000}
        assert _predict(c, big).status_code == 413


def test_wrong_content_type_is_415(client, served, sample_rows):
    r = client.post("/predict", content=json.dumps({"row": sample_rows[0]}),
                    headers={**KEY, "content-type": "text/plain"})
    assert r.status_code == 415


def test_content_type_with_charset_is_fine(client, served, sample_rows):
    r = client.post("/predict", content=json.dumps({"row": sample_rows[0]}),
                    headers={**KEY, "content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_malformed_json_is_400(client, served):
    r = client.post("/predict", content=b'{"row": {"car_value": 1,', headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]


def test_model_metadata(client, served):
    r = client.get("/model", headers=KEY)
    assert r.status_code == 200
    meta = r.json()
    assert meta["version"] == served and meta["served_as"] == "onnx"
    assert meta["family"] == "linear" and meta["task"] == "binary"
    assert [f["name"] for f in meta["schema"]["features"]][0] == "car_value"
    assert meta["lineage"]["metaflow_run"].startswith("TrainFlow/")
    assert "model.onnx" in meta["artifacts"] and meta["gates"]["passes"] is True


def test_feedback_for_logged_and_unknown_ids(client, deps, store, served, sample_rows):
    ids = [p["id"] for p in _predict(client, {"rows": sample_rows[:2]}).json()["predictions"]]
    bogus = ["p-20200101-0000000000000000", "not-an-id"]
    r = client.post("/feedback", json={"labels": [{"id": ids[0], "label": 1.0}, {"id": ids[1], "label": 0.0},
                                                  *({"id": b, "label": 1} for b in bogus)]}, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "unknown_ids": bogus}
    [key] = store.list(FEEDBACK + "/")
    saved = store.get_json(key)
    assert saved["labels"] == [{"id": ids[0], "label": 1.0}, {"id": ids[1], "label": 0.0}]


def test_feedback_with_only_unknown_ids_writes_nothing(client, store, served):
    r = client.post("/feedback", json={"labels": [{"id": "p-20200101-abc", "label": 1}]}, headers=KEY)
    assert r.json() == {"accepted": 0, "unknown_ids": ["p-20200101-abc"]}
    assert store.list(FEEDBACK + "/") == []


def test_feedback_body_is_validated(client, served):
    assert client.post("/feedback", json={"labels": []}, headers=KEY).status_code == 422
    assert client.post("/feedback", json={"labels": [{"label": 1}]}, headers=KEY).status_code == 422


def test_prediction_log_is_written_on_flush(client, deps, store, served, sample_rows):
    body = _predict(client, {"rows": sample_rows[:3]}).json()
    assert store.list(PREDICTION_LOG + "/") == []  # buffered, off the request path
    assert deps.log.flush() == 3
    keys = store.list(PREDICTION_LOG + "/")
    assert keys and all(k.startswith(f"{PREDICTION_LOG}/date=") and k.endswith(".jsonl") for k in keys)
    records = [json.loads(line) for k in keys for line in store.get(k).splitlines()]
    assert [r["id"] for r in records] == [p["id"] for p in body["predictions"]]
    for rec, row, pred in zip(records, sample_rows[:3], body["predictions"], strict=True):
        assert rec["features"] == row
        assert rec["version"] == served
        assert rec["prediction"] == pred["prediction"] and rec["probabilities"] == pred["probabilities"]
        assert rec["time"][:10] == keys[0].split("date=")[1][:10]


def test_known_ids_found_from_the_store_by_another_process(store, served, sample_rows, deps):
    with TestClient(create_app(deps)) as c:
        ids = [p["id"] for p in _predict(c, {"rows": sample_rows[:2]}).json()["predictions"]]
    # the app's shutdown flushed the log; a fresh process knows nothing in memory
    other = PredictionLog(store, flush_seconds=3600)
    result = record_feedback(store, other, [{"id": ids[1], "label": 1}, {"id": "p-19990101-x", "label": 0}])
    assert result == {"accepted": 1, "unknown_ids": ["p-19990101-x"]}


# ModelServer --------------------------------------------------------------------------------------
@pytest.fixture
def registry(store) -> Registry:
    return Registry(store)


def test_new_champion_is_picked_up_only_after_the_ttl(linear_trained, store, registry):
    clock = FakeClock()
    server = ModelServer(registry, ttl=60, clock=clock)
    v1 = linear_trained.register(store)
    assert server.current().version == v1
    v2 = linear_trained.register(store)
    assert registry.alias() == v2
    clock.advance(59)
    assert server.current().version == v1
    clock.advance(1)
    assert server.current().version == v2


def test_tampered_new_champion_is_refused_and_the_old_one_keeps_serving(linear_trained, store, registry, sample_rows):
    clock = FakeClock()
    server = ModelServer(registry, ttl=10, clock=clock)
    v1 = linear_trained.register(store)
    assert server.current().version == v1
    v2 = linear_trained.register(store, promote=False)
    key = registry.get(v2).meta["artifacts"]["model.onnx"]["key"]
    store.put(key, store.get(key)[:-10] + b"0123456789")
    registry.promote(v2, why="tampered after registration", force=True)  # promote itself refuses it
    clock.advance(10)
    model = server.current()
    assert model.version == v1
    assert "refused version 2" in server.last_error and "SHA-256" in server.last_error
    assert len(model.predictor.predict(sample_rows[:2]).predictions) == 2
    clock.advance(10)  # refused once, refused for good: no reload loop
    assert server.current().version == v1
    v3 = linear_trained.register(store)
    clock.advance(10)
    assert server.current().version == v3 and server.last_error is None


@pytest.mark.parametrize("missing", ["model.onnx", "version.json"])
def test_a_champion_briefly_unreadable_is_retried_not_refused(linear_trained, store, registry, missing):
    """An outage is not a bad model: the version is tried again after the ttl, unlike a tampered one. The
    artifact briefly unreadable (KeyNotFound, like an S3 blip), or version.json missing (a restore in
    progress): either way the version is served once it comes back."""
    clock = FakeClock()
    server = ModelServer(registry, ttl=10, clock=clock)
    v1 = linear_trained.register(store)
    assert server.current().version == v1
    v2 = linear_trained.register(store)
    key = (registry.get(v2).meta["artifacts"]["model.onnx"]["key"] if missing == "model.onnx"
           else f"registry/versions/{v2:04d}/version.json")
    saved = store.objects.pop(key)
    clock.advance(10)
    assert server.current().version == v1 and "could not load version 2" in server.last_error
    store.objects[key] = saved
    clock.advance(10)
    assert server.current().version == v2 and server.last_error is None


def test_tampered_only_champion_means_503(linear_trained, store, registry, deps):
    v = linear_trained.register(store, promote=False)
    key = registry.get(v).meta["artifacts"]["model.onnx"]["key"]
    store.put(key, b"not a model")
    registry.promote(v, why="x", force=True)  # promote itself refuses it
    with TestClient(create_app(deps)) as c:
        r = c.post("/predict", json={"row": {}}, headers=KEY)
    assert r.status_code == 503 and "refused version" in r.json()["detail"]


def test_a_request_holding_the_old_model_keeps_it_after_the_swap(linear_trained, store, registry, sample_rows):
    clock = FakeClock()
    server = ModelServer(registry, ttl=5, clock=clock)
    linear_trained.register(store)
    held = server.current()
    linear_trained.register(store)
    clock.advance(5)
    new = server.current()
    assert (held.version, new.version) == (1, 2)
    assert held.predictor is not new.predictor
    out = held.predictor.predict(sample_rows[:3])
    assert len(out.predictions) == 3 and held.version == 1


def test_store_errors_keep_the_current_model(linear_trained, store, registry):
    class Flaky(MemoryStore):
        broken = False

        def get(self, key):
            if self.broken:
                raise ConnectionError("store unreachable")
            return super().get(key)

    flaky = Flaky()
    flaky.objects = store.objects
    clock = FakeClock()
    server = ModelServer(Registry(flaky), ttl=1, clock=clock)
    linear_trained.register(store)
    assert server.current().version == 1
    flaky.broken = True
    clock.advance(1)
    assert server.current().version == 1
    assert "store unreachable" in server.last_error


def test_flush_if_due_writes_only_records_that_waited_long_enough():
    from loopml.serving.prediction_log import PredictionLog
    from loopml.storage import MemoryStore

    store = MemoryStore()
    now = [1000.0]
    plog = PredictionLog(store, flush_seconds=60, clock=lambda: now[0])
    plog.add([{"id": "p-20260101-a", "time": "2026-01-01T00:00:00"}])
    now[0] += 59
    assert plog.flush_if_due() == 0 and store.list("prediction-log/") == []
    now[0] += 1
    assert plog.flush_if_due() == 1
    assert len(store.list("prediction-log/date=2026-01-01/")) == 1
    assert plog.flush_if_due() == 0  # nothing left


def test_empty_environment_variables_mean_unset(monkeypatch):
    """sam local leaves template parameters it cannot resolve as empty strings."""
    monkeypatch.setenv("LOOPML_CANDIDATE_WEIGHT", "")
    monkeypatch.setenv("LOOPML_GATEWAY_API_KEYS", "")
    s = Settings()
    assert s.candidate_weight == 0.1 and s.gateway_api_keys is False
