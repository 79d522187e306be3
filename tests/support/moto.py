"""Shared by tests/integration and tests/e2e (both conftests import it): one moto S3/SNS/SQS server for the session, real Metaflow flows against it.

Metaflow reads its configuration (datastore, S3 endpoint) when it is first imported, so the
environment is set here, before anything imports ``metaflow`` in this process; the flows themselves
run in subprocesses (``metaflow.Runner``) that inherit the same environment.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import boto3
import pandas as pd
import pytest
import yaml

BUCKET = "loopml-it"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVER: dict = {}
_RESET = ("AWS_PROFILE", "LOOPML_SNS_TOPIC_ARN", "LOOPML_STORE")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A ThreadedMotoServer and the env that points boto3, awswrangler and Metaflow at it.

    One per process even when both tests/integration and tests/e2e ask for it (each conftest
    registers this fixture): Metaflow's in-process config can only be pointed at one endpoint.
    The env itself is applied per module by ``aws_env`` so that other suites in the same pytest
    session (tests/unit, with in-process ``mock_aws``) never see the server's endpoint.
    """
    if _SERVER:
        yield _SERVER["info"]
        return
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    mf_local = tmp_path_factory.mktemp("metaflow-local")  # local *metadata* lives here, not in the repo
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "METAFLOW_S3_ENDPOINT_URL": endpoint,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{BUCKET}/metaflow",
        "METAFLOW_DATATOOLS_S3ROOT": f"s3://{BUCKET}/metaflow/data",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(mf_local),
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_USER": "test",
        "NANNYML_DISABLE_USAGE_LOGGING": "1",
    }
    _client("s3", env).create_bucket(Bucket=BUCKET)
    info = {"endpoint": endpoint, "bucket": BUCKET, "env": env}
    _SERVER["info"] = info
    try:
        yield info
    finally:
        server.stop()


def _client(service: str, env: dict[str, str]):
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module", autouse=True)
def aws_env(moto_server):
    """The server's env for this module's tests, fixtures and the flows they start; restored after."""
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


@pytest.fixture(scope="session")
def s3(moto_server):
    return _client("s3", moto_server["env"])


def list_keys(s3, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def put_parquet(s3, key: str, df: pd.DataFrame) -> str:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
    return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="session")
def car_loan():
    """NannyML's car loan data (shipped in the package): (train, new, labels), unmodified."""
    from loopml.demo.data import car_loan_frames

    return car_loan_frames()


def small_spec(data: dict[str, str], threshold: float = 0.9, **overrides) -> dict:
    """The demo's car loan spec, made cheap: one-iteration candidates, S3 data URIs."""
    from loopml.demo.data import car_loan_spec

    spec = car_loan_spec("unused", threshold=threshold)
    spec["data"] = data
    spec["candidates"] = [{"family": "linear", "n_iter": 1}, {"family": "random_forest", "n_iter": 1,
                                                              "space": {"n_estimators": [30], "max_depth": [8]}}]
    spec["retraining"] = {"max_age_days": 365, "consecutive_chunks": 2}
    # small samples make group metrics noisy: keep the fairness gate, with room for 6000 rows' noise
    spec["constraints"] = {"p99_latency_ms": 50, "fairness": {"group": "salary_range", "max_gap": 0.15}}
    for k, v in overrides.items():
        spec[k] = v
    return spec


def write_spec(path: Path, spec: dict) -> str:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)
