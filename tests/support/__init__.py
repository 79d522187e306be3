"""What the test suites share, one module per concern; import them as ``from tests.support.<module> import ...``.

* :mod:`~tests.support.moto`: moto's S3/SNS/SQS server (``ThreadedMotoServer``), the env that points boto3,
  awswrangler and Metaflow at it, and small S3 helpers.
* :mod:`~tests.support.data`: the demo's car loan data (one builder) and the cheap spec the flows train on.
* :mod:`~tests.support.cli`: ``loopml`` run in a fresh interpreter, optionally killed at a fault point.
* :mod:`~tests.support.api`: the API key and settings of an app on a MemoryStore, and the app served over HTTP.
* :mod:`~tests.support.faults`: a stalling TCP proxy in front of a moto server.
* :mod:`~tests.support.podman`, :mod:`~tests.support.emulator`, :mod:`~tests.support.release`: podman for
  `sam local`, `sam local start-api` itself, and the release pipeline's stacks and steps.

The fixtures that several suites use are in tests/conftest.py; a free port comes from
:func:`loopml.runtime.net.free_port`, which the demo uses too.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
