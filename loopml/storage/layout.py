"""Key builders for the store layout documented in :mod:`loopml.storage`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopml.storage.base import Store

REGISTRY = "registry"
VERSIONS = f"{REGISTRY}/versions"
ALIASES = f"{REGISTRY}/aliases"
LEDGER = f"{REGISTRY}/ledger"
RUNS = f"{REGISTRY}/runs"
LEDGER_VOID = f"{REGISTRY}/ledger-void"
PREDICTIONS = "predictions"
PREDICTION_LOG = "prediction-log"
FEEDBACK = "feedback"
MONITORING = "monitoring"
ALERTS = f"{MONITORING}/alerts"
DECISIONS = f"{MONITORING}/decisions"
LATEST_RUN = f"{MONITORING}/latest.json"
NOTIFIED = f"{MONITORING}/notified"
RETRAINING = f"{MONITORING}/retraining"


def version_dir(version: int) -> str:
    return f"{VERSIONS}/{version:04d}"


def alias_key(alias: str) -> str:
    return f"{ALIASES}/{alias}.json"


def ledger_key(alias: str, move: int) -> str:
    """The ledger entry of an alias's ``move``-th move: one key per move, so writing it twice (a
    re-run, a repair) is a no-op, never a second entry."""
    return f"{LEDGER}/{alias}/{move:08d}.json"


def run_key_path(run_key: str) -> str:
    """Where the version registered by a run (e.g. a Metaflow run's pathspec) is claimed."""
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:40]
    return f"{RUNS}/{digest}.json"


def now_utc() -> datetime:
    return datetime.now(UTC)


def event_key(prefix: str, when: datetime | None = None) -> str:
    """A sortable, unique key for append-only logs (ledger, alerts, decisions)."""
    when = when or now_utc()
    return f"{prefix}/{when.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json"


def partition_key(prefix: str, date: str, name: str = "part.parquet") -> str:
    return f"{prefix}/date={date}/{name}"


def partition_dates(store: Store, prefix: str, start: date | None = None, end: date | None = None) -> list[str]:
    """The dates (YYYY-MM-DD) that have objects under ``<prefix>/date=…/``, within [start, end]."""
    found = {k[len(prefix) + 1:].split("/")[0].removeprefix("date=") for k in store.list(f"{prefix}/date=")}
    return sorted(d for d in found
                  if (start is None or d >= start.isoformat()) and (end is None or d <= end.isoformat()))
