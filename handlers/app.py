"""The HTTP API's composition: the FastAPI app, wired to its adapters, routes, middleware and document.

The routes live in :mod:`handlers.routes`; what they answer in :mod:`handlers.responses`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from handlers.deps import ApiDeps, build_deps
from handlers.observability import Observe
from handlers.openapi import build_openapi
from handlers.routes import invalid_request, router


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load (and verify) the champion before the first request; on shutdown, wait for the prediction
    log's flush in flight, so nothing answered is missing from the log."""
    deps: ApiDeps = app.state.deps
    deps.server.current()
    yield
    deps.log.flush()


def create_app(deps: ApiDeps | None = None) -> FastAPI:
    """The API over ``deps`` (the real adapters from Settings when not given)."""
    deps = deps or build_deps()
    app = FastAPI(title="loopml", version="0.1.0", lifespan=lifespan, root_path=deps.settings.root_path,
                  description="Predictions from the registry's champion. Send `x-api-key` on every route but /health.")
    app.state.deps = deps
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(router)
    app.add_middleware(Observe, rollout=deps.rollout, enabled=deps.settings.observability == "json")
    app.openapi = lambda: build_openapi(app, deps)  # the champion's real schema, rebuilt when it changes
    return app
