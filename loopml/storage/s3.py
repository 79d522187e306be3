"""S3 (or any S3-compatible endpoint: moto, LocalStack, MinIO) as the store.

boto3 honours ``AWS_ENDPOINT_URL``, so the same code talks to AWS or to a local endpoint.
A single PUT is atomic on S3; ``put_new`` and ``put_if`` are conditional writes (``If-None-Match: *``
and ``If-Match: <ETag>``). DataFrames go through awswrangler.

Every request has a connect/read timeout and a bounded number of attempts (``LOOPML_S3_TIMEOUT_SECONDS``,
``LOOPML_S3_MAX_ATTEMPTS``), a call that takes long logs the bucket/key it is waiting for, and every
failure is a :class:`StoreError` naming the bucket, the key and the endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.storage.base import KeyNotFound, Store, StoreError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
T = TypeVar("T")

# A conditional write that lost: the object changed (412), a concurrent conditional write is in
# flight (409), or the object was deleted since it was read (404 on If-Match).
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; ValueError for anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


def client_config() -> Any:
    """Timeouts and bounded retries from the settings: without them botocore waits 60 s per read and
    a stalled endpoint held `loopml status` for minutes."""
    from botocore.config import Config

    from loopml.settings import get_settings

    s = get_settings()
    return Config(connect_timeout=s.s3_timeout_seconds, read_timeout=s.s3_timeout_seconds,
                  retries={"total_max_attempts": s.s3_max_attempts, "mode": "standard"})  # the first one included


def _error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


class S3Store(Store):
    """A bucket and prefix on S3 or any S3-compatible endpoint (``AWS_ENDPOINT_URL``): compare-and-swap
    with conditional PUTs (If-Match / If-None-Match), every failure naming the object and the endpoint."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 S3 client (given, or made on first use with :func:`client_config`)."""
        if self._client is None:  # created lazily: nothing happens at import or construction
            import boto3

            self._client = boto3.client("s3", config=client_config())
        return self._client

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client talks to, for messages."""
        return str(self.client.meta.endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self._key(key)}" if key is not None else self.uri

    @contextmanager
    def _calling(self, op: str, key: str | None) -> Iterator[None]:
        """Name the object in every failure, and log what a slow call is waiting for."""
        from botocore.exceptions import BotoCoreError, ClientError

        from loopml.settings import get_settings

        where = self._where(key)
        watchdog = threading.Timer(get_settings().s3_stall_log_seconds, log.warning,
                                   ("still waiting for S3 %s %s at %s", op, where, self.endpoint))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
        except ClientError as err:
            code = _error_code(err)
            if code in ("NoSuchKey", "404") and key is not None:
                raise KeyNotFound(key) from None
            if code == "NoSuchBucket":
                raise StoreError(f"{where}: no such bucket {self.bucket!r} at {self.endpoint}") from None
            raise StoreError(f"{where}: S3 {op} failed: {code} {err.response.get('Error', {}).get('Message', '')}"
                             .rstrip()) from None
        except BotoCoreError as err:  # timeouts, refused connections, bad endpoint URLs
            raise StoreError(f"{where}: S3 {op} failed at {self.endpoint}: {err}") from None
        finally:
            watchdog.cancel()

    def _call(self, op: str, key: str | None, fn: Callable[[], T]) -> T:
        with self._calling(op, key):
            return fn()

    def require_existing(self) -> None:
        """A HEAD of the bucket: a missing bucket or an unreachable endpoint is named."""
        self._call("HeadBucket", None, lambda: self.client.head_bucket(Bucket=self.bucket))

    def get(self, key: str) -> bytes:
        """A GET of the object."""
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """A GET of the object; its ETag is the token."""
        def read() -> tuple[bytes, str]:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return reply["Body"].read(), reply["ETag"]

        return self._call("GetObject", key, read)

    def exists(self, key: str) -> bool:
        """A HEAD of the object: its metadata, never its bytes."""
        try:
            self._call("HeadObject", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except KeyNotFound:
            return False
        return True

    def put(self, key: str, data: bytes) -> None:
        """One PUT (atomic on S3)."""
        self._call("PutObject", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def put_new(self, key: str, data: bytes) -> bool:
        """A PUT with If-None-Match: *."""
        return self.put_if(key, data, None)

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        """A PUT with If-Match on the ETag; a retried PUT that finds our own bytes in place won."""
        from botocore.exceptions import ClientError

        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}

        def write() -> bool:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
                return True
            except ClientError as err:
                if _error_code(err) not in _LOST_RACE:
                    raise
                if not err.response.get("ResponseMetadata", {}).get("RetryAttempts"):
                    return False
            # botocore retried this PUT (a reply timed out or was lost): the retry fails its own
            # condition when the first attempt landed. Our bytes in place mean that attempt won
            # (callers make their bytes unique: a move id, a claim owner).
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read() == data
            except ClientError as err:
                if _error_code(err) in ("NoSuchKey", "404"):
                    return False
                raise

        return self._call("PutObject (conditional)", key, write)

    def list(self, prefix: str = "") -> list[str]:
        """ListObjectsV2 over every page under the prefix."""
        strip = len(self.prefix) + 1 if self.prefix else 0

        def pages() -> list[str]:
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                              Prefix=self._key(prefix)):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
            return keys

        return sorted(self._call("ListObjectsV2", prefix, pages))

    def delete(self, key: str) -> None:
        """One DELETE; a missing object is not an error."""
        self._call("DeleteObject", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    @staticmethod
    def _wrangler() -> Any:
        import awswrangler as wr

        wr.config.botocore_config = client_config()  # the same deadlines for awswrangler's own clients
        return wr

    def read_parquet(self, key: str) -> pd.DataFrame:
        """Read with awswrangler (its own S3 calls, the same deadlines)."""
        wr = self._wrangler()
        with self._calling("GetObject (parquet)", key):
            try:
                return wr.s3.read_parquet(self.url(key))
            except wr.exceptions.NoFilesFound:
                raise KeyNotFound(key) from None

    def write_parquet(self, key: str, df: pd.DataFrame) -> None:
        """Write with awswrangler as one object: a single PUT, so replacing a partition is atomic."""
        wr = self._wrangler()
        with self._calling("PutObject (parquet)", key):
            wr.s3.to_parquet(df, path=self.url(key), index=False)

    def read_parquet_many(self, keys: list[str]) -> pd.DataFrame:
        """Read many objects with awswrangler in one call."""
        import pandas as pd

        if not keys:
            return pd.DataFrame()
        wr = self._wrangler()
        with self._calling(f"GetObject (parquet, {len(keys)} objects)", keys[0]):
            return wr.s3.read_parquet([self.url(k) for k in keys]).reset_index(drop=True)
