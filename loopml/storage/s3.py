"""S3 (or any S3-compatible endpoint: moto, LocalStack, MinIO) as the store.

boto3 honours ``AWS_ENDPOINT_URL``, so the same code talks to AWS or to a local endpoint.
A single PUT is atomic on S3; ``put_new`` uses a conditional write (``If-None-Match: *``).
DataFrames go through awswrangler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.storage.base import KeyNotFound, Store

if TYPE_CHECKING:
    import pandas as pd


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


class S3Store(Store):
    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:  # created lazily: nothing happens at import or construction
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise KeyNotFound(key) from None

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_new(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def list(self, prefix: str = "") -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def read_parquet(self, key: str) -> pd.DataFrame:
        import awswrangler as wr

        try:
            return wr.s3.read_parquet(self.url(key))
        except wr.exceptions.NoFilesFound:
            raise KeyNotFound(key) from None

    def write_parquet(self, key: str, df: pd.DataFrame) -> None:
        import awswrangler as wr

        # one object per call: a single PUT, so replacing a partition is atomic
        wr.s3.to_parquet(df, path=self.url(key), index=False)

    def read_parquet_many(self, keys: list[str]) -> pd.DataFrame:
        import awswrangler as wr
        import pandas as pd

        if not keys:
            return pd.DataFrame()
        return wr.s3.read_parquet([self.url(k) for k in keys]).reset_index(drop=True)
