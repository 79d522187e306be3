"""moto's server (``ThreadedMotoServer``: S3, SNS, SQS, CloudFormation, Lambda over HTTP), for what must reach
AWS over the network: Metaflow's task subprocesses, the CLI in a subprocess, a container, `sam local`.

Metaflow reads its configuration (datastore, S3 endpoint) when it is first imported, so the server's env is
applied before a module's tests import ``metaflow`` (:func:`moto_server_env`); the flows themselves run in
subprocesses (``metaflow.Runner``) that inherit the same environment. In-process tests use moto's
``mock_aws`` instead (tests/conftest.py: ``mock_aws_env``, ``s3_bucket``).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopml.runtime.net import free_port

BUCKET = "loopml-it"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
_RESET = ("AWS_PROFILE", "LOOPML_SNS_TOPIC_ARN", "LOOPML_STORE")


@contextmanager
def running_moto(host: str = "127.0.0.1") -> Iterator[int]:
    """A ThreadedMotoServer of its own on a free port of ``host``; yields the port, stops it afterwards.

    moto's backends are process-wide: every server of one process serves the same buckets and topics."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port(host)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        yield port
    finally:
        server.stop()


def server_env(endpoint: str, metaflow_local: Path) -> dict[str, str]:
    """The env that points boto3, awswrangler and Metaflow (S3 datastore in :data:`BUCKET`, local metadata
    in ``metaflow_local``) at the server at ``endpoint``."""
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "METAFLOW_S3_ENDPOINT_URL": endpoint,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{BUCKET}/metaflow",
        "METAFLOW_DATATOOLS_S3ROOT": f"s3://{BUCKET}/metaflow/data",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(metaflow_local),
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_USER": "test",
        "NANNYML_DISABLE_USAGE_LOGGING": "1",
    }


def client(service: str, env: dict[str, str]) -> Any:
    """A boto3 client for ``service`` at the env's endpoint, with its credentials."""
    import boto3

    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module", autouse=True)
def moto_server_env(moto_server: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The server's env in ``os.environ`` for a module's tests, fixtures and the flows they start; restored after.

    Autouse where it is imported (the conftests of the suites that run against the server), so that other
    suites in the same session (tests/unit, with in-process ``mock_aws``) never see the server's endpoint."""
    env = moto_server["env"]
    saved = {k: os.environ.get(k) for k in [*env, *_RESET]}
    os.environ.update(env)
    for k in _RESET:
        os.environ.pop(k, None)
    from loopml.settings import get_settings

    get_settings.cache_clear()
    if "metaflow" in sys.modules:  # imported before the env was set: its config froze without the endpoint
        import metaflow.metaflow_config as mfc

        for name, value in (("DEFAULT_DATASTORE", "s3"), ("DATASTORE_SYSROOT_S3", env["METAFLOW_DATASTORE_SYSROOT_S3"]),
                            ("S3_ENDPOINT_URL", env["AWS_ENDPOINT_URL"]), ("DEFAULT_METADATA", "local"),
                            ("DATASTORE_SYSROOT_LOCAL", env["METAFLOW_DATASTORE_SYSROOT_LOCAL"])):
            setattr(mfc, name, value)
        mfc.DATATOOLS_CLIENT_PARAMS["endpoint_url"] = env["AWS_ENDPOINT_URL"]
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def list_keys(s3: Any, prefix: str) -> list[str]:
    """Every key under ``prefix`` in :data:`BUCKET`, sorted."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def put_parquet(s3: Any, key: str, df: pd.DataFrame) -> str:
    """``df`` as Parquet at ``key`` in :data:`BUCKET`; its s3:// URI."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
    return f"s3://{BUCKET}/{key}"
