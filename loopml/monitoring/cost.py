"""Cost over time, from what was measured: the API's billed time and requests per day, and batch runs'
durations, priced with :mod:`loopml.monitoring.prices`, checked against ``constraints.budget``.

An API prediction's cost is its share of one Lambda invocation (the request's measured duration x the
function's memory x the GB-second price, plus the Lambda and API Gateway request prices), split over
the rows that request carried. A batch run (scoring, monitoring) costs its duration x its vCPUs and
memory x the Fargate prices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from loopml.monitoring.prices import prices as price_table
from loopml.spec import ProblemSpec

__all__ = ["batch_run_cost", "cost_summary", "DAYS_PER_MONTH"]

DAYS_PER_MONTH = 30.44


def batch_run_cost(seconds: float, vcpus: float, memory_gb: float, table: Mapping[str, float]) -> float:
    """What a batch run of ``seconds`` on ``vcpus`` and ``memory_gb`` costs at the price ``table``'s rates."""
    hours = max(seconds, 0.0) / 3600
    return hours * (vcpus * table["batch_vcpu_hour"] + memory_gb * table["batch_gb_hour"])


def cost_summary(
    usage: pd.DataFrame,
    spec: ProblemSpec,
    *,
    batch_runs: list[dict[str, Any]] | None = None,
    monitoring_seconds: float | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Cost per day, per 1,000 API predictions, of this monitoring run, and what goes over budget.

    ``usage`` has one row per day: ``rows`` (API predictions), ``requests`` and ``billed_ms``.
    ``batch_runs`` are ``{"day", "seconds"}`` (optionally ``"vcpus"``, ``"memory_gb"``, ``"what"``).
    """
    cfg = spec.monitoring.cost
    priced = price_table(cfg.prices, env)
    table = priced["prices"]
    memory_gb = cfg.lambda_memory_mb / 1024
    days: dict[str, dict[str, float]] = {}
    for _, u in usage.iterrows():
        gb_s = float(u["billed_ms"]) / 1000 * memory_gb
        requests = float(u["requests"])
        api = gb_s * table["lambda_gb_second"] + requests * (table["lambda_request"] + table["apigw_request"])
        day = days.setdefault(str(u["day"]), _day())
        day.update(api_rows=day["api_rows"] + int(u["rows"]), api_requests=day["api_requests"] + requests,
                   lambda_gb_seconds=day["lambda_gb_seconds"] + gb_s, api_usd=day["api_usd"] + api)  # fmt: skip
    for run in batch_runs or []:
        usd = batch_run_cost(float(run["seconds"]), float(run.get("vcpus", cfg.batch_vcpus)),
                             float(run.get("memory_gb", cfg.batch_memory_gb)), table)  # fmt: skip
        day = days.setdefault(str(run["day"]), _day())
        day["batch_usd"] += usd
    rows = []
    for name in sorted(days):
        d = days[name]
        total = d["api_usd"] + d["batch_usd"]
        per_1000 = d["api_usd"] / d["api_rows"] * 1000 if d["api_rows"] else None
        rows.append({"day": name, **d, "total_usd": total, "api_usd_per_1000": per_1000})
    api_rows = sum(d["api_rows"] for d in days.values())
    api_usd = sum(d["api_usd"] for d in days.values())
    total = sum(r["total_usd"] for r in rows)
    summary: dict[str, Any] = {
        "days": rows,
        "api_predictions": api_rows,
        "api_usd_per_1000": api_usd / api_rows * 1000 if api_rows else None,
        "usd_per_day": total / len(rows) if rows else None,
        "projected_monthly_usd": total / len(rows) * DAYS_PER_MONTH if rows else None,
        "monitoring_run_usd": (batch_run_cost(monitoring_seconds, cfg.batch_vcpus, cfg.batch_memory_gb, table)
                               if monitoring_seconds is not None else None),  # fmt: skip
        "lambda_memory_mb": cfg.lambda_memory_mb,
        **priced,
    }
    summary["budget"], summary["over_budget"] = _budget(spec, summary)
    return summary


def _day() -> dict[str, float]:
    return {"api_rows": 0, "api_requests": 0.0, "lambda_gb_seconds": 0.0, "api_usd": 0.0, "batch_usd": 0.0}


def _budget(spec: ProblemSpec, s: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    budget = spec.constraints.budget
    if budget is None:
        return None, []
    over = []
    monthly, per_1000 = s["projected_monthly_usd"], s["api_usd_per_1000"]
    if budget.monthly_usd is not None and monthly is not None and monthly > budget.monthly_usd:
        over.append({"rule": "monthly_usd", "value": monthly, "limit": budget.monthly_usd,
                     "message": f"projected monthly cost ${monthly:,.2f} (${s['usd_per_day']:,.4f}/day over "
                                f"{len(s['days'])} day(s)) is above constraints.budget.monthly_usd=${budget.monthly_usd:,.2f}"})  # fmt: skip
    if budget.per_1000_predictions_usd is not None and per_1000 is not None and per_1000 > budget.per_1000_predictions_usd:
        over.append({"rule": "per_1000_predictions_usd", "value": per_1000, "limit": budget.per_1000_predictions_usd,
                     "message": f"API cost ${per_1000:.4f} per 1,000 predictions is above "
                                f"constraints.budget.per_1000_predictions_usd=${budget.per_1000_predictions_usd:g}"})  # fmt: skip
    return budget.model_dump(), over
