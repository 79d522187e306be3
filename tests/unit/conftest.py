"""Fixtures of the API tests (serving/, handlers/): an app on a MemoryStore with the key check on (settings
from :mod:`tests.support.api`), a client of it, and the small linear model registered as champion."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from handlers.app import create_app
from handlers.deps import ApiDeps, build_deps
from loopml.storage import MemoryStore
from tests.support.api import settings


@pytest.fixture
def store() -> MemoryStore:
    """The API's store, in memory."""
    return MemoryStore("api")


@pytest.fixture
def deps(store: MemoryStore) -> ApiDeps:
    """The app's dependencies on ``store``."""
    return build_deps(settings(), store)


@pytest.fixture
def client(deps: ApiDeps) -> Iterator[TestClient]:
    """The app on ``deps``, started: its lifespan runs for the length of the test."""
    with TestClient(create_app(deps)) as c:
        yield c


@pytest.fixture
def served(linear_trained, store: MemoryStore) -> int:
    """The champion's version number (registered and promoted)."""
    return linear_trained.register(store)
