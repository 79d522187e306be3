"""A canary that sees application errors (issue 9 §7): EMF metrics per request and per version, and
gradual model promotion with automatic rollback of a worse candidate."""

from __future__ import annotations

import json
import random

import pytest
from fastapi.testclient import TestClient

from handlers.app import create_app
from handlers.deps import build_deps
from handlers.observability import emf_record
from loopml.registry.registry import Registry
from loopml.serving.rollout import CANDIDATE, Rollout
from loopml.serving.server import ModelServer
from loopml.storage import MemoryStore
from tests.support.api import KEY, settings


@pytest.fixture
def store(linear_trained) -> MemoryStore:
    s = MemoryStore("rollout")
    linear_trained.register(s)  # v1: champion
    v2 = linear_trained.register(s, promote=False)
    Registry(s).set_alias(CANDIDATE, v2, why="test rollout")
    return s


def rollout_for(store: MemoryStore, **kw) -> Rollout:
    registry = Registry(store)
    return Rollout(ModelServer(registry, ttl=0), ModelServer(registry, CANDIDATE, ttl=0, required=False), registry,
                   rng=random.Random(7), **{"weight": 0.5, "min_requests": 20, **kw})


def test_the_candidate_gets_its_share(store):
    r = rollout_for(store, weight=0.25)
    champ = r.champion.current()
    picks = [r.pick(champ)[1].version for _ in range(2000)]
    assert 0.2 < picks.count(2) / len(picks) < 0.3


def test_a_candidate_with_more_errors_is_rolled_back_through_the_registry(store):
    r = rollout_for(store)
    for _ in range(50):
        r.record(1, error=False, latency_ms=1.0)
    for i in range(20):
        r.record(2, error=i % 4 == 0, latency_ms=1.0)  # 25% errors
    assert 2 in r.rolled_back and "error rate 25.00%" in r.rolled_back[2]
    registry = Registry(store)
    assert registry.alias(CANDIDATE) is None
    last = registry.ledger(CANDIDATE)[-1]
    assert (last["action"], last["who"], last["from"]) == ("rollback", "loopml-api", 2)
    assert "automatic rollback of candidate version 2" in last["why"]
    champ = r.champion.current()
    assert {r.pick(champ)[0] for _ in range(100)} == {"champion"}


def test_a_slower_candidate_is_rolled_back(store):
    r = rollout_for(store)
    for _ in range(50):
        r.record(1, error=False, latency_ms=1.0)
    for _ in range(20):
        r.record(2, error=False, latency_ms=5.0)
    assert "median latency" in r.rolled_back[2]


def test_a_candidate_as_good_as_the_champion_stays(store):
    r = rollout_for(store)
    for _ in range(100):
        r.record(1, error=False, latency_ms=1.0)
        r.record(2, error=False, latency_ms=1.2)
    assert r.rolled_back == {} and Registry(store).alias(CANDIDATE) == 2


def test_a_candidate_equal_to_the_champion_gets_no_separate_share(store):
    Registry(store).promote(2, why="finished the rollout")
    r = rollout_for(store, weight=1.0)
    assert r.candidate_model() is None


def test_through_the_app_a_failing_candidate_is_rolled_back_and_the_champion_answers(store, sample_rows, monkeypatch):
    deps = build_deps(settings(candidate_weight=1.0, rollout_min_requests=5), store)
    with TestClient(create_app(deps)) as c:
        cand = deps.rollout.candidate.current()
        assert cand.version == 2

        def broken(rows):
            raise RuntimeError("candidate runtime failure")

        monkeypatch.setattr(cand.predictor, "predict", broken)
        answers = [c.post("/predict", json={"row": sample_rows[0]}, headers=KEY) for _ in range(8)]
        assert [a.status_code for a in answers[:5]] == [422] * 5
        assert all(a.status_code == 200 and a.json()["model_version"] == 1 for a in answers[5:])
        assert Registry(store).alias(CANDIDATE) is None
        health = c.get("/health", headers=KEY).json()
        assert "2" in {str(k) for k in health["rollout"]["rolled_back"]}


def test_predictions_log_their_variant(store, sample_rows):
    deps = build_deps(settings(candidate_weight=1.0), store)
    with TestClient(create_app(deps)) as c:
        body = c.post("/predict", json={"row": sample_rows[0]}, headers=KEY).json()
    assert body["model_version"] == 2
    [key] = store.list("prediction-log/")
    assert json.loads(store.get(key))["variant"] == "candidate"


# --- EMF ------------------------------------------------------------------------------------------
def test_emf_record_has_both_dimension_sets():
    doc = emf_record(status=503, latency_ms=2.5, function_version="7", model_version=3, variant="candidate",
                     model_error=False, path="/predict")
    [cw] = doc["_aws"]["CloudWatchMetrics"]
    assert cw["Namespace"] == "loopml"
    assert sorted(map(sorted, cw["Dimensions"])) == [["FunctionVersion", "service"], ["ModelVersion", "Variant", "service"]]
    assert {m["Name"] for m in cw["Metrics"]} == {"Requests", "Http4xx", "Http5xx", "ModelErrors", "Latency"}
    assert doc["Http5xx"] == [1.0] and doc["Http4xx"] == [0.0] and doc["ModelVersion"] == "3"


def test_every_request_emits_one_emf_line_and_one_json_log(store, sample_rows, capsys):
    deps = build_deps(settings(observability="json", candidate_weight=0), store)
    with TestClient(create_app(deps)) as c:
        capsys.readouterr()
        c.post("/predict", json={"row": sample_rows[0]}, headers=KEY)
        c.post("/predict", json={"row": {**sample_rows[0], "car_value": "x"}}, headers=KEY)
        c.get("/health")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [d for d in lines if "_aws" in d]
    logs = [d for d in lines if d.get("message") == "request"]
    assert [(d["path"], d["status"], d["Http4xx"], d["Http5xx"]) for d in emf] == [
        ("/predict", 200, [0.0], [0.0]), ("/predict", 422, [1.0], [0.0]), ("/health", 200, [0.0], [0.0])]
    assert emf[0]["ModelVersion"] == "1" and emf[0]["Variant"] == "champion" and emf[2]["ModelVersion"] == "none"
    assert [d["status"] for d in logs] == [200, 422, 200] and logs[0]["service"] == "loopml-api"
