"""The API's routes: each validates, calls one core function and answers; the logic lives in loopml.

Every route that reads a body reads it itself, after the key check, through ``read_json`` (a byte cap
before and while reading, a JSON parse that cannot raise): a keyless client costs a header lookup.

The guards (the key check, the model that answers) are awaited by the routes themselves, not declared
as FastAPI dependencies: FastAPI re-solves a dependency graph on every request, which was a third of a
warm single-row /predict (bench/bench_serving.py). The OpenAPI document declares the key
(handlers/openapi.py). The adapters are the app's (``app.state.deps``, set by ``create_app``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from handlers.body import read_json
from handlers.deps import ApiDeps
from handlers.openapi import API_KEY_SCHEME, ERRORS
from handlers.responses import FeedbackResponse, Health, ModelInfo, Prediction, PredictResponse, describe_model
from loopml.serving.feedback import check_labels, record_feedback
from loopml.serving.prediction_log import prediction_records
from loopml.serving.predictor import Outputs, failing_rows, prepare_rows, shown
from loopml.serving.server import LoadedModel
from loopml.settings import Settings

__all__ = ["INLINE_ROWS", "champion", "current", "invalid_request", "key_ok", "require_key", "router", "served",
           "trusted"]

log = logging.getLogger("loopml.api")

# batches of more rows than this run in a worker thread: the event loop keeps serving other requests
# under uvicorn; a single row (the common case, well under a millisecond) stays on the loop, where
# Mangum would otherwise start a thread per request
INLINE_ROWS = 1

router = APIRouter()
_KEYED: dict[str, Any] = {"openapi_extra": {"security": [{API_KEY_SCHEME: []}]}}
_DEGRADED: dict[int | str, dict[str, Any]] = {503: {"model": Health, "description": "degraded: no model can be served"}}


def _problem(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _deps(request: Request) -> ApiDeps:
    return request.app.state.deps


# ------------------------------------------------------------------------------------------ guards
def key_ok(settings: Settings, key: str | None) -> bool:
    """True when no key is configured, or ``key``'s SHA-256 is the configured one (compared in constant time)."""
    if settings.api_key_sha256 is None:
        return True
    if not key:
        return False
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return hmac.compare_digest(digest, settings.api_key_sha256.lower())


def trusted(deps: ApiDeps, request: Request) -> bool:
    """A request that needs no key of ours: built in this process (PreTraffic check), or one API
    Gateway authenticated with a usage-plan key (its id is in the event's requestContext, which
    the gateway writes and a client cannot)."""
    context = (request.scope.get("aws.event") or {}).get("requestContext") or {}
    if context.get("loopml_internal") and hmac.compare_digest(str(context["loopml_internal"]), deps.internal_token):
        return True
    return deps.settings.gateway_api_keys and bool((context.get("identity") or {}).get("apiKeyId"))


def require_key(deps: ApiDeps, request: Request) -> None:
    """Refuse the request (401 without a key, 403 with a wrong one) unless it is keyless by design."""
    settings = deps.settings
    if settings.api_key_sha256 is None or trusted(deps, request):
        return
    key = request.headers.get("x-api-key")
    if not key:
        raise _problem(401, "missing x-api-key header")
    if not key_ok(settings, key):
        raise _problem(403, "invalid API key")


async def current(deps: ApiDeps) -> LoadedModel | None:
    """The champion as the server holds it, or None when none can be served."""
    server = deps.server
    # the alias is re-read (store I/O, maybe a model load) only every ttl seconds: off the event loop
    return server.current() if server.fresh() else await run_in_threadpool(server.current)


async def champion(deps: ApiDeps) -> LoadedModel:
    """The champion, or 503 saying why none can be served."""
    model = await current(deps)
    if model is None:
        raise _problem(503, deps.server.problem or "no champion model is available")
    return model


