"""The Store port: the only way loopml touches persistent state.

Keys are ``/``-separated relative paths (``registry/versions/0001/version.json``). Every adapter
guarantees that ``put`` is atomic (a reader sees the old object or the new one, never half of one)
and that ``put_new`` creates an object only if it does not exist yet (used to claim version numbers
and ledger entries without a lock).
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas stays out of the serving path's imports
    import pandas as pd

__all__ = ["Store", "KeyNotFound"]


class KeyNotFound(KeyError):
    """No object under this key."""

    def __str__(self) -> str:
        return f"not found in the store: {self.args[0]}"


class Store(ABC):
    uri: str

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises :class:`KeyNotFound`."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Create or atomically replace an object."""

    @abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Create an object only if absent; False when the key already exists."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; a missing key is not an error."""

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except KeyNotFound:
            return False
        return True

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    # JSON and DataFrames are built on bytes so that every adapter gets them for free;
    # an adapter may override the DataFrame pair with a native implementation (S3 uses awswrangler).
    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    def put_json(self, key: str, obj: Any) -> None:
        self.put(key, _encode(obj))

    def put_new_json(self, key: str, obj: Any) -> bool:
        """:meth:`put_new` for a JSON object: for append-only logs (ledger, alerts, decisions)."""
        return self.put_new(key, _encode(obj))

    def read_parquet(self, key: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.get(key)))

    def write_parquet(self, key: str, df: pd.DataFrame) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.put(key, buf.getvalue())

    def read_parquet_many(self, keys: list[str]) -> pd.DataFrame:
        import pandas as pd

        frames = [self.read_parquet(k) for k in keys]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
