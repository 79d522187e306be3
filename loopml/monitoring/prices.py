"""The price table behind loopml's cost estimates: dated, documented, overridable.

Public on-demand list prices in USD for us-east-1 (x86_64 Lambda, REST API Gateway as template.yaml
deploys, Fargate for batch runs), as published by AWS and written down here on ``AS_OF``. They are not
fetched live: a region, a discount or a newer price list is an override, never a code change:

- in ``project.yaml``: ``monitoring.cost.prices: {lambda_gb_second: 0.0000133334}``
- or in the environment: ``LOOPML_PRICES='{"apigw_request": 0.000001}'`` (JSON; wins over the spec)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["AS_OF", "PRICES", "REGION", "prices"]

AS_OF = "2025-01-15"
REGION = "us-east-1"
PRICES: dict[str, float] = {
    # AWS Lambda, x86_64: per GB-second of billed duration, per request
    "lambda_gb_second": 0.0000166667,
    "lambda_request": 0.20 / 1_000_000,
    # API Gateway REST API (first 333 million requests a month), per request
    "apigw_request": 3.50 / 1_000_000,
    # AWS Fargate (also AWS Batch on Fargate), Linux x86: per vCPU-hour and per GB-hour
    "batch_vcpu_hour": 0.04048,
    "batch_gb_hour": 0.004445,
}
DESCRIPTIONS = {
    "lambda_gb_second": "Lambda x86_64 compute, USD per GB-second",
    "lambda_request": "Lambda invocations, USD per request",
    "apigw_request": "API Gateway REST API, USD per request",
    "batch_vcpu_hour": "Fargate / Batch, USD per vCPU-hour",
    "batch_gb_hour": "Fargate / Batch, USD per GB-hour of memory",
}
ENV = "LOOPML_PRICES"


def prices(overrides: Mapping[str, float] | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The table with the spec's overrides, then the environment's, applied; says where each came from."""
    env = os.environ if env is None else env
    table = dict(PRICES)
    source = dict.fromkeys(PRICES, f"list price {REGION} as of {AS_OF}")
    layers: list[tuple[str, Mapping[str, Any]]] = [("project.yaml monitoring.cost.prices", overrides or {})]
    if env.get(ENV):
        try:
            layers.append((ENV, json.loads(env[ENV])))
        except json.JSONDecodeError as err:
            raise ValueError(f"{ENV} is not a JSON object: {err}") from None
    for where, layer in layers:
        if not isinstance(layer, Mapping):
            raise ValueError(f"{where} must map price names to numbers")
        for key, value in layer.items():
            if key not in PRICES:
                raise ValueError(f"{where}: unknown price {key!r}; known: {sorted(PRICES)}")
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: price {key!r} must be a number >= 0, got {value!r}")
            table[key], source[key] = float(value), where
    return {"prices": table, "source": source, "as_of": AS_OF, "region": REGION}
