"""What the routes answer: the response models FastAPI validates and documents in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from loopml.registry.records import VersionRecord

__all__ = ["FeedbackResponse", "Health", "ModelInfo", "PredictResponse", "Prediction", "describe_model"]


class Prediction(BaseModel):
    """One row's answer: the id its label is later sent back with, the prediction, the class probabilities."""

    id: str
    prediction: Any
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    """POST /predict: which model version answered, and how, with one prediction per row sent."""

    model_version: int
    served_as: str = Field(description="onnx or sklearn")
    predictions: list[Prediction]


class FeedbackResponse(BaseModel):
    """POST /feedback: how many labels were stored, and the ids no logged prediction has."""

    accepted: int = Field(description="labels stored")
    unknown_ids: list[str] = Field(description="ids that no logged prediction has (not stored)")


class Health(BaseModel):
    """GET /health: whether a model can be served; operators sending the key get more fields."""

    status: str = Field(description="ok; warning (serving, but the newest champion was refused); "
                                    "degraded (no model can be served: HTTP 503)")
    model_version: int | None
    problem: str | None = Field(description="what is wrong, if anything (never the store's location)")


# What GET /model shows of the version record: the model's identity, what it was trained on and how it
# did. Not the store key of its reference data nor training's diagnostics (examples, selection table).
SHOWN = ("version", "created_at", "name", "task", "family", "params", "metrics", "schema", "data", "lineage",
         "gates", "artifacts", "selection_reason")


def _record_fields(record: type[BaseModel], names: tuple[str, ...]) -> dict[str, Any]:
    """The record's own declaration (type, default, alias) of each field named as stored, so the response
    follows the record as it grows; a name the record does not declare is any JSON value, None if absent."""
    declared = {info.alias or name: (name, info) for name, info in record.model_fields.items()}
    fields: dict[str, Any] = {}
    for stored in names:
        name, info = declared.get(stored, (stored, None))
        fields[name] = (info.annotation, info) if info is not None else (Any, None)
    return fields


ModelInfo: type[BaseModel] = create_model(
    "ModelInfo", __config__=ConfigDict(populate_by_name=True, frozen=True),
    __doc__="The served model version: its record (what it is, what it was trained on, how it did) and how it is served.",
    **_record_fields(VersionRecord, SHOWN), served_as=(str, Field(description="onnx or sklearn")))


def describe_model(record: VersionRecord, served_as: str) -> BaseModel:
    """The /model answer for a version: its record's shown fields, read as attributes (a field training
    wrote that the record does not declare is one of its extras, None when absent)."""
    shown = {name: getattr(record, name, None) for name in ModelInfo.model_fields if name != "served_as"}
    return ModelInfo(**shown, served_as=served_as)
