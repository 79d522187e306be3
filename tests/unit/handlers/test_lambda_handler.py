"""The Lambda entry point driven with real API Gateway events (REST v1 proxy and HTTP API v2), through
Mangum, with S3 side effects on moto's in-process mock."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from mangum import Mangum

from handlers.app import create_app
from handlers.deps import ApiDeps, build_deps
from loopml.registry.registry import CHAMPION, Registry
from loopml.settings import Settings
from loopml.storage.layout import FEEDBACK, PREDICTION_LOG
from loopml.storage.s3 import S3Store

API_KEY = "lambda-key"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
MAX_ROWS = 4
ACCOUNT = "123456789012"


class Context:
    """The attributes of a Lambda context object that anything might read."""

    function_name = "loopml-api"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:loopml-api"
    memory_limit_in_mb = 1024
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    log_group_name = "/aws/lambda/loopml-api"
    log_stream_name = "2024/01/01/[$LATEST]abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _body(body: Any, b64: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    raw = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    if b64:
        return base64.b64encode(raw).decode(), True
    return raw.decode(), False


def rest_event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
               b64: bool = False, stage: str = "Prod") -> dict[str, Any]:
    """An API Gateway REST API (payload v1) Lambda proxy integration event."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "X-Forwarded-Proto": "https",
               "X-Forwarded-Port": "443", "User-Agent": "pytest", **(headers or {})}
    text, is_b64 = _body(body, b64)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "abc123", "resourceId": "r1", "resourcePath": "/{proxy+}",
            "httpMethod": method, "path": f"/{stage}{path}", "stage": stage, "protocol": "HTTP/1.1",
            "requestId": "req-1", "requestTime": "01/Jan/2024:00:00:00 +0000", "requestTimeEpoch": 1704067200000,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest", "accessKey": None, "caller": None,
                         "user": None, "userArn": None, "apiKey": None},
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def http_event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
               b64: bool = False) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2.0) event: headers are lower-case, one value each."""
    headers = {"host": "xyz789.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https",
               "x-forwarded-port": "443", "user-agent": "pytest",
               **{k.lower(): v for k, v in (headers or {}).items()}}
    text, is_b64 = _body(body, b64)
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "xyz789", "domainName": headers["host"], "domainPrefix": "xyz789",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "pytest"},
            "requestId": "req-2", "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2024:00:00:00 +0000", "timeEpoch": 1704067200000,
        },
        "isBase64Encoded": is_b64,
    }
    if text is not None:
        event["body"] = text
    return event


EVENTS = {"rest_v1": rest_event, "http_v2": http_event}
JSON = {"Content-Type": "application/json"}
KEY = {"x-api-key": API_KEY, **JSON}


def answer(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


@pytest.fixture(params=list(EVENTS))
def event(request) -> Callable[..., dict[str, Any]]:
    return EVENTS[request.param]


@pytest.fixture
def s3_store(s3_bucket) -> S3Store:
    return S3Store(f"s3://{s3_bucket}/store")


@pytest.fixture
def deps(s3_store) -> ApiDeps:
    settings = Settings(store=s3_store.uri, api_key_sha256=API_KEY_SHA256, max_batch_rows=MAX_ROWS,
                        model_ttl_seconds=0, log_flush_seconds=3600, log_flush_rows=10_000)
    return build_deps(settings, s3_store)


@pytest.fixture
def handler(deps, s3_store, linear_trained) -> Mangum:
    linear_trained.register(s3_store)
    return Mangum(create_app(deps), lifespan="off")


def test_predict_ok(handler, event, sample_rows):
    r = handler(event("POST", "/predict", {"rows": sample_rows[:2]}, KEY), Context())
    assert r["statusCode"] == 200, r
    body = answer(r)
    assert body["model_version"] == 1 and body["served_as"] == "onnx"
    assert len(body["predictions"]) == 2 and all(p["id"].startswith("p-") for p in body["predictions"])


def test_health_without_key(handler, event):
    r = handler(event("GET", "/health"), Context())
    assert r["statusCode"] == 200 and answer(r)["model_version"] == 1


def test_base64_encoded_body(handler, event, sample_rows):
    r = handler(event("POST", "/predict", {"row": sample_rows[0]}, KEY, b64=True), Context())
    assert r["statusCode"] == 200, r
    assert len(answer(r)["predictions"]) == 1


def test_malformed_body_is_400(handler, event):
    r = handler(event("POST", "/predict", '{"row": {', KEY), Context())
    assert r["statusCode"] == 400 and "not valid JSON" in answer(r)["detail"]


def test_wrong_content_type_is_415(handler, event, sample_rows):
    headers = {"x-api-key": API_KEY, "Content-Type": "text/csv"}
    r = handler(event("POST", "/predict", json.dumps({"row": sample_rows[0]}), headers), Context())
    assert r["statusCode"] == 415


def test_oversize_batch_is_413(handler, event, sample_rows):
    r = handler(event("POST", "/predict", {"rows": sample_rows[: MAX_ROWS + 1]}, KEY), Context())
    assert r["statusCode"] == 413


def test_bad_key_is_403(handler, event, sample_rows):
    r = handler(event("POST", "/predict", {"row": sample_rows[0]}, {"x-api-key": "nope", **JSON}), Context())
    assert r["statusCode"] == 403


def test_missing_key_is_401(handler, event, sample_rows):
    r = handler(event("POST", "/predict", {"row": sample_rows[0]}, JSON), Context())
    assert r["statusCode"] == 401


def test_invalid_row_is_422_naming_the_field(handler, event, sample_rows):
    row = {**sample_rows[0], "driver_tenure": "a while"}
    r = handler(event("POST", "/predict", {"row": row}, KEY), Context())
    assert r["statusCode"] == 422 and answer(r)["detail"][0]["loc"][-1] == "driver_tenure"


def test_prediction_log_lands_in_s3(handler, deps, event, s3_bucket, sample_rows):
    r = handler(event("POST", "/predict", {"rows": sample_rows[:3]}, KEY), Context())
    ids = [p["id"] for p in answer(r)["predictions"]]
    assert deps.log.flush() == 3
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"store/{PREDICTION_LOG}/")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith(f"store/{PREDICTION_LOG}/date=")
    lines = s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [rec["id"] for rec in records] == ids
    assert all(rec["version"] == 1 and rec["features"] in sample_rows for rec in records)


# the module Lambda actually runs: handlers.api, configured from LOOPML_* variables -----------------
@pytest.fixture
def lambda_module(s3_store, linear_trained, monkeypatch) -> Iterator[Any]:
    """handlers.api imported fresh (its init phase reads the env) against a moto S3 store with v1 and v2."""
    linear_trained.register(s3_store)
    linear_trained.register(s3_store)
    monkeypatch.setenv("LOOPML_STORE", s3_store.uri)
    monkeypatch.setenv("LOOPML_API_KEY_SHA256", API_KEY_SHA256)
    monkeypatch.setenv("LOOPML_MODEL_TTL_SECONDS", "0")
    monkeypatch.setenv("LOOPML_LOG_FLUSH_SECONDS", "3600")
    sys.modules.pop("handlers.api", None)
    module = importlib.import_module("handlers.api")
    yield module
    module.deps.log.flush()
    sys.modules.pop("handlers.api", None)


def test_lambda_module_round_trip_predict_feedback_rollback(lambda_module, event, s3_store, s3_bucket, sample_rows):
    api, ctx = lambda_module, Context()
    assert api.deps.store.uri == s3_store.uri and api.deps.server.ttl == 0

    first = api.handler(event("POST", "/predict", {"row": sample_rows[0]}, KEY), ctx)
    assert first["statusCode"] == 200, first
    first = answer(first)
    assert first["model_version"] == 2
    pid = first["predictions"][0]["id"]

    fb = api.handler(event("POST", "/feedback", {"labels": [{"id": pid, "label": 1.0},
                                                          {"id": "p-20200101-feedfeedfeedfeed", "label": 0.0}]}, KEY), ctx)
    assert fb["statusCode"] == 200, fb
    assert answer(fb) == {"accepted": 1, "unknown_ids": ["p-20200101-feedfeedfeedfeed"]}

    registry = Registry(S3Store(s3_store.uri))
    entry = registry.rollback(why="v2 misbehaves in production", who="oncall")
    assert (entry["from"], entry["to"]) == (2, 1)

    after = api.handler(event("POST", "/predict", {"row": sample_rows[0]}, KEY), ctx)
    assert after["statusCode"] == 200, after
    assert answer(after)["model_version"] == 1
    assert api.deps.log.flush() == 2  # feedback found the first id in the buffer: no early flush

    s3 = boto3.client("s3")

    def objects(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"store/{prefix}/").get("Contents", [])]

    logged = [json.loads(line) for k in objects(PREDICTION_LOG)
              for line in s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read().splitlines()]
    assert sorted(r["version"] for r in logged) == [1, 2]
    assert pid in {r["id"] for r in logged}
    [fb_key] = objects(FEEDBACK)
    labels = json.loads(s3.get_object(Bucket=s3_bucket, Key=fb_key)["Body"].read())["labels"]
    assert labels == [{"id": pid, "label": 1.0}]
    assert [e["action"] for e in registry.ledger(CHAMPION)] == ["promote", "promote", "rollback"]
    assert api.handler(event("GET", "/health"), ctx)["statusCode"] == 200


def test_event_builders_match_the_gateway_mangum_infers():
    """Guard the builders: a REST v1 event must be read as API Gateway, an HTTP API event as v2."""
    app = Mangum(create_app(build_deps(Settings(store="memory://x"))), lifespan="off")
    assert type(app.infer(rest_event("GET", "/health"), Context())).__name__ == "APIGateway"
    assert type(app.infer(http_event("GET", "/health"), Context())).__name__ == "HTTPGateway"


def test_invalid_base64_is_400_through_the_lambda_entry(lambda_module, event):
    e = event("POST", "/predict", None, KEY)
    e.update(body="%%% not base64 %%%", isBase64Encoded=True)
    r = lambda_module.handler(e, Context())
    assert r["statusCode"] == 400 and "base64" in answer(r)["detail"]


def test_pretraffic_invoke_is_a_real_prediction_through_the_whole_app(lambda_module):
    r = lambda_module.handler({"loopml": "pretraffic"}, Context())
    assert r["statusCode"] == 200, r
    body = answer(r)
    assert body["model_version"] == 2 and len(body["predictions"]) == 2


def test_a_forged_internal_marker_is_refused(lambda_module, event, sample_rows):
    e = rest_event("POST", "/predict", {"row": sample_rows[0]}, JSON)
    e["requestContext"]["loopml_internal"] = "0" * 32
    assert lambda_module.handler(e, Context())["statusCode"] == 401


@pytest.mark.parametrize("trust, key_id, status", [(True, "k-123", 200), (True, None, 403), (False, "k-123", 403)])
def test_usage_plan_requests_are_trusted_only_when_configured(s3_store, linear_trained, sample_rows, trust, key_id, status):
    linear_trained.register(s3_store)
    settings = Settings(store=s3_store.uri, api_key_sha256=API_KEY_SHA256, gateway_api_keys=trust)
    app = Mangum(create_app(build_deps(settings, s3_store)), lifespan="off")
    e = rest_event("POST", "/predict", {"row": sample_rows[0]}, {"x-api-key": "a-client-key", **JSON})
    e["requestContext"]["identity"]["apiKeyId"] = key_id
    r = app(e, Context())
    assert r["statusCode"] == status, r


def test_a_binary_body_that_is_not_utf8_is_400(handler, event):
    """With BinaryMediaTypes */* the gateway sends every body base64-encoded, bytes as they came."""
    r = handler(event("POST", "/predict", b"\xff\xfe{}", KEY, b64=True), Context())
    assert r["statusCode"] == 400 and "not UTF-8" in answer(r)["detail"]
