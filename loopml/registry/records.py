"""The typed records of everything the registry stores.

* :class:`VersionRecord`: ``registry/versions/<NNNN>/version.json``, what training knows about the
  model (:class:`TrainingRecord`, built by :mod:`loopml.modeling.register`) completed by the registry
  (number, time, artifacts with their SHA-256, reference set, run key);
* :class:`VersionClaim`: ``registry/versions/<NNNN>/claim.json``, the claim on a version number;
* :class:`RunClaim`: ``registry/runs/<sha>.json``, the version a run is registering or registered;
* :class:`AliasRecord`: ``registry/aliases/<alias>.json``, where the alias points, its move number,
  that move's :class:`LedgerEntry` and the champion history;
* :class:`LedgerEntry`: ``registry/ledger/<alias>/<NNNNNNNN>.json``, one alias move.

Every one is read and written through :mod:`loopml.storage.records` (a stored object that does not
match is a ``CorruptObject`` naming its key); the keys come from :mod:`loopml.storage.layout`. Fields
a writer added that are not typed here are kept as written (``extra="allow"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, StrictInt

from loopml.storage.base import encode_json
from loopml.storage.records import Record

__all__ = ["VersionRecord", "TrainingRecord", "ArtifactRecord", "GatesRecord", "DataRecord", "LineageRecord",
           "OnnxRecord", "LatencyRecord", "FairnessRecord", "GroupScore", "CandidateRecord", "DataWarning", "VersionClaim", "RunClaim",
           "AliasRecord", "LedgerEntry"]

# written as datetime.isoformat() ("+00:00", not pydantic's "Z"): the form every stored time has had
IsoDatetime = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json")]


class ArtifactRecord(Record):
    """One stored artifact of a version: its key and the SHA-256 it is checked against before use."""

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class GatesRecord(Record):
    """The verdict that decides whether a version may become champion without ``--force``."""

    passes: bool
    reasons: list[str] = []
    metric: str | None = None
    value: float | None = None


class DataRecord(Record):
    """The training data: where it came from, its content fingerprint and the rows held out."""

    uri: str | None = None
    fingerprint: str | None = None
    rows: int | None = None
    window: Any = None
    as_of: str | None = None
    fit_rows: int | None = None
    test_rows: int | None = None
    test_from: str | None = None  # rows from here on were held out: fair ground for a challenger match


class LineageRecord(Record):
    """What made the version: the Metaflow run, the code and the spec."""

    metaflow_run: str | None = None
    code_version: str | None = None
    spec_sha256: str | None = None


class OnnxRecord(Record):
    """The ONNX export: the largest difference from scikit-learn's outputs, or why it failed."""

    parity_max_abs_diff: float | None = None
    error: str | None = None


class LatencyRecord(Record):
    """Prediction latency measured at training, and the runtime serving will use."""

    p50: float | None = None
    p99: float | None = None
    served_as: str | None = None


class GroupScore(Record):
    """The success metric on one group's test rows; groups smaller than the spec's minimum are not judged."""

    n: int
    value: float | None = None
    judged: bool = False
    note: str | None = None


class FairnessRecord(Record):
    """The success metric per group and the largest gap between the judged groups."""

    group: str | None = None
    metric: str | None = None
    per_group: dict[str, GroupScore] = {}
    gap: float | None = None
    judged_groups: int | None = None
    min_group_size: int | None = None
    max_gap: float | None = None
    passes: bool | None = None


class CandidateRecord(Record):
    """One candidate as model selection compared it (:func:`loopml.modeling.select.select`)."""

    family: str
    valid_score: float | None = None
    latency_p99_ms: float | None = None
    size_mb: float | None = None
    served_as: str | None = None
    eligible: bool | None = None
    excluded_because: list[str] = []
    selected: bool | None = None


class DataWarning(Record):
    """A warning about the training data or the reference set (``kind``: e.g. ``small_reference``)."""

    kind: str
    column: str | None = None
    message: str = ""


