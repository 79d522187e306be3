"""The stack deployed on LocalStack's own Python runtime (infra/localstack.sh), with the documented commands.

Runs when CI=true (``.ci/run``) or LOOPML_LOCALSTACK=1; skipped otherwise: it installs LocalStack into its own
venv the first time (a few minutes) and deploys a CloudFormation stack (about 20-30 s).
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localstack: deploys template.yaml to LocalStack's Python runtime")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("LOOPML_LOCALSTACK") == "1":
        return
    skip = pytest.mark.skip(reason="set LOOPML_LOCALSTACK=1 (or CI=true) to deploy the stack to LocalStack")
    for item in items:
        if "tests/deploy/" in str(item.fspath):
            item.add_marker(skip)
