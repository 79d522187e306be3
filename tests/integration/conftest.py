"""Fixtures for the integration tests: see ``_support`` (shared with tests/e2e)."""

from _support import aws_env, car_loan, moto_server, s3  # noqa: F401  (fixtures)
