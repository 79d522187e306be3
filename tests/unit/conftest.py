"""Fixtures of the API tests (test_serving, test_api_inputs, test_feedback): an app on a MemoryStore
with the key check on (settings from ``_api``), and the small linear model registered as champion."""

from __future__ import annotations

import pytest

from handlers.deps import ApiDeps, build_deps
from loopml.storage import MemoryStore
from tests.support.api import settings


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("api")


@pytest.fixture
def deps(store: MemoryStore) -> ApiDeps:
    return build_deps(settings(), store)


@pytest.fixture
def served(linear_trained, store: MemoryStore) -> int:
    """The champion's version number (registered and promoted)."""
    return linear_trained.register(store)
