"""Storage: one store root holds everything loopml persists.

The root is a folder (the embedded default) or ``s3://bucket/prefix``; ``from_uri`` picks the adapter.
Layout under the root: every key is built (and, where read back, parsed) by :mod:`loopml.storage.layout`,
whose table ``LAYOUT`` this block is checked against (tests/unit/storage/test_layout.py):

    inputs/retrain-until-<date>-<fingerprint>.parquet
                                                     a retraining window's data; never overwritten (keyed by content)
    registry/versions/<NNNN>/version.json            metadata; written last, so a version exists only when complete
    registry/versions/<NNNN>/model.<format>          artifacts (model.onnx, model.joblib), each checked against its SHA-256
                                                     before loading
    registry/versions/<NNNN>/reference.parquet       test-period features, predictions, targets (NannyML reference)
    registry/versions/<NNNN>/claim.json              the number's claim (create-if-absent) and its time
    registry/runs/<sha256(run key)>.json             the version a run registered: a retried step gets it back
    registry/aliases/<alias>.json                    champion, challenger: moved by compare-and-swap (put_if);
                                                     holds its move number, that move's ledger entry, the history
    registry/ledger/<alias>/<NNNNNNNN>.json          one per move that happened, keyed by move number, written
                                                     after the alias moved (when, who, from, to, why, forced)
    registry/ledger-void/<alias>/<NNNNNNNN>.json     unreadable ledger entries `loopml doctor --repair` set aside
    predictions/_manifest.json                       the committed batch scores (date -> object key, rows, model
                                                     versions, run id, scored_at): readers open only what it names
    predictions/date=<YYYY-MM-DD>/<run>.parquet      one object per date and score run, published all at once by a
                                                     compare-and-swap of the manifest (all dates of a run or none);
                                                     unreferenced ones (killed runs, replaced dates) are pruned after 24 h
    prediction-log/date=<YYYY-MM-DD>/<instance>-<block>-<first>-<last>.jsonl
                                                     API predictions (id, time, features, outputs, version), one flush
                                                     of one serving process's id block: an id's lookup lists one prefix
    prediction-log/date=<YYYY-MM-DD>/other-<uuid>.jsonl
                                                     logged predictions whose ids the serving process did not make
    feedback/date=<YYYY-MM-DD>/<arrival>-<instance>-<seq>.json
                                                     ground-truth labels by prediction id; a later label wins
    monitoring/runs/<start>_<end>_v<N>/results.json  what the run found, one folder per monitored window and version
    monitoring/runs/<start>_<end>_v<N>/report.html   the run's report, for people
    monitoring/alerts/<run>/<chunk>-<kind>.json      alerts raised, each created once (see loopml.cycle.monitoring_run)
    monitoring/notified/<run>/<chunk>-<kind>.json    the alert was published to SNS
    monitoring/decisions/<run>-<evidence>.json       audit log of retraining decisions and their evidence, each written once
    monitoring/retraining/<until>.json               a retraining's claim (create-if-absent)
    monitoring/retraining/<until>.started.json       what the claim started elsewhere (a deployed TrainFlow)
    monitoring/retraining/<until>.outcome.json       how the retraining ended: promoted or not, and why
    monitoring/latest.json                           the last monitoring run
    releases/<NNNNNNNN>.json                         every promote and rollback: environment, who, model and function from -> to
    tmp/<name>                                       scratch objects, deleted by their writer (the preflight's write probe)
"""

from __future__ import annotations

from loopml.storage.base import CorruptObject, KeyNotFound, Store, StoreError
from loopml.storage.local import LocalStore
from loopml.storage.memory import MemoryStore

__all__ = ["Store", "StoreError", "KeyNotFound", "CorruptObject", "LocalStore", "MemoryStore", "from_uri"]


def from_uri(uri: str) -> Store:
    """The store at ``uri``: ``s3://bucket/prefix``, ``memory://name`` or a folder path."""
    if uri.startswith("s3://"):
        from loopml.storage.s3 import S3Store

        return S3Store(uri)
    if uri.startswith("memory://"):
        return MemoryStore(uri[len("memory://") :])
    if "://" in uri:
        raise ValueError(f"unsupported store URI {uri!r}: use a folder path or s3://bucket/prefix")
    return LocalStore(uri)