async def served(deps: ApiDeps, request: Request) -> LoadedModel:
    """The model that answers this request: the champion, or during a gradual promotion the
    candidate for its share of requests. The choice is left in the request state for metrics."""
    model = await champion(deps)
    variant, chosen = "champion", model
    rollout = deps.rollout
    if rollout is not None and rollout.candidate is not None and rollout.weight > 0:
        if not rollout.candidate.fresh():
            await run_in_threadpool(rollout.candidate.current)
        variant, chosen = rollout.pick(model)
    request.state.model_version, request.state.variant = chosen.version, variant
    return chosen


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 saying where and what only: FastAPI's default echoes the input, which may not even be encodable."""
    errors = [{"loc": [shown(p, 40) if isinstance(p, str) else p for p in e.get("loc", ())],
               "msg": shown(str(e.get("msg", "invalid")), 200)} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


# ------------------------------------------------------------------------------------------ routes
@router.get("/health", response_model=Health, responses=_DEGRADED)
async def health(request: Request) -> JSONResponse:
    """Whether a model can be served (503 when none can); with the key, the full story for operators."""
    deps = _deps(request)
    model = await current(deps)
    server = deps.server
    refused = server.target is not None and model is not None and server.target != model.version
    status = "degraded" if model is None else "warning" if refused or server.problem else "ok"
    body: dict[str, Any] = {"status": status, "model_version": model.version if model else None,
                            "problem": server.problem}
    if key_ok(deps.settings, request.headers.get("x-api-key")) and deps.settings.api_key_sha256 is not None:
        # operators (with the key) get the full story; anyone else only learns what is wrong
        body.update(store=deps.store.uri, detail=server.last_error, champion_version=server.target,
                    refused_versions=server.refused, log_buffered=deps.log.buffered,
                    log_dropped=deps.log.dropped,
                    rollout=deps.rollout.status() if deps.rollout else None)
    return JSONResponse(body, status_code=503 if model is None else 200)


# HEAD for load balancers and uptime checks: the same status, no body
router.add_api_route("/health", health, methods=["HEAD"], operation_id="health_head", response_model=Health,
                     responses=_DEGRADED)


@router.get("/model", response_model=ModelInfo, responses=ERRORS(401, 403, 503), **_KEYED)
async def model_info(request: Request) -> BaseModel:
    """The champion's version record (what it is, what it was trained on, how it did) and how it is served."""
    deps = _deps(request)
    require_key(deps, request)
    model = await champion(deps)
    return describe_model(model.record, model.predictor.kind)


@router.post("/predict", response_model=PredictResponse, responses=ERRORS(400, 401, 403, 413, 415, 422, 503), **_KEYED)
async def predict(request: Request) -> PredictResponse:
    """Predictions for one row or a batch, each logged with an id its label can be sent back with."""
    started = time.perf_counter()  # the request's latency, logged for monitoring (latency and cost)
    deps = _deps(request)
    require_key(deps, request)
    model = await served(deps, request)
    rows = _rows_of(await read_json(request, deps.settings.max_body_bytes), deps.settings.max_batch_rows)
    clean, errors = prepare_rows(rows, model.predictor.schema)
    if errors:
        raise _problem(422, [{"loc": ["body", "rows", e.row, e.field], "msg": e.message} for e in errors])
    out = await _score(request, model, clean)
    now = datetime.now(UTC)
    ids = deps.log.new_ids(len(clean), now)
    # the rows as sent (validated): monitoring compares them with the training data's own types
    deps.log.add(prediction_records(ids, rows, out, model.version, now.isoformat(), variant=request.state.variant,
                                    request_rows=len(clean), latency_ms=(time.perf_counter() - started) * 1000))
    probs = out.probabilities or [None] * len(clean)
    return PredictResponse(model_version=model.version, served_as=model.predictor.kind, predictions=[
        Prediction(id=i, prediction=p, probabilities=pr) for i, p, pr in zip(ids, out.predictions, probs, strict=True)])


@router.post("/feedback", response_model=FeedbackResponse, responses=ERRORS(400, 401, 403, 413, 415, 422, 503), **_KEYED)
async def feedback(request: Request) -> FeedbackResponse:
    """Labels for logged predictions, stored for realized performance; unknown ids are named, not stored."""
    deps = _deps(request)
    require_key(deps, request)
    model = await champion(deps)
    labels = _labels_of(await read_json(request, deps.settings.max_body_bytes), deps.settings.max_feedback_labels)
    items, errors = check_labels(labels, model.predictor.schema)
    if errors:
        raise _problem(422, [{"loc": ["body", "labels", e.index], "id": e.id, "msg": e.message} for e in errors])
    try:  # store I/O: in a worker thread
        result = await run_in_threadpool(record_feedback, deps.store, deps.log, items)
    except Exception as err:
        log.error("feedback not stored: %s: %s", type(err).__name__, err)
        raise _problem(503, f"the store is unavailable ({type(err).__name__}); nothing was stored, retry") from None
    return FeedbackResponse(**result)


# ------------------------------------------------------------------------------------------ helpers
async def _score(request: Request, model: LoadedModel, rows: list[dict[str, Any]]) -> Outputs:
    predictor = model.predictor
    try:
        if len(rows) <= INLINE_ROWS:
            return predictor.predict(rows)
        return await run_in_threadpool(predictor.predict, rows)
    except Exception as err:
        request.state.model_error = True  # counted against this model version by the rollout
        bad = await run_in_threadpool(failing_rows, predictor, rows)
        if not bad:
            raise  # not the rows' fault: a real server error
        log.warning("model runtime refused %d of %d rows: %s", len(bad), len(rows), type(err).__name__)
        raise _problem(422, [{"loc": ["body", "rows", e.row], "msg": e.message} for e in bad]) from None


def _rows_of(body: Any, max_rows: int) -> list[Any]:
    if isinstance(body, dict) and set(body) == {"rows"}:
        rows = body["rows"]
        if not isinstance(rows, list) or not rows:
            raise _problem(422, [{"loc": ["body", "rows"], "msg": "expected a non-empty list of rows"}])
    elif isinstance(body, dict) and set(body) == {"row"}:
        rows = [body["row"]]
    else:
        raise _problem(422, [{"loc": ["body"], "msg": "expected {\"row\": {...}} or {\"rows\": [...]}"}])
    if len(rows) > max_rows:
        raise _problem(413, f"{len(rows)} rows is over the batch limit of {max_rows}")
    return rows


def _labels_of(body: Any, max_labels: int) -> list[Any]:
    labels = body.get("labels") if isinstance(body, dict) and set(body) == {"labels"} else None
    if not isinstance(labels, list) or not 1 <= len(labels) <= max_labels:
        raise _problem(422, [{"loc": ["body", "labels"],
                              "msg": f"expected {{\"labels\": [...]}} with 1 to {max_labels} labels"}])
    return labels
