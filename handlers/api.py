"""The Lambda entry point: ``handlers.api.handler``. The champion loads during the init phase."""

from mangum import Mangum

from handlers.app import create_app
from handlers.deps import build_deps

deps = build_deps()
deps.server.current()  # cold start: load and verify the champion once, before the first event
app = create_app(deps)
handler = Mangum(app, lifespan="off")
