"""The HTTP API. Routes validate, call one core function and answer; the logic lives in loopml.

Every route that reads a body reads it itself, after the key check, through ``read_json`` (a byte cap
before and while reading, a JSON parse that cannot raise): a keyless client costs a header lookup.
"""

import hashlib
import hmac
import logging
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from handlers.body import read_json
from handlers.deps import ApiDeps, build_deps
from handlers.observability import Observe
from handlers.openapi import API_KEY_SCHEME, ERRORS, build_openapi
from loopml.serving.feedback import check_labels, record_feedback
from loopml.serving.prediction_log import prediction_records
from loopml.serving.predictor import failing_rows, prepare_rows, shown
from loopml.serving.server import LoadedModel

log = logging.getLogger("loopml.api")

# batches of more rows than this run in a worker thread: the event loop keeps serving other requests
# under uvicorn; a single row (the common case, well under a millisecond) stays on the loop, where
# Mangum would otherwise start a thread per request
INLINE_ROWS = 1


class Prediction(BaseModel):
    id: str
    prediction: Any
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    model_version: int
    served_as: str = Field(description="onnx or sklearn")
    predictions: list[Prediction]


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="labels stored")
    unknown_ids: list[str] = Field(description="ids that no logged prediction has (not stored)")


class Health(BaseModel):
    status: str = Field(description="ok; warning (serving, but the newest champion was refused); "
                                    "degraded (no model can be served: HTTP 503)")
    model_version: int | None
    problem: str | None = Field(description="what is wrong, if anything (never the store's location)")


