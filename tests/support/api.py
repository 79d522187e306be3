"""The HTTP API as tests reach it: the key and the settings of an app on a MemoryStore (in process, through
ASGI), and the real app served by uvicorn on a loopback port (:class:`ApiThread`)."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from loopml.runtime.net import free_port
from loopml.settings import Settings

API_KEY = "s3cret-key"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
KEY = {"x-api-key": API_KEY}
MAX_ROWS = 5


def settings(**kw: Any) -> Settings:
    """An app's settings on ``memory://api`` with the key check on, small batches, no model TTL; ``kw`` override."""
    base = {"store": "memory://api", "api_key_sha256": API_KEY_SHA256, "max_batch_rows": MAX_ROWS,
            "model_ttl_seconds": 0, "log_flush_seconds": 3600, "log_flush_rows": 10_000}
    return Settings(**{**base, **kw})


class ApiThread:
    """The real FastAPI app under uvicorn, on a loopback port, for the length of a ``with`` block."""

    def __init__(self, store_uri: str, api_key: str) -> None:
        import uvicorn

        from handlers.app import create_app
        from handlers.deps import build_deps

        settings = Settings(store=store_uri, api_key_sha256=hashlib.sha256(api_key.encode()).hexdigest())
        self.port = free_port()
        config = uvicorn.Config(create_app(build_deps(settings)), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
