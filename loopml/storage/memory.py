"""An in-memory store: the fake for unit tests (no patching, no I/O)."""

from __future__ import annotations

import threading

from loopml.storage.base import KeyNotFound, Store, content_token


class MemoryStore(Store):
    """Objects in a dict (``objects``), named ``memory://<name>``; tests may read and set it directly."""

    def __init__(self, name: str = "test") -> None:
        self.uri = f"memory://{name}"
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()  # makes put_new and put_if atomic between threads

    def get(self, key: str) -> bytes:
        """The bytes from the dict; :class:`KeyNotFound` when absent."""
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFound(key) from None

    def exists(self, key: str) -> bool:
        """A dict lookup."""
        return key in self.objects

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The bytes and their SHA-256 as the token."""
        data = self.get(key)
        return data, content_token(data)

    def put(self, key: str, data: bytes) -> None:
        """Replace the entry."""
        self.objects[key] = bytes(data)

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the entry only if absent (under the lock)."""
        return self.put_if(key, data, None)

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Compare the token and replace under the lock."""
        with self._lock:
            current = self.objects.get(key)
            if (current is None) != (token is None):
                return False
            if current is not None and content_token(current) != token:
                return False
            self.objects[key] = bytes(data)
            return True

    def list(self, prefix: str = "") -> list[str]:
        """The keys with the prefix, sorted."""
        return sorted(k for k in list(self.objects) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        """Drop the entry; a missing one is not an error."""
        self.objects.pop(key, None)
