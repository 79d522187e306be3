"""The composition root of the API: real adapters from Settings, or whatever a test passes in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from loopml.registry.registry import Registry
from loopml.serving.prediction_log import PredictionLog
from loopml.serving.rollout import Rollout
from loopml.serving.server import ModelServer
from loopml.settings import Settings
from loopml.storage import Store, from_uri


@dataclass
class ApiDeps:
    """The adapters the routes use: settings, store, the champion's server, the prediction log and the rollout."""

    settings: Settings
    store: Store
    server: ModelServer
    log: PredictionLog
    rollout: Rollout | None = None
    # proves a request was built inside this process (the Lambda PreTraffic check): random per
    # container, never sent anywhere, so no caller can present it
    internal_token: str = field(default_factory=lambda: secrets.token_hex(16))


def build_deps(settings: Settings | None = None, store: Store | None = None) -> ApiDeps:
    """The real adapters from ``settings`` (read from the environment when not given), on ``store`` if given."""
    settings = settings or Settings()
    store = store or from_uri(settings.store)
    registry = Registry(store)
    server = ModelServer(registry, alias=settings.alias, ttl=settings.model_ttl_seconds)
    candidate = ModelServer(registry, alias=settings.candidate_alias, ttl=settings.model_ttl_seconds, required=False)
    rollout = Rollout(server, candidate, registry, weight=settings.candidate_weight,
                      min_requests=settings.rollout_min_requests,
                      max_error_increase=settings.rollout_max_error_increase,
                      max_latency_ratio=settings.rollout_max_latency_ratio)
    plog = PredictionLog(store, flush_seconds=settings.log_flush_seconds, flush_rows=settings.log_flush_rows,
                         max_buffer=settings.log_max_buffer)
    return ApiDeps(settings, store, server, plog, rollout)
