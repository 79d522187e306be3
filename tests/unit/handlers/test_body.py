"""No 5xx from any input: hostile bodies get a 4xx that names the problem (issue 9 §3).

Each case is the README's row with one thing changed, sent through the real app (ASGI) or the real
Lambda entry (Mangum); a property-based fuzz then varies the values of the real feature names.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from mangum import Mangum

from handlers.app import create_app
from handlers.body import BodyError, bad_base64, parse_json
from handlers.deps import build_deps
from loopml.serving.predictor import FLOAT32_MAX
from tests.support.api import KEY, MAX_ROWS, settings


@pytest.fixture
def client(served: int, client: TestClient) -> TestClient:
    """The API (tests/unit/conftest.py), started with the champion already registered."""
    return client


def post_raw(client: TestClient, path: str, raw: bytes | str, headers: dict[str, str] = KEY):
    return client.post(path, content=raw, headers={**headers, "content-type": "application/json"})


def row_text(row: dict[str, Any], name: str, literal: str) -> str:
    """The row's JSON with one value replaced by a literal JSON text (e.g. a 5000-digit integer)."""
    return json.dumps({"row": {**row, name: "__X__"}}).replace('"__X__"', literal)


# --- the parse itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, says", [
    (b"1" * 5000, None),                          # an int Python refuses to build: read as a float (inf)
    (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b'{"a": Infinity}', "Infinity is not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"a": ', "not valid JSON"),
])
def test_parse_json_never_raises_anything_but_body_error(raw, says):
    if says is None:
        assert parse_json(raw) == float("inf")
        return
    with pytest.raises(BodyError, match=says):
        parse_json(raw)


def test_short_integers_stay_integers():
    assert parse_json(b'{"id": 12, "big": -123456789012345678}') == {"id": 12, "big": -123456789012345678}


# --- authenticated requests that used to answer 500 ---------------------------------------------
def test_a_401_digit_integer_is_422_naming_the_field(client, sample_rows):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "car_value", "9" * 401))
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"][-1] == "car_value" and "finite number" in err["msg"]


def test_an_integer_over_4300_digits_is_422_not_500(client, sample_rows):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "loan_length", "7" * 5000))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "loan_length"


def test_a_1000_level_nested_list_is_400(client, sample_rows):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "car_value", "[" * 1000 + "]" * 1000))
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]


def test_moderate_nesting_is_422_with_a_short_message(client, sample_rows):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "salary_range", "[" * 500 + "]" * 500))
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "expected a string, got a JSON array"


def test_a_lone_surrogate_fails_its_row_by_name_not_the_batch(client, sample_rows):
    bad = {**sample_rows[1], "salary_range": "\ud800"}
    raw = json.dumps({"rows": [sample_rows[0], bad, sample_rows[2]]})  # ensure_ascii: "\ud800" escape
    r = post_raw(client, "/predict", raw)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "rows", 1, "salary_range"] and "surrogate" in err["msg"]


def test_float32_overflow_is_422(client, sample_rows):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "driver_tenure", "3.4e39"))
    assert r.status_code == 422 and "float32" in r.json()["detail"][0]["msg"]
    ok = post_raw(client, "/predict", row_text(sample_rows[0], "driver_tenure", repr(FLOAT32_MAX)))
    assert ok.status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(client, sample_rows, literal):
    r = post_raw(client, "/predict", row_text(sample_rows[0], "car_value", literal))
    assert r.status_code in (400, 422), r.text


def test_a_model_runtime_failure_names_the_row(client, deps, sample_rows, monkeypatch):
    """Belt and braces: if the runtime still refuses a row, the batch answer names it (422), not 500."""
    model = deps.server.current()
    real = type(model.predictor).predict

    def picky(self, rows):
        if any(r["size_of_downpayment"] == "13%" for r in rows):
            raise RuntimeError("runtime refused the input")
        return real(self, rows)

    monkeypatch.setattr(type(model.predictor), "predict", picky)
    rows = [sample_rows[0], {**sample_rows[1], "size_of_downpayment": "13%"}]
    r = client.post("/predict", json={"rows": rows}, headers=KEY)
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "rows", 1], "msg": "the model could not score this row (RuntimeError)"}]


# --- the categorical rule -------------------------------------------------------------------------
def test_bool_naming_a_known_category_is_accepted(client, sample_rows):
    row = {**sample_rows[0], "repaid_loan_on_prev_car": True}
    same = {**sample_rows[0], "repaid_loan_on_prev_car": "True"}
    a = client.post("/predict", json={"row": row}, headers=KEY).json()["predictions"][0]
    b = client.post("/predict", json={"row": same}, headers=KEY).json()["predictions"][0]
    assert a["probabilities"] == b["probabilities"]


@pytest.mark.parametrize("value", [1.0, 40, False])
def test_number_or_bool_that_names_no_category_is_422(client, sample_rows, value):
    r = client.post("/predict", json={"row": {**sample_rows[0], "size_of_downpayment": value}}, headers=KEY)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"][-1] == "size_of_downpayment" and "not a known category" in err["msg"] and "'40%'" in err["msg"]


def test_an_unseen_string_category_is_served(client, sample_rows):
    r = client.post("/predict", json={"row": {**sample_rows[0], "size_of_downpayment": "99%"}}, headers=KEY)
    assert r.status_code == 200


