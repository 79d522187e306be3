"""The champion held in memory and swapped atomically when the alias moves.

No pandas, scikit-learn or pyarrow is imported here when the champion has an ONNX artifact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopml.registry.records import VersionRecord
from loopml.registry.registry import IntegrityError, MissingVersion, ModelVersion, Registry, RegistryError
from loopml.serving.predictor import OnnxPredictor, Predictor, Schema, SklearnPredictor

log = logging.getLogger("loopml.serving")


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to answer: its number, its (validated) version record and its predictor."""

    version: int
    record: VersionRecord
    predictor: Predictor

    @property
    def examples(self) -> list[dict[str, Any]]:
        """Rows of the reference data training stored with the version; none for a version without them."""
        return list(self.record.examples)


class UnservableError(RuntimeError):
    """This deployment can never serve the version (e.g. no ONNX artifact and no scikit-learn)."""


def load_predictor(registry: Registry, version: ModelVersion) -> Predictor:
    """ONNX when the version has it (no pickle on the serving path); joblib otherwise. SHA-256 first."""
    schema = Schema.from_dict(version.record.model_schema or {})
    if version.has_onnx:
        return OnnxPredictor(registry.artifact(version, "model.onnx"), schema)
    try:
        import io

        import joblib  # only for models that did not convert to ONNX
    except ImportError:  # the Lambda package ships onnxruntime only
        raise UnservableError(f"version {version.number} has no ONNX artifact and this deployment has no "
                              "scikit-learn/joblib to load model.joblib") from None
    return SklearnPredictor(joblib.load(io.BytesIO(registry.artifact(version, "model.joblib"))), schema)


class ModelServer:
    """Holds the served model. ``current()`` re-reads the alias at most every ``ttl`` seconds and swaps
    the reference in one assignment, so a request that already holds a model finishes on it.
    A version that fails to load (for instance its SHA-256 check) is refused and the old one stays.

    Two messages describe what is wrong: ``problem`` is safe for anyone (no store URI, no bucket),
    ``last_error`` is the full story for operators and the logs."""

    def __init__(self, registry: Registry, alias: str = "champion", ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, required: bool = True) -> None:
        self.registry, self.alias, self.ttl, self.clock = registry, alias, ttl, clock
        self.required = required  # False for the candidate alias: its absence is the normal case
        self._model: LoadedModel | None = None
        self._checked_at: float | None = None
        self._refused: dict[int, str] = {}  # one entry per bad version: bounded by the registry, not traffic
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.problem: str | None = None
        self.target: int | None = None  # the version the alias names, as last read

    def current(self) -> LoadedModel | None:
        """The served model, after re-reading the alias if ``ttl`` has passed; None when none can be served."""
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.ttl:
            with self._lock:
                if self._checked_at is None or now - self._checked_at >= self.ttl:
                    self._refresh()
                    self._checked_at = now
        return self._model

    def fresh(self) -> bool:
        """True while ``current()`` would answer from memory, without reading the store."""
        checked = self._checked_at
        return checked is not None and self.clock() - checked < self.ttl

    @property
    def refused(self) -> dict[int, str]:
        """Versions this server will not load again, with why (public wording)."""
        return dict(self._refused)

    def _fail(self, public: str, detail: str, level: int = logging.ERROR) -> None:
        self.problem, self.last_error = public, detail
        log.log(level, detail)

    def _public(self, err: Exception) -> str:
        return str(err).replace(self.registry.store.uri, "the store")

    def _refresh(self) -> None:
        try:
            number = self.registry.alias(self.alias)
        except Exception as err:  # store unreachable: keep serving what we have
            self._fail(f"could not read the {self.alias} alias from the store ({type(err).__name__})",
                       f"could not read the {self.alias} alias: {err}", logging.WARNING)
            return
        self.target = number
        if number is None and not self.required:
            self.problem = self.last_error = None
            self._model = None
            return
        if number is None:
            self._fail(f"no {self.alias} in the registry", f"no {self.alias} in the registry at {self.registry.store.uri}",
                       logging.WARNING)
            return
        if self._model is not None and self._model.version == number:
            self.problem = self.last_error = None
            return
        if number in self._refused:
            return
        try:
            version = self.registry.get(number)
            model = LoadedModel(number, version.record, load_predictor(self.registry, version))
        except MissingVersion as err:  # not there (yet, or restored later): retry after the ttl, never refuse
            self._fail(f"could not load version {number} (missing)", f"could not load version {number}: {err}")
            return
        except (IntegrityError, RegistryError, UnservableError) as err:  # the version itself is bad: never retry
            self._refused[number] = self._public(err)
            self._fail(f"refused version {number}: {self._public(err)}", f"refused version {number}: {err}")
            return
        except Exception as err:  # the store or the runtime failed this time: keep serving, retry after the ttl
            self._fail(f"could not load version {number} ({type(err).__name__})",
                       f"could not load version {number}: {type(err).__name__}: {err}")
            return
        self._model = model  # the swap: one reference assignment
        self.problem = self.last_error = None
        log.info("serving version %s (%s)", number, model.predictor.kind)
