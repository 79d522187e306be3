"""The fixtures every suite shares: a small car-loan problem (NannyML's shipped data, offline), one model
trained through the real core functions once per session and registered into whatever Store a test hands
over, moto in process (``mock_aws``) and moto's server (started only if a test asks for it).

The suites that run against the server import the autouse ``moto_server_env`` into their conftest
(tests/support/moto.py); helpers are in tests/support/.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("METAFLOW_USER", "pytest")

from loopml.demo.data import car_loan_spec  # noqa: E402
from loopml.modeling.evaluate import Evaluation  # noqa: E402
from loopml.modeling.inprocess import InProcessRun, fit_in_process  # noqa: E402
from loopml.modeling.register import register_version  # noqa: E402
from loopml.modeling.tune import CandidateResult  # noqa: E402
from loopml.registry.registry import Registry  # noqa: E402
from loopml.spec import ProblemSpec, load_spec, parse_spec  # noqa: E402
from loopml.storage import Store  # noqa: E402
from tests.support.data import CarLoan  # noqa: E402
from tests.support.data import car_loan as build_car_loan  # noqa: E402
from tests.support.moto import BUCKET as SERVER_BUCKET  # noqa: E402
from tests.support.moto import client, running_moto, server_env  # noqa: E402

TRAIN_ROWS = 3000
NEW_ROWS = 1000
BUCKET = "loopml-test"
FAKE_RUN = "TrainFlow/1700000000000000/register/3"


# ---------------------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def car_loan() -> CarLoan:
    """(train, new, labels), subsampled evenly over time so every period is represented."""
    return build_car_loan(TRAIN_ROWS, NEW_ROWS)


@pytest.fixture(scope="session")
def car_loan_full() -> CarLoan:
    """(train, new, labels) whole, as the demo ships them: for the flows, which sample what they need."""
    return build_car_loan()


@pytest.fixture(scope="session")
def car_loan_dir(tmp_path_factory: pytest.TempPathFactory, car_loan: CarLoan) -> Path:
    """The sampled frames as train/new/labels.parquet in a session folder (the spec's data URIs)."""
    d = tmp_path_factory.mktemp("car_loan")
    train, new, labels = car_loan
    train.to_parquet(d / "train.parquet", index=False)
    new.to_parquet(d / "new.parquet", index=False)
    labels.to_parquet(d / "labels.parquet", index=False)
    return d


@pytest.fixture(scope="session")
def spec_raw(car_loan_dir: Path) -> dict[str, Any]:
    """The raw spec dict (tests copy and tweak it); candidates tuned with one trial each."""
    raw = car_loan_spec(str(car_loan_dir))
    raw["candidates"] = [{"family": "linear", "n_iter": 1}, {"family": "random_forest", "n_iter": 1}]
    # pinned, not inherited from the demo: no latency budget (timings must not decide a test) and no
    # fairness gate, so the base model passes its gates; tests that need constraints set their own
    raw["constraints"] = {"max_model_mb": 50}
    # the test data is small (about 100 rows a month): let its chunks judge, as the default 500 would not
    raw["monitoring"] = {**raw["monitoring"], "min_chunk_rows": 50}
    return raw


@pytest.fixture
def make_raw(spec_raw: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """A deep copy of the spec dict with top-level keys replaced."""

    def _make(**changes: Any) -> dict[str, Any]:
        raw = copy.deepcopy(spec_raw)
        raw.update(changes)
        return raw

    return _make


@pytest.fixture(scope="session")
def spec(spec_raw: dict[str, Any], car_loan_dir: Path) -> ProblemSpec:
    """``spec_raw`` written as project.yaml beside the data and loaded."""
    path = car_loan_dir / "project.yaml"
    path.write_text(yaml.safe_dump(spec_raw, allow_unicode=True))
    return load_spec(path)


def json_rows(df: pd.DataFrame, spec: ProblemSpec) -> list[dict[str, Any]]:
    """Feature rows as an API client would send them (JSON types, null for missing)."""
    rows = []
    for rec in df[spec.feature_names].to_dict("records"):
        row = {}
        for name, kind in ((f.name, f.type) for f in spec.features):
            v = rec[name]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                row[name] = None
            elif kind == "numeric":
                row[name] = float(v)
            else:
                row[name] = v if isinstance(v, bool) else str(v)
        rows.append(row)
    return rows


@pytest.fixture(scope="session")
def sample_rows(car_loan: CarLoan, spec: ProblemSpec) -> list[dict[str, Any]]:
    """Twenty new rows as an API client sends them."""
    return json_rows(car_loan[1].head(20), spec)


# -------------------------------------------------------------------------------- training
class Trained(InProcessRun):
    """The TrainFlow's steps, one core function each, in process (``fit_in_process``), plus helpers."""

    def result(self, family: str) -> CandidateResult:
        return next(r for r in self.results if r.family == family)

    def register(self, store: Store, *, promote: bool = True, spec: ProblemSpec | None = None,
                 evaluation: Evaluation | None = None) -> int:
        """Register the session's winner into ``store`` through the real register_version."""
        number, _ = register_version(Registry(store), spec or self.spec, self.data, self.winner, self.selection,
                                     evaluation or self.evaluation, self.classes, FAKE_RUN, promote=promote)
        return number


def train_spec(spec: ProblemSpec) -> Trained:
    """The TrainFlow's steps for ``spec``, in process."""
    return Trained(**vars(fit_in_process(spec)))


@pytest.fixture(scope="session")
def trained(spec: ProblemSpec) -> Trained:
    """The session's model: both candidate families tuned on the sampled data."""
    return train_spec(spec)


@pytest.fixture(scope="session")
def linear_trained(spec_raw: dict[str, Any]) -> Trained:
    """A linear-only model: whose ONNX artifact is small and quick to load (serving tests)."""
    raw = copy.deepcopy(spec_raw)
    raw["candidates"] = [{"family": "linear", "n_iter": 1}]
    return train_spec(parse_spec(raw))


# ------------------------------------------------------------------------------ AWS (in-process)
@pytest.fixture
def mock_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no endpoint override: boto3 must talk to moto's in-process mock only."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(mock_aws_env: None) -> Iterator[str]:
    """An empty bucket inside moto's ``mock_aws``; yields its name."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield BUCKET


# ------------------------------------------------------------------------------ AWS (moto's server)
@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One ThreadedMotoServer for the session, with a bucket, and the env that points boto3, awswrangler and
    Metaflow at it: ``{"endpoint", "bucket", "env"}``.

    One per process: Metaflow's in-process config can only be pointed at one endpoint. The env is applied
    per module by the autouse ``moto_server_env`` of the suites that import it."""
    with running_moto() as port:
        endpoint = f"http://127.0.0.1:{port}"
        env = server_env(endpoint, tmp_path_factory.mktemp("metaflow-local"))  # local *metadata*, not in the repo
        client("s3", env).create_bucket(Bucket=SERVER_BUCKET)
        yield {"endpoint": endpoint, "bucket": SERVER_BUCKET, "env": env}


@pytest.fixture(scope="session")
def s3(moto_server: dict[str, Any]) -> Any:
    """An S3 client of the moto server."""
    return client("s3", moto_server["env"])