# --- the key before the body; a size limit on every route ----------------------------------------
def _asgi_call(app, path: str, headers: dict[str, str], body: bytes, chunk: int = 65536) -> tuple[int, int]:
    """(status, bytes of the body the app read): drives the ASGI app with a streamed body."""
    sent = {"n": 0}
    pieces = [body[i: i + chunk] for i in range(0, len(body), chunk)] or [b""]
    status = {}

    async def receive():
        if sent["n"] < len(pieces):
            piece = pieces[sent["n"]]
            sent["n"] += 1
            return {"type": "http.request", "body": piece, "more_body": sent["n"] < len(pieces)}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status["code"] = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    return status["code"], sum(len(p) for p in pieces[: sent["n"]])


@pytest.mark.parametrize("path", ["/feedback", "/predict"])
def test_a_keyless_66_mb_body_is_refused_before_it_is_read(deps, served, path):
    app = create_app(deps)
    body = b'{"labels": [' + b'{"id": "p", "label": 1},' * 2_800_000 + b'{"id": "p", "label": 1}]}'
    assert len(body) > 66_000_000
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    status, read = _asgi_call(app, path, headers, body)
    assert status == 401 and read == 0
    status, read = _asgi_call(app, path, {**headers, "x-api-key": "guess"}, body)
    assert status == 403 and read == 0


@pytest.mark.parametrize("path", ["/feedback", "/predict"])
def test_a_keyed_oversize_body_is_413_without_reading_it(deps, served, path):
    app = create_app(deps)
    body = b"x" * 7_000_000
    status, read = _asgi_call(app, path, {**KEY, "content-type": "application/json", "content-length": str(len(body))}, body)
    assert status == 413 and read == 0


def test_a_body_without_content_length_is_cut_at_the_limit(store, served):
    app = create_app(build_deps(settings(max_body_bytes=100_000), store))
    body = b"[" + b"1," * 200_000 + b"1]"
    status, read = _asgi_call(app, "/predict", {**KEY, "content-type": "application/json"}, body, chunk=10_000)
    assert status == 413 and read <= 110_000


# --- Lambda: invalid base64 -----------------------------------------------------------------------
def test_invalid_base64_is_400_before_mangum(deps, served):
    event = {"httpMethod": "POST", "path": "/predict", "body": "%%%not base64%%%", "isBase64Encoded": True,
             "headers": {**KEY, "content-type": "application/json"}}
    r = bad_base64(event)
    assert r["statusCode"] == 400 and "base64" in json.loads(r["body"])["detail"]
    good = {**event, "body": base64.b64encode(b'{"row": {}}').decode()}
    assert bad_base64(good) is None
    with pytest.raises(binascii.Error):  # what the guard is for: Mangum itself raises on it
        Mangum(create_app(deps), lifespan="off")(_rest(event), _Ctx())


def _rest(e: dict[str, Any]) -> dict[str, Any]:
    return {"resource": "/{proxy+}", "path": e["path"], "httpMethod": e["httpMethod"], "headers": e["headers"],
            "multiValueHeaders": {k: [v] for k, v in e["headers"].items()}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "requestContext": {"stage": "Prod", "identity": {"sourceIp": "1.2.3.4"},
            "path": "/Prod" + e["path"], "httpMethod": e["httpMethod"], "resourcePath": "/{proxy+}"},
            "body": e["body"], "isBase64Encoded": e["isBase64Encoded"], "pathParameters": None, "stageVariables": None}


class _Ctx:
    aws_request_id = "t"
    function_name = "f"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# --- property-based: the real feature names, any JSON value --------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400) | st.floats()
    | st.text(alphabet=st.characters(codec=None), max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


def _dumps(v: Any) -> str:
    return json.dumps(v, allow_nan=True)  # NaN/Infinity as Python writes them: the API must refuse them


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_any_value_for_any_real_feature_is_never_a_5xx(client, sample_rows, data):
    base = sample_rows[data.draw(st.integers(0, len(sample_rows) - 1))]
    names = list(base)
    changed = data.draw(st.dictionaries(st.sampled_from(names), json_values, min_size=1, max_size=3))
    extra = data.draw(st.dictionaries(st.text(max_size=8), json_values, max_size=1))
    dropped = data.draw(st.sets(st.sampled_from(names), max_size=1))
    row = {k: v for k, v in {**base, **changed, **extra}.items() if k not in dropped}
    body = {"rows": [base, row]} if data.draw(st.booleans()) else {"row": row}
    r = post_raw(client, "/predict", _dumps(body))
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text)
    if r.status_code == 422:
        assert all(e["msg"] for e in r.json()["detail"])
    if r.status_code == 200:
        assert len(r.json()["predictions"]) == len(body.get("rows", [1]))


@hsettings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(labels=st.lists(st.fixed_dictionaries({"id": json_values, "label": json_values}), min_size=1, max_size=4))
def test_any_feedback_is_never_a_5xx(client, labels):
    r = post_raw(client, "/feedback", _dumps({"labels": labels}))
    assert r.status_code in (200, 400, 422), (r.status_code, r.text)


def test_batch_cap_still_holds(client, sample_rows):
    r = client.post("/predict", json={"rows": (sample_rows * 2)[: MAX_ROWS + 1]}, headers=KEY)
    assert r.status_code == 413
