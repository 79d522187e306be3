"""The Lambda entry point: ``handlers.api.handler``. The champion loads during the init phase."""

import gc
import json
from typing import Any

from mangum import Mangum

from handlers.app import create_app
from handlers.body import bad_base64
from handlers.deps import build_deps
from handlers.lifecycle import flush_on_shutdown

deps = build_deps()
deps.server.current()  # cold start: load and verify the champion once, before the first event
app = create_app(deps)
# when Lambda retires this container, the buffered prediction log is written first (SIGTERM, see lifecycle)
flush_on_shutdown(deps.log.flush)
_asgi = Mangum(app, lifespan="off")
gc.freeze()  # what init built lives as long as the container: keep it out of every GC pass


def pretraffic_event() -> dict[str, Any]:
    """POST /predict with the champion's example rows, as API Gateway would send it, marked with this
    container's internal token instead of an API key: the whole app answers, key check included."""
    model = deps.server.current()
    rows = model.examples if model else []
    body = json.dumps({"rows": rows} if rows else {"row": {}})
    headers = {"content-type": "application/json", "user-agent": "loopml-pretraffic"}
    return {"resource": "/predict", "path": "/predict", "httpMethod": "POST", "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": "/predict", "httpMethod": "POST", "path": "/predict", "stage": "pretraffic",
                               "requestId": "pretraffic", "identity": {"sourceIp": "127.0.0.1"},
                               "loopml_internal": deps.internal_token},
            "body": body, "isBase64Encoded": False}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: an API Gateway event (or the CodeDeploy hook's PreTraffic invoke) answered by the app."""
    if event.get("loopml") == "pretraffic":  # a direct invoke by the CodeDeploy hook (IAM-guarded)
        event = pretraffic_event()
    response = bad_base64(event) or _asgi(event, context)
    # Lambda may freeze or reclaim the container once we return: write what is due now (this waits
    # for a flush the background thread may have in flight)
    deps.log.flush_if_due()
    return response
