"""Storage: one store root holds everything loopml persists.

The root is a folder (the embedded default) or ``s3://bucket/prefix``; ``from_uri`` picks the adapter.
Layout under the root (every writer goes through :mod:`loopml.storage.layout`):

    inputs/retrain-until-<date>.parquet          a retraining window's data, kept so the version stays traceable
    registry/versions/<NNNN>/version.json        metadata; written last, so a version exists only when complete
    registry/versions/<NNNN>/model.onnx|.joblib  artifacts, each checked against its SHA-256 before loading
    registry/versions/<NNNN>/reference.parquet   test-period features, predictions, targets (NannyML reference)
    registry/aliases/<alias>.json                e.g. champion, challenger: one PUT, so switching is atomic
    registry/ledger/<NNNNNNNN>.json              append-only, numbered: every alias change (when, who, from, to, why)
    predictions/date=<YYYY-MM-DD>/part.parquet   batch scores; a re-run replaces the partition in one PUT
    prediction-log/date=<YYYY-MM-DD>/<id>.jsonl  API predictions (id, time, features, outputs, version)
    feedback/date=<YYYY-MM-DD>/<id>.json         ground-truth labels by prediction id
    monitoring/runs/<run>/results.json|report.html   one folder per monitoring run
    monitoring/alerts/<time>-<id>.json           alerts raised
    monitoring/decisions/<time>-<id>.json        audit log of retraining decisions and their evidence
"""

from __future__ import annotations

from loopml.storage.base import KeyNotFound, Store
from loopml.storage.local import LocalStore
from loopml.storage.memory import MemoryStore

__all__ = ["Store", "KeyNotFound", "LocalStore", "MemoryStore", "from_uri"]


def from_uri(uri: str) -> Store:
    if uri.startswith("s3://"):
        from loopml.storage.s3 import S3Store

        return S3Store(uri)
    if uri.startswith("memory://"):
        return MemoryStore(uri[len("memory://") :])
    if "://" in uri:
        raise ValueError(f"unsupported store URI {uri!r}: use a folder path or s3://bucket/prefix")
    return LocalStore(uri)
