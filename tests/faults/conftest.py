"""Fault tests: kills at named points (``LOOPML_FAULT``, :mod:`tests.support.cli`) and a moto server behind a
stalling proxy (:mod:`tests.support.faults`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.faults import MotoBehindProxy, moto_behind_proxy


@pytest.fixture(scope="module")
def moto_proxy() -> Iterator[MotoBehindProxy]:
    with moto_behind_proxy() as env:
        yield env


@pytest.fixture
def proxy(moto_proxy: MotoBehindProxy) -> Iterator[MotoBehindProxy]:
    """The module's server and proxy, reset to pass-through after each test."""
    yield moto_proxy
    moto_proxy.proxy.reset()
