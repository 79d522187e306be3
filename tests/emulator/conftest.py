"""The API as Lambda runs it: ``sam local start-api`` through podman (see infra/containers.sh), on
the built package (``sam build``: python3.13 wheels and bytecode), answering real HTTP requests.

Runs when LOOPML_EMULATOR=1 (``.ci/run`` sets it after ``bash infra/containers.sh all``); skipped
otherwise, since it needs podman, the Lambda-like image and a minute to start.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import LocalStore
from tests.support import REPO as ROOT
from tests.support.emulator import API_KEY_SHA256, SAM, SAM_ENV, removing_containers, sam_api
from tests.support.podman import podman_service


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator: the API under sam local start-api through podman")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LOOPML_EMULATOR") == "1":
        return
    skip = pytest.mark.skip(reason="set LOOPML_EMULATOR=1 (after bash infra/containers.sh all) to run sam local")
    for item in items:
        if "tests/emulator/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `sam build` output: .aws-sam/build when make test's sam_check made it, else a fresh build."""
    existing = ROOT / ".aws-sam" / "build"
    if (existing / "ApiFunction" / "handlers" / "api.py").exists() and (existing / "template.yaml").exists():
        return existing
    out = tmp_path_factory.mktemp("sam-build")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    # the API's zip only, as .ci/sam_check.sh builds it (CycleFunction is a container image: `make image`)
    subprocess.run([str(SAM), "build", "ApiFunction", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(out)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
    return out


@pytest.fixture(scope="session")
def emulator_store(tmp_path_factory: pytest.TempPathFactory, linear_trained) -> Path:
    root = tmp_path_factory.mktemp("emulator-store")
    linear_trained.register(LocalStore(root))
    os.chmod(root, 0o777)  # the container writes the prediction log and feedback here
    return root


@pytest.fixture(scope="session")
def api_url(built_package: Path, emulator_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A podman service of our own (its containers see the folder store at /mnt/store), then sam local."""
    work = tmp_path_factory.mktemp("sam-local")
    with podman_service(work, volumes=(f"{emulator_store}:/mnt/store:rw",)) as podman:
        env = {**os.environ, **podman, **SAM_ENV}
        with removing_containers(env, built_package / "ApiFunction"), \
                sam_api(built_package / "template.yaml", work, env,
                        {"LOOPML_STORE": "/mnt/store", "LOOPML_ROOT_PATH": "", "LOOPML_LOG_FLUSH_SECONDS": "0"},
                        {"ApiKeySha256": API_KEY_SHA256}) as url:
            yield url
