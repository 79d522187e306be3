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


# the registry's keys: built and parsed here only ----------------------------------------------
VERSION_JSON = "version.json"  # written last: a version exists once this does
VERSION_CLAIM = "claim.json"
REFERENCE = "reference.parquet"
# what to list to find every version folder's objects, every alias, every run claim
VERSIONS_PREFIX = f"{VERSIONS}/"
ALIASES_PREFIX = f"{ALIASES}/"
RUNS_PREFIX = f"{RUNS}/"


def version_dir(version: int) -> str:
    """The folder of version ``version``: ``registry/versions/0007``."""
    return f"{VERSIONS}/{version:04d}"


def version_json(version: int) -> str:
    """The version's record; its presence is what makes the version exist."""
    return artifact_key(version, VERSION_JSON)


def version_claim_key(version: int) -> str:
    """The create-if-absent claim on a version number, written before anything else of the version."""
    return artifact_key(version, VERSION_CLAIM)


def reference_key(version: int) -> str:
    """The version's reference set (test-period features, predictions, targets) for monitoring."""
    return artifact_key(version, REFERENCE)


def artifact_key(version: int, name: str) -> str:
    """An object in the version's folder: an artifact (``model.onnx``), or one of the names above."""
    return f"{version_dir(version)}/{name}"


def parse_version_key(key: str) -> tuple[int, str] | None:
    """``(number, name)`` of a key in a version's folder (the name may hold ``/``); None for any other key."""
    number, sep, name = key.removeprefix(VERSIONS + "/").partition("/")
    if not key.startswith(VERSIONS + "/") or not sep or not number.isdigit() or not name:
        return None
    return int(number), name


def alias_key(alias: str) -> str:
    """The alias object (``champion``, ``challenger``, ``candidate``), moved by compare-and-swap."""
    return f"{ALIASES}/{alias}.json"


def parse_alias_key(key: str) -> str | None:
    """The alias an alias key names; None for any other key."""
    name = key.removeprefix(ALIASES + "/")
    if name == key or "/" in name or not name.endswith(".json"):
        return None
    return name.removesuffix(".json")


def ledger_key(alias: str, move: int) -> str:
    """The ledger entry of an alias's ``move``-th move: one key per move, so writing it twice (a
    re-run, a repair) is a no-op, never a second entry."""
    return f"{ledger_prefix(alias)}{move:08d}.json"


def ledger_prefix(alias: str | None = None) -> str:
    """Where the ledger entries of ``alias`` are (all aliases' with None), for :meth:`Store.list`."""
    return f"{LEDGER}/{alias}/" if alias else f"{LEDGER}/"


def parse_ledger_key(key: str) -> tuple[str, int] | None:
    """``(alias, move)`` of a ledger entry's key; None for any other key."""
    alias, sep, name = key.removeprefix(ledger_prefix()).partition("/")
    move = name.removesuffix(".json")
    if not key.startswith(ledger_prefix()) or not sep or not move.isdigit() or not name.endswith(".json"):
        return None
    return alias, int(move)


def ledger_void_key(key: str) -> str:
    """Where `loopml doctor --repair` sets a ledger entry aside: the same name under ``ledger-void``."""
    return f"{LEDGER_VOID}/{key.removeprefix(ledger_prefix())}"


def run_key_path(run_key: str) -> str:
    """Where the version registered by a run (e.g. a Metaflow run's pathspec) is claimed."""
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:40]
    return f"{RUNS}/{digest}.json"


def now_utc() -> datetime:
    """The current time, aware, in UTC: the one clock stored times are written with."""
    return datetime.now(UTC)


def event_key(prefix: str, when: datetime | None = None) -> str:
    """A sortable, unique key for append-only logs (ledger, alerts, decisions)."""
    when = when or now_utc()
    return f"{prefix}/{when.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json"


def partition_key(prefix: str, date: str, name: str = "part.parquet") -> str:
    """The object ``name`` in the ``date=YYYY-MM-DD`` partition under ``prefix``."""
    return f"{prefix}/date={date}/{name}"


def partition_dates(store: Store, prefix: str, start: date | None = None, end: date | None = None) -> list[str]:
    """The dates (YYYY-MM-DD) that have objects under ``<prefix>/date=…/``, within [start, end]."""
    found = {k[len(prefix) + 1:].split("/")[0].removeprefix("date=") for k in store.list(f"{prefix}/date=")}
    return sorted(d for d in found
                  if (start is None or d >= start.isoformat()) and (end is None or d <= end.isoformat()))
