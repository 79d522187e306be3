"""The composition root of the API: real adapters from Settings, or whatever a test passes in."""

from __future__ import annotations

from dataclasses import dataclass

from loopml.registry import Registry
from loopml.serving import ModelServer, PredictionLog
from loopml.settings import Settings
from loopml.storage import Store, from_uri


@dataclass
class ApiDeps:
    settings: Settings
    store: Store
    server: ModelServer
    log: PredictionLog


def build_deps(settings: Settings | None = None, store: Store | None = None) -> ApiDeps:
    settings = settings or Settings()
    store = store or from_uri(settings.store)
    server = ModelServer(Registry(store), alias=settings.alias, ttl=settings.model_ttl_seconds)
    plog = PredictionLog(store, flush_seconds=settings.log_flush_seconds, flush_rows=settings.log_flush_rows,
                         max_buffer=settings.log_max_buffer)
    return ApiDeps(settings, store, server, plog)
