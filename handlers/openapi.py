"""The OpenAPI document, built from the model being served: its feature names and types, the
categories seen in its training data, its classes, and example rows from its reference data. It is
rebuilt when the served version changes, so fuzzers and clients see what the API really checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from loopml.serving.predictor import FLOAT32_MAX, Schema

if TYPE_CHECKING:
    from fastapi import FastAPI

    from handlers.deps import ApiDeps

__all__ = ["API_KEY_SCHEME", "ERRORS", "ErrorBody", "build_openapi", "row_schema"]


# the routes check the key themselves (handlers/app.py); the document declares it here
API_KEY_SCHEME = "APIKeyHeader"
_KEY_SCHEME = {"type": "apiKey", "in": "header", "name": "x-api-key",
               "description": "the API key (its SHA-256 is configured)"}


class ErrorItem(BaseModel):
    """One problem with a request: where (``loc``) and what (``msg``)."""

    loc: list[str | int]
    msg: str
    id: str | None = Field(default=None, description="the label's id (feedback)")


class ErrorBody(BaseModel):
    """A 4xx or 503 answer: one message, or the list of problems found."""

    detail: str | list[ErrorItem]


_WHY = {400: "the body is not JSON that can be read (not UTF-8, malformed, nested too deeply, NaN)",
        401: "no x-api-key header", 403: "wrong API key",
        413: "body over the byte limit, or more rows/labels than allowed",
        415: "content-type is not application/json",
        422: "valid JSON that breaks the schema; each problem names the row (or label id) and field",
        503: "no model can be served (or, for feedback, the store is unavailable)"}


def ERRORS(*codes: int) -> dict[int | str, dict[str, Any]]:  # noqa: N802  (reads like a constant at the routes)
    """The documented error answers of a route, by status code."""
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in codes}


def row_schema(schema: Schema) -> dict[str, Any]:
    """The JSON schema of one row the model accepts: its features, their types and known categories."""
    props: dict[str, Any] = {}
    for name, kind in schema.features:
        if kind == "numeric":
            props[name] = {"type": ["number", "null"], "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX,
                           "description": "a number (float32 range), null when unknown"}
            continue
        known = schema.known(name)
        text = ("a string, null when unknown. An unseen string is accepted (the model ignores it); a number "
                "or boolean only when it names a known category (true -> \"True\", 3 -> \"3\").")
        if known:
            props[name] = {"anyOf": [{"type": "string", "enum": list(known)}, {"type": "string"}, {"type": "null"}],
                           "description": f"{text} Known categories: {', '.join(known)}"}
        else:
            props[name] = {"type": ["string", "null"], "description": text}
    return {"type": "object", "properties": props, "required": [n for n, _ in schema.features],
            "additionalProperties": False}


def _label_schema(schema: Schema) -> dict[str, Any]:
    if schema.task == "regression":
        return {"type": "number", "description": "the observed value"}
    return {"enum": list(schema.classes or ()), "description": "one of the model's classes, as the same JSON type"}


def build_openapi(app: FastAPI, deps: ApiDeps) -> dict[str, Any]:
    """The app's OpenAPI document for the model being served, cached until the served version changes."""
    model = deps.server.current()
    version = model.version if model else None
    if app.openapi_schema is not None and getattr(app.state, "openapi_version", "unset") == version:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      servers=app.servers or None)
    max_rows, max_labels = deps.settings.max_batch_rows, deps.settings.max_feedback_labels
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})[API_KEY_SCHEME] = _KEY_SCHEME
    schemas = components.setdefault("schemas", {})
    if model is not None:
        schema = model.predictor.schema
        schemas["Row"] = {**row_schema(schema), "title": f"Row (model version {version})"}
        label = _label_schema(schema)
        examples = model.examples[:2]
    else:  # nothing served: the shapes only
        schemas["Row"] = {"type": "object", "title": "Row", "description": "feature name -> value"}
        label, examples = {}, []
    row = {"$ref": "#/components/schemas/Row"}
    predict_body: dict[str, Any] = {"oneOf": [
        {"type": "object", "properties": {"row": row}, "required": ["row"], "additionalProperties": False},
        {"type": "object", "properties": {"rows": {"type": "array", "items": row, "minItems": 1, "maxItems": max_rows}},
         "required": ["rows"], "additionalProperties": False}]}
    content: dict[str, Any] = {"schema": predict_body}
    if examples:
        content["examples"] = {"one row": {"value": {"row": examples[0]}},
                               "batch": {"value": {"rows": examples}}}
    doc["paths"]["/predict"]["post"]["requestBody"] = {"required": True, "content": {"application/json": content}}
    feedback_body = {"type": "object", "required": ["labels"], "additionalProperties": False, "properties": {
        "labels": {"type": "array", "minItems": 1, "maxItems": max_labels, "items": {
            "type": "object", "required": ["id", "label"], "additionalProperties": False, "properties": {
                "id": {"type": "string", "pattern": "^[ -~]{1,64}$", "description": "an id /predict returned"},
                "label": label}}}}}
    doc["paths"]["/feedback"]["post"]["requestBody"] = {"required": True, "content": {"application/json": {"schema": feedback_body}}}
    app.openapi_schema, app.state.openapi_version = doc, version
    return doc
