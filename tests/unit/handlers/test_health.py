"""Honest health (issue 9 §6): 503 "degraded" when nothing can be served, the refused champion named
with its reason, no store URI for anyone without the key, HEAD /health, and the training gate that
keeps a model the Lambda package cannot load from being promoted."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from fastapi.testclient import TestClient

from handlers.app import create_app
from handlers.deps import build_deps
from loopml.modeling.gates import gates
from loopml.modeling.register import register_version
from loopml.registry.registry import CHAMPION, Registry
from loopml.spec import parse_spec
from loopml.storage import MemoryStore
from tests.support.api import KEY, settings


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("secret-bucket-name")


def client_for(store: MemoryStore) -> TestClient:
    return TestClient(create_app(build_deps(settings(), store)))


def test_no_model_is_503_degraded_without_the_store_uri(store):
    with client_for(store) as c:
        r = c.get("/health")
        assert r.status_code == 503
        assert r.json() == {"status": "degraded", "model_version": None, "problem": "no champion in the registry"}
        assert store.uri not in r.text
        head = c.head("/health")
        assert head.status_code == 503 and head.content == b""
        operator = c.get("/health", headers=KEY).json()
        assert operator["store"] == store.uri and store.uri in operator["detail"]


def test_head_health_is_200_when_serving(store, linear_trained):
    linear_trained.register(store)
    with client_for(store) as c:
        assert c.head("/health").status_code == 200
        assert c.get("/health").json() == {"status": "ok", "model_version": 1, "problem": None}


def test_a_refused_newest_champion_is_reported_while_the_old_one_serves(store, linear_trained):
    linear_trained.register(store)
    registry = Registry(store)
    with client_for(store) as c:
        assert c.get("/health").json()["status"] == "ok"
        v2 = linear_trained.register(store, promote=False)
        key = registry.get(v2).meta["artifacts"]["model.onnx"]["key"]
        store.put(key, store.get(key) + b"tampered")
        registry.promote(v2, why="test", force=True)  # the registry refuses it otherwise
        r = c.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "warning" and body["model_version"] == 1
        assert "refused version 2" in body["problem"] and "SHA-256" in body["problem"]
        operator = c.get("/health", headers=KEY).json()
        assert operator["champion_version"] == 2 and "2" in {str(k) for k in operator["refused_versions"]}


def test_a_champion_without_onnx_is_refused_with_the_reason_where_joblib_is_missing(store, linear_trained, monkeypatch):
    """What the Lambda package sees: no joblib. The version is refused for good, and health says why."""
    registry = Registry(store)
    v1 = linear_trained.register(store, promote=False)
    meta = {k: v for k, v in registry.get(v1).meta.items() if k not in ("version", "created_at", "artifacts", "reference")}
    v2 = registry.register({"model.joblib": registry.artifact(registry.get(v1), "model.joblib")}, meta).number
    registry.promote(v2, why="joblib only")
    monkeypatch.setitem(sys.modules, "joblib", None)  # import joblib -> ImportError, as in the package
    with client_for(store) as c:
        r = c.get("/health")
        assert r.status_code == 503
        assert "no ONNX artifact" in r.json()["problem"] and store.uri not in r.text
        assert c.post("/predict", json={"row": {}}, headers=KEY).status_code == 503


# --- the training gate ----------------------------------------------------------------------------
def test_gate_fails_a_model_without_onnx_for_lambda(make_raw):
    spec = parse_spec(make_raw())
    assert spec.constraints.serving == "lambda"
    value = spec.metric.threshold + 0.01
    g = gates(spec, {spec.metric.name: value}, None, onnx_error="unsupported estimator")
    assert g["passes"] is False and "no ONNX artifact (unsupported estimator)" in g["reasons"][0]
    anywhere = parse_spec(make_raw(constraints={"serving": "any"}))
    assert gates(anywhere, {spec.metric.name: value}, None, onnx_error="unsupported estimator")["passes"] is True


def test_training_never_promotes_a_model_the_lambda_package_cannot_load(linear_trained):
    store = MemoryStore()
    r = linear_trained
    no_onnx = dataclasses.replace(r.winner, onnx=dataclasses.replace(r.winner.onnx, model=None, error="skl2onnx: unsupported"))
    number, decision = register_version(Registry(store), r.spec, r.data, no_onnx, r.selection, r.evaluation, r.classes,
                                        "TrainFlow/1/register/1")
    assert decision["promoted"] is False and Registry(store).alias(CHAMPION) is None
    assert any("no ONNX artifact" in reason for reason in decision["gates"]["reasons"])