def _problem(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def create_app(deps: ApiDeps | None = None) -> FastAPI:
    deps = deps or build_deps()
    settings = deps.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        deps.server.current()  # load (and verify) the champion before the first request
        yield
        deps.log.flush()  # waits for a flush in flight: nothing answered is missing from the log

    app = FastAPI(title="loopml", version="0.1.0", lifespan=lifespan, root_path=settings.root_path,
                  description="Predictions from the registry's champion. Send `x-api-key` on every route but /health.")
    app.state.deps = deps

    def key_ok(key: str | None) -> bool:
        if settings.api_key_sha256 is None:
            return True
        if not key:
            return False
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return hmac.compare_digest(digest, settings.api_key_sha256.lower())

    def trusted(request: Request) -> bool:
        """A request that needs no key of ours: built in this process (PreTraffic check), or one API
        Gateway authenticated with a usage-plan key (its id is in the event's requestContext, which
        the gateway writes and a client cannot)."""
        context = (request.scope.get("aws.event") or {}).get("requestContext") or {}
        if context.get("loopml_internal") and hmac.compare_digest(str(context["loopml_internal"]), deps.internal_token):
            return True
        return settings.gateway_api_keys and bool((context.get("identity") or {}).get("apiKeyId"))

    # The guards below are awaited by the routes themselves, not declared as FastAPI dependencies:
    # FastAPI re-solves a dependency graph on every request, which was a third of a warm single-row
    # /predict (bench/bench_serving.py). The OpenAPI document declares the key (handlers/openapi.py).
    def require_key(request: Request) -> None:
        if settings.api_key_sha256 is None or trusted(request):
            return
        key = request.headers.get("x-api-key")
        if not key:
            raise _problem(401, "missing x-api-key header")
        if not key_ok(key):
            raise _problem(403, "invalid API key")

    async def current() -> LoadedModel | None:
        server = deps.server
        # the alias is re-read (store I/O, maybe a model load) only every ttl seconds: off the event loop
        return server.current() if server.fresh() else await run_in_threadpool(server.current)

    async def champion() -> LoadedModel:
        model = await current()
        if model is None:
            raise _problem(503, deps.server.problem or "no champion model is available")
        return model

    async def served(request: Request) -> LoadedModel:
        """The model that answers this request: the champion, or during a gradual promotion the
        candidate for its share of requests. The choice is left in the request state for metrics."""
        model = await champion()
        variant, chosen = "champion", model
        rollout = deps.rollout
        if rollout is not None and rollout.candidate is not None and rollout.weight > 0:
            if not rollout.candidate.fresh():
                await run_in_threadpool(rollout.candidate.current)
            variant, chosen = rollout.pick(model)
        request.state.model_version, request.state.variant = chosen.version, variant
        return chosen

    keyed = {"openapi_extra": {"security": [{API_KEY_SCHEME: []}]}}

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input, which may not even be encodable: say where and what only
        errors = [{"loc": [shown(p, 40) if isinstance(p, str) else p for p in e.get("loc", ())],
                   "msg": shown(str(e.get("msg", "invalid")), 200)} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "degraded: no model can be served"}})
    async def health(request: Request) -> JSONResponse:
        model = await current()
        server = deps.server
        refused = server.target is not None and model is not None and server.target != model.version
        status = "degraded" if model is None else "warning" if refused or server.problem else "ok"
        body: dict[str, Any] = {"status": status, "model_version": model.version if model else None,
                                "problem": server.problem}
        if key_ok(request.headers.get("x-api-key")) and settings.api_key_sha256 is not None:
            # operators (with the key) get the full story; anyone else only learns what is wrong
            body.update(store=deps.store.uri, detail=server.last_error, champion_version=server.target,
                        refused_versions=server.refused, log_buffered=deps.log.buffered,
                        log_dropped=deps.log.dropped,
                        rollout=deps.rollout.status() if deps.rollout else None)
        return JSONResponse(body, status_code=503 if model is None else 200)

    # HEAD for load balancers and uptime checks: the same status, no body
    app.add_api_route("/health", health, methods=["HEAD"], operation_id="health_head", response_model=Health,
                      responses={503: {"model": Health, "description": "degraded: no model can be served"}})

    @app.get("/model", responses=ERRORS(401, 403, 503), **keyed)
    async def model_info(request: Request) -> dict[str, Any]:
        require_key(request)
        model = await champion()
        meta = model.meta
        keep = ("version", "created_at", "name", "task", "family", "params", "metrics", "schema", "data",
                "lineage", "gates", "artifacts", "selection_reason")
        return {**{k: meta.get(k) for k in keep}, "served_as": model.predictor.kind}

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS(400, 401, 403, 413, 415, 422, 503), **keyed)
    async def predict(request: Request) -> PredictResponse:
        started = time.perf_counter()  # the request's latency, logged for monitoring (latency and cost)
        require_key(request)
        model = await served(request)
        rows = _rows_of(await read_json(request, settings.max_body_bytes), settings.max_batch_rows)
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

    @app.post("/feedback", response_model=FeedbackResponse, responses=ERRORS(400, 401, 403, 413, 415, 422, 503), **keyed)
    async def feedback(request: Request) -> FeedbackResponse:
        require_key(request)
        model = await champion()
        body = await read_json(request, settings.max_body_bytes)
        labels = body.get("labels") if isinstance(body, dict) and set(body) == {"labels"} else None
        if not isinstance(labels, list) or not 1 <= len(labels) <= settings.max_feedback_labels:
            raise _problem(422, [{"loc": ["body", "labels"],
                                  "msg": f"expected {{\"labels\": [...]}} with 1 to {settings.max_feedback_labels} labels"}])
        items, errors = check_labels(labels, model.predictor.schema)
        if errors:
            raise _problem(422, [{"loc": ["body", "labels", e.index], "id": e.id, "msg": e.message} for e in errors])
        try:  # store I/O: in a worker thread
            result = await run_in_threadpool(record_feedback, deps.store, deps.log, items)
        except Exception as err:
            log.error("feedback not stored: %s: %s", type(err).__name__, err)
            raise _problem(503, f"the store is unavailable ({type(err).__name__}); nothing was stored, retry") from None
        return FeedbackResponse(**result)

    async def _score(request: Request, model: LoadedModel, rows: list[dict[str, Any]]):
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

    app.add_middleware(Observe, rollout=deps.rollout, enabled=settings.observability == "json")
    app.openapi = lambda: build_openapi(app, deps)  # the champion's real schema, rebuilt when it changes
    return app


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
