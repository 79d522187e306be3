"""Stage 1, scoping: the problem a team writes down once, in ``project.yaml``.

A spec that is missing a field or has a wrong one fails with :class:`SpecError`, whose message names
the field (``features[2].type: ...``), before anything touches the store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ProblemSpec", "SpecError", "load_spec", "parse_spec", "spec_from_text", "METRICS"]

Task = Literal["binary", "multiclass", "regression"]

# metric name -> (tasks it applies to, higher is better)
METRICS: dict[str, tuple[tuple[str, ...], bool]] = {
    "roc_auc": (("binary", "multiclass"), True),
    "accuracy": (("binary", "multiclass"), True),
    "f1": (("binary", "multiclass"), True),
    "precision": (("binary",), True),
    "recall": (("binary",), True),
    "mae": (("regression",), False),
    "mse": (("regression",), False),
    "rmse": (("regression",), False),
    "r2": (("regression",), True),
}

FAMILIES = ("linear", "random_forest", "gradient_boosting", "extra_trees")


class SpecError(ValueError):
    """The project spec is invalid; the message names every wrong field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]


class Metric(_Strict):
    name: str
    threshold: float

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; choose one of {sorted(METRICS)}")
        return v

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.name][1]

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def __str__(self) -> str:
        return f"{self.name} {'>=' if self.higher_is_better else '<='} {self.threshold:g}"


class DataSources(_Strict):
    train: str = Field(min_length=1, description="training data: a CSV/Parquet path or s3:// URI")
    new: str | None = Field(default=None, description="new data to score: path or s3:// URI")
    labels: str | None = Field(default=None, description="late labels (id + target): path or URI")


class Fairness(_Strict):
    group: str = Field(min_length=1, description="column whose values define the groups")
    max_gap: float = Field(ge=0, description="largest allowed gap of the success metric between groups")
    min_group_size: int = Field(default=30, ge=1, description="groups with fewer test rows are reported, not judged")


class Budget(_Strict):
    """What serving and batch runs may cost; monitoring alerts when its cost estimate goes above it."""

    monthly_usd: float | None = Field(default=None, gt=0, description="projected cost of a month")
    per_1000_predictions_usd: float | None = Field(default=None, gt=0, description="cost of 1,000 predictions")


class Constraints(_Strict):
    p99_latency_ms: float | None = Field(default=None, gt=0)
    max_model_mb: float | None = Field(default=None, gt=0)
    interpretability: Literal["none", "prefer"] = "none"
    fairness: Fairness | None = None
    # where the champion is served: "lambda" (the default) requires an ONNX artifact, because the
    # Lambda package has no scikit-learn; "any" also promotes models served from a container
    serving: Literal["lambda", "any"] = "lambda"
    budget: Budget | None = None


class Candidate(_Strict):
    family: str
    n_iter: int = Field(default=4, ge=1, le=200)
    space: dict[str, list[Any]] | None = None

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        if v not in FAMILIES:
            raise ValueError(f"unknown model family {v!r}; choose one of {list(FAMILIES)}")
        return v


class DataQuality(_Strict):
    """Per chunk and feature; each rule is an alert kind of its own."""

    max_missing_rate_increase: float = Field(default=0.05, ge=0, le=1,
                                             description="missing-value rate above the reference's by more than this")
    max_unseen_rate: float = Field(default=0.01, ge=0, le=1, description="share of rows with a category never seen")
    max_out_of_range_rate: float = Field(default=0.01, ge=0, le=1,
                                         description="share of rows outside the reference's [min, max]")


class Cost(_Strict):
    """What the cost estimate assumes; prices come from loopml.monitoring.prices (overridable here)."""

    lambda_memory_mb: int = Field(default=1024, ge=128, le=10240, description="the API function's memory")
    batch_vcpus: float = Field(default=1.0, gt=0, description="resources of a batch run (scoring, monitoring)")
    batch_memory_gb: float = Field(default=2.0, gt=0)
    prices: dict[str, float] = Field(default_factory=dict, description="overrides of the dated price table")


