"""The Lambda entry point: ``handlers.api.handler``. The champion loads during the init phase."""

import gc
from typing import Any

from mangum import Mangum

from handlers.app import create_app
from handlers.body import bad_base64
from handlers.deps import build_deps

deps = build_deps()
deps.server.current()  # cold start: load and verify the champion once, before the first event
app = create_app(deps)
_asgi = Mangum(app, lifespan="off")
gc.freeze()  # what init built lives as long as the container: keep it out of every GC pass


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = bad_base64(event) or _asgi(event, context)
    # Lambda may freeze or reclaim the container once we return: write what is due now (this waits
    # for a flush the background thread may have in flight)
    deps.log.flush_if_due()
    return response