class TrainingRecord(Record):
    """What training writes about a version (:func:`loopml.modeling.register.training_record`); the
    registry completes it into a :class:`VersionRecord`. Optional throughout: versions registered by
    tests, or before a field existed, lack some."""

    name: str | None = None
    task: str | None = None
    family: str | None = None
    params: dict[str, Any] = {}
    model_schema: dict[str, Any] | None = Field(default=None, alias="schema")  # "schema" shadows BaseModel's
    examples: list[dict[str, Any]] = []  # rows as an API client sends them: the OpenAPI document's examples
    metrics: dict[str, float | None] = {}
    valid_score: float | None = None
    data: DataRecord | None = None
    lineage: LineageRecord | None = None
    onnx: OnnxRecord | None = None
    latency_ms: LatencyRecord | None = None
    selection: list[CandidateRecord] = []
    selection_reason: str | None = None
    fairness: FairnessRecord | None = None
    importance: list[dict[str, Any]] = []
    gates: GatesRecord | None = None
    warnings: list[DataWarning] = []
    # the probabilities' calibration on the reference at training (loopml.modeling.calibration); None for
    # regression; unset for versions registered before it was stored
    calibration: dict[str, Any] | None = None
    registered_at: IsoDatetime | None = None  # a model's age counts from here (a replay passes its own "now")

    def to_json(self) -> bytes:
        """Strict JSON of :meth:`as_written`: the file holds what the writer wrote, no defaults added, so
        a reader can tell a version registered before a field existed (``"calibration" in meta``)."""
        return encode_json(self.as_written())


class VersionRecord(TrainingRecord):
    """``version.json``: the training record completed by the registry, which writes it last."""

    record_name = "version"

    version: StrictInt = Field(ge=1)
    created_at: IsoDatetime
    artifacts: dict[str, ArtifactRecord] = Field(min_length=1)
    reference: str | None = None
    run_key: str | None = None  # the run that registered it: a retried run gets this version back

    @property
    def has_onnx(self) -> bool:
        """True when the version has an ONNX artifact (served without pickle)."""
        return "model.onnx" in self.artifacts

    @property
    def fingerprint(self) -> dict[str, str]:
        """The artifacts' SHA-256s by name: two records with equal fingerprints hold the same model."""
        return {name: a.sha256 for name, a in self.artifacts.items()}

    @property
    def registered(self) -> datetime:
        """When the model's age starts: its registration time (a replay's "now"), else its creation."""
        return self.registered_at or self.created_at


class VersionClaim(Record):
    """``claim.json``: a version number taken (create-if-absent) and when, so `doctor` can tell an
    abandoned number from a registration in progress. ``{}`` is a claim too (its time unknown)."""

    record_name = "version claim"

    claimed_at: IsoDatetime | None = None
    owner: str | None = None


class RunClaim(Record):
    """``registry/runs/<sha>.json``: the run ``run_key`` registers (or registered) version ``version``.
    ``owner`` tells the attempt holding it; after a grace period from ``claimed_at`` others may take over."""

    record_name = "run claim"

    run_key: str
    version: StrictInt
    claimed_at: IsoDatetime
    owner: str


class LedgerEntry(Record):
    """One alias move: when, who, from where to where, why, and what ``--force`` overrode."""

    record_name = "ledger entry"

    when: IsoDatetime
    who: str
    alias: str
    from_: StrictInt | None = Field(alias="from")
    to: StrictInt | None
    action: str
    why: str
    move: StrictInt = Field(ge=1)
    forced: bool = False
    overrode: list[str] = []
    id: str


class AliasRecord(Record):
    """An alias: the version it names (None: cleared), since when, its move number, the ledger entry
    of that move (written to the ledger after the swap) and the champion history."""

    record_name = "alias"

    version: StrictInt | None
    since: IsoDatetime | None = None
    move: StrictInt = Field(ge=0)
    entry: LedgerEntry | None = None
    history: list[StrictInt] = []
