"""Helpers shared by the API tests: the key, settings for an app on a MemoryStore."""

from __future__ import annotations

import hashlib
from typing import Any

from loopml.settings import Settings

API_KEY = "s3cret-key"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
KEY = {"x-api-key": API_KEY}
MAX_ROWS = 5


def settings(**kw: Any) -> Settings:
    base = {"store": "memory://api", "api_key_sha256": API_KEY_SHA256, "max_batch_rows": MAX_ROWS,
            "model_ttl_seconds": 0, "log_flush_seconds": 3600, "log_flush_rows": 10_000}
    return Settings(**{**base, **kw})
