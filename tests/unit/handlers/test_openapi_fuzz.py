"""Schemathesis against the app's own OpenAPI document, in process (ASGI), with the API key.

The document describes the champion's real features (names, types, known categories) and classes,
so generated requests reach the model. Positive cases must all be answered without a 5xx and only
with documented statuses and bodies; negative cases (bodies that break the schema) must be refused
with a documented 4xx, never a 5xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from handlers.app import create_app
from handlers.deps import build_deps
from loopml.storage import MemoryStore
from tests.support.api import API_KEY, settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 40}


@pytest.fixture(scope="module")
def api_schema(linear_trained):
    store = MemoryStore("fuzz")
    linear_trained.register(store)
    app = create_app(build_deps(settings(max_batch_rows=20), store))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_the_document_describes_the_real_features(api_schema, spec):
    row = api_schema.raw_schema["components"]["schemas"]["Row"]
    assert sorted(row["properties"]) == sorted(spec.feature_names)
    assert row["additionalProperties"] is False
    known = row["properties"]["size_of_downpayment"]["anyOf"][0]["enum"]
    assert "40%" in known
    assert "x-api-key" in str(api_schema.raw_schema["components"]["securitySchemes"])


def test_the_examples_are_rows_of_the_reference_data_and_are_served(api_schema, linear_trained, spec):
    from fastapi.testclient import TestClient

    post = api_schema.raw_schema["paths"]["/predict"]["post"]
    example = post["requestBody"]["content"]["application/json"]["examples"]["one row"]["value"]["row"]
    first = linear_trained.evaluation.reference[spec.feature_names].iloc[0]
    assert example["car_value"] == float(first["car_value"])
    assert example["repaid_loan_on_prev_car"] == str(first["repaid_loan_on_prev_car"])
    assert set(post["responses"]) == {"200", "400", "401", "403", "413", "415", "422", "503"}
    assert post["security"] == [{"APIKeyHeader": []}]
    with TestClient(api_schema.app) as c:
        assert c.post("/predict", json={"row": example}, headers={"x-api-key": API_KEY}).status_code == 200


@pytest.mark.parametrize("route, mode", [
    ("POST /predict", GenerationMode.POSITIVE), ("POST /predict", GenerationMode.NEGATIVE),
    ("POST /feedback", GenerationMode.POSITIVE), ("POST /feedback", GenerationMode.NEGATIVE),
    ("GET /model", GenerationMode.POSITIVE), ("GET /health", GenerationMode.POSITIVE),
    ("HEAD /health", GenerationMode.POSITIVE)], ids=str)
def test_schemathesis_finds_no_5xx_and_no_undocumented_status(api_schema, route, mode):
    method, path = route.split()
    operation = api_schema[path][method]
    statuses: list[int] = []

    @hsettings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call_and_validate(headers={"x-api-key": API_KEY},
                                          checks=CHECKS if mode.is_positive else CHECKS[:2])
        statuses.append(response.status_code)

    run()
    if mode.is_positive:  # valid requests were answered, not all refused
        assert statuses.count(200) >= len(statuses) // 2, sorted(statuses)
    else:
        assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
