"""The HTTP API. Routes validate, call one core function and answer; the logic lives in loopml."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases defined in create_app


import hashlib
import hmac
import json
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from handlers.deps import ApiDeps, build_deps
from loopml.predictor import check_rows
from loopml.serving import LoadedModel, new_prediction_id, prediction_records, record_feedback

ROW_EXAMPLE = {"car_value": 39811.0, "salary_range": "40K - 60K €", "debt_to_income_ratio": 0.63,
               "loan_length": 19.0, "repaid_loan_on_prev_car": "False", "size_of_downpayment": "40%",
               "driver_tenure": 0.21}


class Prediction(BaseModel):
    id: str
    prediction: Any
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    model_version: int
    served_as: str = Field(description="onnx or sklearn")
    predictions: list[Prediction]


class Label(BaseModel):
    id: str
    label: Any


class FeedbackRequest(BaseModel):
    labels: list[Label] = Field(min_length=1, max_length=10_000)


class FeedbackResponse(BaseModel):
    accepted: int
    unknown_ids: list[str]


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {"type": "object", "properties": {
                "row": {"type": "object", "description": "one row: feature name -> value (null when unknown)"},
                "rows": {"type": "array", "items": {"type": "object"}, "description": "a batch of rows"}}},
            "examples": {"one row": {"value": {"row": ROW_EXAMPLE}},
                         "batch": {"value": {"rows": [ROW_EXAMPLE, ROW_EXAMPLE]}}}}},
    }
}


def _problem(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def create_app(deps: ApiDeps | None = None) -> FastAPI:
    deps = deps or build_deps()
    settings = deps.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        deps.server.current()  # load (and verify) the champion before the first request
        yield
        deps.log.flush()

    app = FastAPI(title="loopml", version="0.1.0", lifespan=lifespan, root_path=settings.root_path,
                  description="Predictions from the registry's champion. Send `x-api-key` on every route but /health.")
    app.state.deps = deps

    # Both dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
    # and under Mangum (a fresh asyncio task per event) anyio starts a new thread for it on every
    # request, which was most of a warm request's cost (see bench/bench_serving.py).
    async def require_key(request: Request) -> None:
        if settings.api_key_sha256 is None:
            return
        key = request.headers.get("x-api-key")
        if not key:
            raise _problem(401, "missing x-api-key header")
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not hmac.compare_digest(digest, settings.api_key_sha256.lower()):
            raise _problem(403, "invalid API key")

    async def current() -> LoadedModel | None:
        server = deps.server
        # the alias is re-read (store I/O, maybe a model load) only every ttl seconds: off the event loop
        return server.current() if server.fresh() else await run_in_threadpool(server.current)

    async def champion() -> LoadedModel:
        model = await current()
        if model is None:
            raise _problem(503, deps.server.last_error or "no champion model is available")
        return model

    Authorized = Annotated[None, Depends(require_key)]
    Champion = Annotated[LoadedModel, Depends(champion)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        model = await current()
        return {"status": "ok", "model_version": model.version if model else None,
                "problem": None if model else deps.server.last_error}

    @app.get("/model")
    async def model_info(_: Authorized, model: Champion) -> dict[str, Any]:
        meta = model.meta
        keep = ("version", "created_at", "name", "task", "family", "params", "metrics", "schema", "data",
                "lineage", "gates", "artifacts", "selection_reason")
        return {**{k: meta.get(k) for k in keep}, "served_as": model.predictor.kind}

    @app.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY)
    async def predict(request: Request, _: Authorized, model: Champion) -> PredictResponse:
        started = time.perf_counter()  # the request's latency, logged for monitoring (latency and cost)
        rows = await _read_rows(request, settings.max_body_bytes, settings.max_batch_rows)
        errors = check_rows(rows, model.predictor.schema)
        if errors:
            raise _problem(422, [{"loc": ["body", "rows", e.row, e.field], "msg": e.message} for e in errors])
        out = model.predictor.predict(rows)
        now = datetime.now(UTC)
        ids = [new_prediction_id(now) for _ in rows]
        deps.log.add(prediction_records(ids, rows, out, model.version, now.isoformat(), request_rows=len(rows),
                                        latency_ms=(time.perf_counter() - started) * 1000))
        probs = out.probabilities or [None] * len(rows)
        return PredictResponse(model_version=model.version, served_as=model.predictor.kind, predictions=[
            Prediction(id=i, prediction=p, probabilities=pr) for i, p, pr in zip(ids, out.predictions, probs, strict=True)])

    @app.post("/feedback", response_model=FeedbackResponse)
    def feedback(body: FeedbackRequest, _: Authorized) -> FeedbackResponse:  # store I/O: FastAPI runs it in a thread
        result = record_feedback(deps.store, deps.log, [item.model_dump() for item in body.labels])
        return FeedbackResponse(**result)

    return app


async def _read_rows(request: Request, max_bytes: int, max_rows: int) -> list[Any]:
    ctype = request.headers.get("content-type", "")
    if not ctype.split(";")[0].strip().lower() == "application/json":
        raise _problem(415, f"expected content-type application/json, got {ctype or 'none'}")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise _problem(413, f"body of {len(raw)} bytes is over the {max_bytes} byte limit")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _problem(400, f"body is not valid JSON: {err}") from None
    if isinstance(body, dict) and "rows" in body:
        rows = body["rows"]
        if not isinstance(rows, list) or not rows:
            raise _problem(422, [{"loc": ["body", "rows"], "msg": "expected a non-empty list of rows"}])
    elif isinstance(body, dict) and "row" in body:
        rows = [body["row"]]
    else:
        raise _problem(422, [{"loc": ["body"], "msg": "expected {\"row\": {...}} or {\"rows\": [...]}"}])
    if len(rows) > max_rows:
        raise _problem(413, f"{len(rows)} rows is over the batch limit of {max_rows}")
    return rows
