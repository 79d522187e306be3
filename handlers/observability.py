"""What the canary and operators see of each request: one structured JSON log line and one
CloudWatch EMF record (Requests, Http4xx, Http5xx, ModelErrors, Latency), with aws-lambda-powertools.

Mangum turns an application error into an ordinary ``statusCode: 500`` response, so Lambda's own
``Errors`` metric never sees it: these metrics are what the deployment alarms watch. Each EMF record
carries two dimension sets:

* ``service, FunctionVersion``: the Lambda version that answered; the template's canary alarms watch
  the version being deployed, and only it;
* ``service, ModelVersion, Variant``: the model version and whether it was the champion or the
  candidate of a gradual promotion (``loopml.serving.rollout``), for per-version dashboards.

The middleware also feeds each /predict outcome to the rollout, which rolls a worse candidate back.
Off by default (``LOOPML_OBSERVABILITY=json`` turns it on; the SAM template does): powertools is
imported only then, so a local server and the tests pay nothing for it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from loopml.serving.rollout import Rollout

NAMESPACE = "loopml"
SERVICE = "loopml-api"

__all__ = ["Observe", "emf_record", "NAMESPACE", "SERVICE"]


def emf_record(*, status: int, latency_ms: float, function_version: str, model_version: int | None,
               variant: str | None, model_error: bool, path: str) -> dict[str, Any]:
    """One request as an EMF document (powertools builds and validates it; we add the second
    dimension set, which powertools' one-set API cannot express)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    m = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    m.add_dimension(name="FunctionVersion", value=function_version)
    m.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    m.add_metric(name="Http4xx", unit=MetricUnit.Count, value=int(400 <= status < 500))
    m.add_metric(name="Http5xx", unit=MetricUnit.Count, value=int(status >= 500))
    m.add_metric(name="ModelErrors", unit=MetricUnit.Count, value=int(model_error))
    m.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=round(latency_ms, 3))
    doc = m.serialize_metric_set()
    doc["ModelVersion"] = str(model_version) if model_version is not None else "none"
    doc["Variant"] = variant or "none"
    doc["path"], doc["status"] = path, status
    sets = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    sets.append(["service", "ModelVersion", "Variant"])
    return doc


class Observe:
    """Pure ASGI middleware (no body buffering, no thread): times the request, reads the status from
    the response start and the model from ``scope['state']`` (set by the route's dependency)."""

    def __init__(self, app: Any, rollout: Rollout | None = None, enabled: bool = False) -> None:
        self.app, self.rollout, self.enabled = app, rollout, enabled
        self.logger = None
        if enabled:
            from aws_lambda_powertools import Logger
            from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

            self.logger = Logger(service=SERVICE)
            # loopml's own modules (serving, rollout) log through the same JSON formatter
            copy_config_to_registered_loggers(source_logger=self.logger, include={"loopml"})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.done(scope, status, (time.perf_counter() - t0) * 1000)

    def done(self, scope: dict[str, Any], status: int, latency_ms: float) -> None:
        """Count a finished request for the rollout (a /predict) and, when enabled, write its log and EMF lines."""
        state = scope.get("state") or {}
        version, variant = state.get("model_version"), state.get("variant")
        model_error = bool(state.get("model_error"))
        if self.rollout is not None and version is not None and scope.get("path") == "/predict":
            self.rollout.record(version, status >= 500 or model_error, latency_ms)
        if not self.enabled:
            return
        context = scope.get("aws.context")
        function_version = getattr(context, "function_version", None) or "local"
        path = scope.get("path", "")
        doc = emf_record(status=status, latency_ms=latency_ms, function_version=function_version,
                         model_version=version, variant=variant, model_error=model_error, path=path)
        sys.stdout.write(json.dumps(doc) + "\n")  # EMF: CloudWatch extracts the metrics from the log line
        self.logger.info("request", extra={"method": scope.get("method"), "path": path, "status": status,
                                           "latency_ms": round(latency_ms, 3), "model_version": version,
                                           "variant": variant, "request_id": getattr(context, "aws_request_id", None)})
