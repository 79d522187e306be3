"""The container tests share the integration fixtures (one moto server per process, on 127.0.0.1)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from _support import aws_env, car_loan, moto_server, s3  # noqa: E402, F401  (fixtures)