class Monitoring(_Strict):
    chunk_period: Literal["D", "W", "M"] | None = "W"
    chunk_size: int | None = Field(default=None, ge=50)
    min_chunk_rows: int = Field(default=500, ge=1, description="a smaller chunk is shown but never alerts or decides")
    # A feature drifts in a chunk when its two-sample test (KS / chi2) rejects at drift_false_alarm_rate,
    # Bonferroni-corrected over the features, and the effect (KS D / Cramer's V) is at least min_drift_effect.
    drift_false_alarm_rate: float = Field(default=0.01, gt=0, lt=0.5)
    min_drift_effect: float = Field(default=0.05, ge=0, le=1)
    max_drifting_features: int = Field(default=0, ge=0)
    # the reconstruction-error band: a prediction interval at drift_false_alarm_rate, unless this fixes its width
    multivariate_std: float | None = Field(default=None, gt=0, description="multivariate alert beyond this many standard errors")
    reference_chunks: int = Field(default=20, ge=5, le=200, description="reference chunks behind the thresholds")
    alert_on_multivariate_drift: bool = True
    quality: DataQuality = DataQuality()
    cost: Cost = Cost()

    @model_validator(mode="after")
    def _chunks(self) -> Monitoring:
        if self.chunk_size is not None and self.chunk_size < self.min_chunk_rows:
            raise ValueError(f"chunk_size {self.chunk_size} is below min_chunk_rows {self.min_chunk_rows}")
        return self


class Retraining(_Strict):
    max_age_days: float | None = Field(default=None, gt=0)
    consecutive_chunks: int = Field(default=2, ge=1)
    window_days: int | None = Field(default=None, gt=0, description="train on the last N days of data")
    min_improvement: float = Field(default=0.0, ge=0, description="a challenger must beat the champion by this much")
    cooldown_days: float = Field(default=7, ge=0, description="after a challenger lost, no new retraining for this long")
    in_flight_hours: float = Field(default=24, gt=0, description="a retraining claimed this recently and not "
                                   "finished is in flight: no other starts; older, it is taken as abandoned")


class ProblemSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    task: Task
    target: str = Field(min_length=1)
    timestamp: str | None = None
    # how timestamp strings are written when they are not ISO 8601 (e.g. "%d/%m/%Y"): day-first and
    # month-first dates are indistinguishable, so loopml refuses to guess
    timestamp_format: str | None = None
    # the unit of epoch-number timestamps (s, ms, us, ns); without it, numbers are refused, not read as 1970
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = None
    id: str | None = None
    features: list[Feature] = Field(min_length=1)
    metric: Metric
    data: DataSources
    constraints: Constraints = Constraints()
    candidates: list[Candidate] = Field(
        default_factory=lambda: [Candidate(family="linear"), Candidate(family="random_forest")],
        min_length=1,
    )
    monitoring: Monitoring = Monitoring()
    retraining: Retraining = Retraining()
    seed: int = 42

    @model_validator(mode="after")
    def _consistent(self) -> ProblemSpec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: duplicated names {dupes}")
        for field, col in (("target", self.target), ("timestamp", self.timestamp), ("id", self.id)):
            if col is not None and col in names:
                raise ValueError(f"{field}: column {col!r} is also listed as a feature")
        if (self.timestamp_format or self.timestamp_unit) and not self.timestamp:
            raise ValueError("timestamp_format/timestamp_unit: set only together with timestamp")
        if self.timestamp_format and self.timestamp_unit:
            raise ValueError("timestamp_format and timestamp_unit: give one (strings or epoch numbers), not both")
        tasks, _ = METRICS[self.metric.name]
        if self.task not in tasks:
            raise ValueError(f"metric.name: {self.metric.name!r} does not apply to task {self.task!r}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    def fingerprint(self) -> str:
        """SHA-256 of the spec's canonical JSON: the same problem always hashes the same."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        lines.append(f"{loc or '<spec>'}: {msg}")
    return "; ".join(lines)


def parse_spec(raw: Any, source: str = "project.yaml") -> ProblemSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return ProblemSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(f"{source}: {_explain(err)}") from None


def spec_from_text(text: str, base_dir: str | Path, source: str = "project.yaml") -> ProblemSpec:
    """Parse and validate a spec's YAML text; relative data paths resolve against ``base_dir``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: not valid YAML: {err}") from None
    spec = parse_spec(raw, source)
    data = spec.data.model_dump()
    for key, uri in data.items():
        if uri and "://" not in uri and not Path(uri).is_absolute():
            data[key] = str((Path(base_dir) / uri).resolve())
    return spec.model_copy(update={"data": DataSources(**data)})


def load_spec(path: str | Path) -> ProblemSpec:
    """Read and validate a project.yaml. Relative data paths resolve against the file's folder."""
    p = Path(path)
    try:
        text = p.read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise SpecError(f"{p}: no such file") from None
    return spec_from_text(text, p.parent, str(p))
