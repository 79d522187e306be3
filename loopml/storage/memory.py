"""An in-memory store: the fake for unit tests (no patching, no I/O)."""

from __future__ import annotations

import threading

from loopml.storage.base import KeyNotFound, Store


class MemoryStore(Store):
    def __init__(self, name: str = "test") -> None:
        self.uri = f"memory://{name}"
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    def put_new(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = bytes(data)
            return True

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
