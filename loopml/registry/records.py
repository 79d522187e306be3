"""The typed record of a registered version: what ``registry/versions/<NNNN>/version.json`` holds.

One model shared by the registry, the API, the CLI and monitoring, instead of a dict read with
``.get`` defaults all over. Fields the registry itself writes are required; what training adds is
typed where others read it, optional (versions registered by older code or by tests lack some), and
anything else is kept as it was written (``extra="allow"``), so reading and re-writing a record
(``loopml publish``) loses nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["VersionRecord", "ArtifactRecord", "GatesRecord", "DataRecord", "LineageRecord"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class ArtifactRecord(_Record):
    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class GatesRecord(_Record):
    """The verdict that decides whether a version may become champion without ``--force``."""

    passes: bool
    reasons: list[str] = []
    metric: str | None = None
    value: float | None = None


class DataRecord(_Record):
    uri: str | None = None
    fingerprint: str | None = None
    rows: int | None = None
    window: Any = None
    as_of: str | None = None
    test_from: str | None = None  # rows from here on were held out: fair ground for a challenger match


class LineageRecord(_Record):
    metaflow_run: str | None = None
    code_version: str | None = None
    spec_sha256: str | None = None


class VersionRecord(_Record):
    # written by the registry
    version: int = Field(ge=1)
    created_at: datetime
    artifacts: dict[str, ArtifactRecord] = Field(min_length=1)
    reference: str | None = None
    run_key: str | None = None
    # written by training
    name: str | None = None
    task: str | None = None
    family: str | None = None
    params: dict[str, Any] = {}
    model_schema: dict[str, Any] | None = Field(default=None, alias="schema")  # "schema" shadows BaseModel's
    metrics: dict[str, float | None] = {}
    gates: GatesRecord | None = None
    data: DataRecord | None = None
    lineage: LineageRecord | None = None
    registered_at: datetime | None = None  # a model's age counts from here (a replay passes its own "now")
    # the probabilities' calibration on the reference at training (loopml.modeling.calibration); None for
    # regression and for versions registered before it was stored
    calibration: dict[str, Any] | None = None

    @property
    def has_onnx(self) -> bool:
        return "model.onnx" in self.artifacts

    @property
    def failed_gates(self) -> bool:
        return self.gates is not None and not self.gates.passes

    @property
    def fingerprint(self) -> dict[str, str]:
        """The artifacts' SHA-256s by name: two records with equal fingerprints hold the same model."""
        return {name: a.sha256 for name, a in self.artifacts.items()}

    @property
    def registered(self) -> datetime:
        return self.registered_at or self.created_at
