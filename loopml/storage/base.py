"""The Store port: the only way loopml touches persistent state.

Keys are ``/``-separated relative paths (``registry/versions/0001/version.json``). Every adapter
guarantees that:

* ``put`` is atomic: a reader sees the old object or the new one, never half of one;
* ``put_new`` creates an object only if it does not exist yet (claims version numbers and ledger
  entries without a lock);
* ``put_if`` is a compare-and-swap on one key: it replaces the object only if it is still the one
  ``get_versioned`` returned (its token), so two writers racing on one key never both win. Tokens
  are opaque: the S3 ETag, a SHA-256 of the bytes elsewhere. A key written with ``put_if`` must only
  ever be written with ``put_if`` (a plain ``put`` would bypass the comparison).

Every failure is a :class:`StoreError` whose message names the object (bucket and key, or file).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas stays out of the serving path's imports
    import pandas as pd

__all__ = ["Store", "StoreError", "KeyNotFound", "CorruptObject", "content_token", "encode_json"]


class StoreError(Exception):
    """A store operation failed. The message names the object (s3://bucket/key or a file path), so
    the CLI can print it as one line."""


class KeyNotFound(StoreError, KeyError):
    """No object under this key (a KeyError too, for callers that predate StoreError)."""

    def __str__(self) -> str:
        return f"not found in the store: {self.args[0]}"


class CorruptObject(StoreError, ValueError):
    """An object that exists but cannot be parsed (e.g. invalid JSON); the message names it."""


def content_token(data: bytes) -> str:
    """The compare-and-swap token of adapters without a native one: equal bytes, equal token. An
    ABA swap back to identical bytes is harmless, since the caller would write the same thing."""
    return hashlib.sha256(data).hexdigest()


class Store(ABC):
    """The port every adapter implements (folder, memory, S3): objects under ``/``-separated keys, with
    atomic puts, create-if-absent and compare-and-swap (see the module's docstring). ``uri`` names the
    store's root in messages and URLs."""

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
    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the token :meth:`put_if` compares; raises :class:`KeyNotFound`."""

    @abstractmethod
    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Replace the object only if its token is still ``token`` (``None``: only if it does not
        exist). False, with nothing written, when another writer got there first."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; a missing key is not an error."""

    def require_existing(self) -> None:
        """Raise :class:`StoreError` ("no such store: ...") when the root itself does not exist, so
        that read-only commands do not mistake a mistyped path for an empty registry. An in-memory
        store always exists."""
        return None

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``, asked of its metadata (a HEAD, a stat, a lookup):
        never by downloading it, since the registry asks this of models and reference sets."""

    def url(self, key: str) -> str:
        """The object's full address (``s3://bucket/prefix/key``, a file path), for messages."""
        return f"{self.uri.rstrip('/')}/{key}"

    # JSON and DataFrames are built on bytes so that every adapter gets them for free;
    # an adapter may override the DataFrame pair with a native implementation (S3 uses awswrangler).
    def get_json(self, key: str) -> Any:
        """The JSON object at ``key``; :class:`CorruptObject` when it is not JSON."""
        return self.parse_json(key, self.get(key))

    def parse_json(self, key: str, data: bytes) -> Any:
        """JSON from an object's bytes; a parse error names the object instead of a bare position."""
        try:
            return json.loads(data)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            raise CorruptObject(f"{self.url(key)} is not valid JSON ({err})") from None

    def put_json(self, key: str, obj: Any) -> None:
        """Write ``obj`` as strict JSON (:func:`encode_json`)."""
        self.put(key, encode_json(obj))

    def put_new_json(self, key: str, obj: Any) -> bool:
        """:meth:`put_new` for a JSON object: for append-only logs (ledger, alerts, decisions)."""
        return self.put_new(key, encode_json(obj))

    def read_parquet(self, key: str) -> pd.DataFrame:
        """The Parquet object at ``key`` as a DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.get(key)))

    def write_parquet(self, key: str, df: pd.DataFrame) -> None:
        """Write ``df`` as one Parquet object (one atomic put)."""
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.put(key, buf.getvalue())

    def read_parquet_many(self, keys: list[str]) -> pd.DataFrame:
        """The Parquet objects at ``keys``, concatenated in order (an empty frame for no keys)."""
        import pandas as pd

        frames = [self.read_parquet(k) for k in keys]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def encode_json(obj: Any) -> bytes:
    """How every JSON object in the store is written: stable key order, readable diffs, and strict JSON
    (NaN and infinities become null: jq, JavaScript and most JSON parsers refuse them)."""
    return json.dumps(_finite(obj), indent=1, sort_keys=True, default=str, allow_nan=False).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # numpy scalars, without importing numpy
        return _finite(obj.item())
    return obj
