"""The integration tests run against the session's moto server (tests/conftest.py), its env set per module."""

from tests.support.moto import moto_server_env  # noqa: F401  (autouse fixture)
