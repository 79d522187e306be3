"""Key builders for the store layout documented in :mod:`loopml.storage`."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
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


def partition_prefix(prefix: str, date: str) -> str:
    """Where the objects of one date of a date-partitioned prefix are."""
    return f"{prefix}/date={date}/"


def partition_key(prefix: str, date: str, name: str = "part.parquet") -> str:
    """One object of one date of a date-partitioned prefix."""
    return f"{partition_prefix(prefix, date)}{name}"


def partition_dates(store: Store, prefix: str, start: date | None = None, end: date | None = None) -> list[str]:
    """The dates (YYYY-MM-DD) that have objects under ``<prefix>/date=…/``, within [start, end]."""
    found = {k[len(prefix) + 1:].split("/")[0].removeprefix("date=") for k in store.list(f"{prefix}/date=")}
    return sorted(d for d in found
                  if (start is None or d >= start.isoformat()) and (end is None or d <= end.isoformat()))


# ---------------------------------------------------------------------------- outside the registry
# Every key below is built here and nowhere else; the few keys loopml lists and reads back are parsed
# here too, so a change of layout is a change of this block (and of the table at the end).
INPUTS = "inputs"
RELEASES = "releases"
TMP = "tmp"
MONITORING_RUNS = f"{MONITORING}/runs"
MANIFEST = f"{PREDICTIONS}/_manifest.json"
PREDICTION_OBJECTS = f"{PREDICTIONS}/date="  # the prefix of every score run's objects


def monitoring_results_key(run_id: str) -> str:
    """A monitoring run's results (``loopml.cycle.records.MonitoringResults``)."""
    return f"{MONITORING_RUNS}/{run_id}/results.json"


def monitoring_report_key(run_id: str) -> str:
    """A monitoring run's HTML report."""
    return f"{MONITORING_RUNS}/{run_id}/report.html"


def results_run_id(key: str) -> str | None:
    """The run whose results ``key`` holds, or None when ``key`` is not a run's results."""
    run_id, sep, rest = key.removeprefix(f"{MONITORING_RUNS}/").partition("/")
    return run_id if key.startswith(f"{MONITORING_RUNS}/") and sep and rest == "results.json" else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "chunk"


def alert_key(run_id: str, chunk: str, kind: str) -> str:
    """One alert of a run: one key per (run, chunk, kind), so a re-run creates nothing new."""
    return f"{ALERTS}/{run_id}/{_slug(chunk)}-{kind}.json"


def notified_key(alert: str) -> str:
    """The marker saying the alert at key ``alert`` was published (same name, under ``notified/``)."""
    if not alert.startswith(f"{ALERTS}/"):
        raise ValueError(f"not an alert key: {alert!r}")
    return f"{NOTIFIED}/{alert.removeprefix(f'{ALERTS}/')}"


def decision_key(run_id: str, evidence: str) -> str:
    """A run's retraining decision, keyed by the digest of the evidence it was made on."""
    return f"{DECISIONS}/{run_id}-{evidence}.json"


def retraining_claim_key(until: date) -> str:
    """The claim of the retraining of the window ending ``until`` (create-if-absent)."""
    return f"{RETRAINING}/{until.isoformat()}.json"


def retraining_started_key(until: date) -> str:
    """What a claimed retraining started elsewhere (a deployed TrainFlow), beside its claim."""
    return f"{RETRAINING}/{until.isoformat()}.started.json"


def retraining_outcome_key(until: date) -> str:
    """How a claimed retraining ended (promoted or not, and why), beside its claim."""
    return f"{RETRAINING}/{until.isoformat()}.outcome.json"


def claim_until(key: str) -> date | None:
    """The window end of a retraining claim's key; None for the records beside it (started, outcome)."""
    name = key.removeprefix(f"{RETRAINING}/").removesuffix(".json")
    if not key.startswith(f"{RETRAINING}/") or "/" in name or "." in name:
        return None
    return date.fromisoformat(name)


def retraining_input_key(until: date, fingerprint: str) -> str:
    """A retraining window's data, keyed by its content: labels that arrive later make a new object."""
    return f"{INPUTS}/retrain-until-{until.isoformat()}-{fingerprint[:16]}.parquet"


def release_key(number: int) -> str:
    """The ``number``-th release record (promote or rollback), created if absent."""
    return f"{RELEASES}/{number:08d}.json"


def prediction_object_key(day: str, run_id: str) -> str:
    """A score run's object for one date; readers open it only once the manifest names it."""
    return partition_key(PREDICTIONS, day, f"{run_id}.parquet")


def prediction_object_run(key: str) -> str:
    """The score run that wrote the predictions object ``key`` (its name without ``.parquet``)."""
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


def prediction_log_prefix(day: str, instance: str, block: int) -> str:
    """Where the flushes of one id block of one serving process are: a lookup lists only this."""
    return f"{partition_prefix(PREDICTION_LOG, day)}{instance}-{block:08x}-"


def prediction_log_key(day: str, instance: str, block: int, first: int, last: int) -> str:
    """One flush of the prediction log: the ids ``first``..``last`` (sequence numbers) of ``block``."""
    return f"{prediction_log_prefix(day, instance, block)}{first:010x}-{last:010x}.jsonl"


def prediction_log_other_key(day: str) -> str:
    """A flush of records whose ids this process did not make (found by listing the day)."""
    return partition_key(PREDICTION_LOG, day, f"other-{uuid.uuid4().hex}.jsonl")


def prediction_log_range(key: str) -> tuple[int, int] | None:
    """The first and last sequence numbers a prediction-log object holds; None for an ``other-`` one."""
    parts = key.rsplit("/", 1)[-1].removesuffix(".jsonl").split("-")
    try:
        return int(parts[2], 16), int(parts[3], 16)
    except (IndexError, ValueError):
        return None


def feedback_key(now: datetime, instance: str, seq: int) -> str:
    """Labels posted to ``/feedback``: keys sort by arrival (time, then the process's counter)."""
    return partition_key(FEEDBACK, f"{now:%Y-%m-%d}", f"{now:%Y%m%dT%H%M%S%fZ}-{instance}-{seq:010d}.json")


def tmp_key(name: str) -> str:
    """Scratch objects (the preflight's write probe), deleted by their writer."""
    return f"{TMP}/{name}"


# ------------------------------------------------------------------------------------ the layout
@dataclass(frozen=True)
class Documented:
    """One kind of key: its pattern (``<...>`` stands for one variable part), what the objects under it
    hold, and the functions of this module that build such keys."""

    pattern: str
    holds: tuple[str, ...]  # one line each, as the layout block in loopml.storage shows them
    builders: tuple[str, ...]


LAYOUT: tuple[Documented, ...] = (
    Documented("inputs/retrain-until-<date>-<fingerprint>.parquet",
               ("a retraining window's data; never overwritten (keyed by content)",), ("retraining_input_key",)),
    Documented("registry/versions/<NNNN>/version.json",
               ("metadata; written last, so a version exists only when complete",), ("version_json",)),
    Documented("registry/versions/<NNNN>/model.<format>",
               ("artifacts (model.onnx, model.joblib), each checked against its SHA-256",
                "before loading"), ("artifact_key",)),
    Documented("registry/versions/<NNNN>/reference.parquet",
               ("test-period features, predictions, targets (NannyML reference)",), ("reference_key",)),
    Documented("registry/versions/<NNNN>/claim.json", ("the number's claim (create-if-absent) and its time",),
               ("version_claim_key",)),
    Documented("registry/runs/<sha256(run key)>.json",
               ("the version a run registered: a retried step gets it back",), ("run_key_path",)),
    Documented("registry/aliases/<alias>.json",
               ("champion, challenger: moved by compare-and-swap (put_if);",
                "holds its move number, that move's ledger entry, the history"), ("alias_key",)),
    Documented("registry/ledger/<alias>/<NNNNNNNN>.json",
               ("one per move that happened, keyed by move number, written",
                "after the alias moved (when, who, from, to, why, forced)"), ("ledger_key",)),
    Documented("registry/ledger-void/<alias>/<NNNNNNNN>.json",
               ("unreadable ledger entries `loopml doctor --repair` set aside",), ("ledger_void_key",)),
    Documented("predictions/_manifest.json",
               ("the committed batch scores (date -> object key, rows, model",
                "versions, run id, scored_at): readers open only what it names"), ("MANIFEST",)),
    Documented("predictions/date=<YYYY-MM-DD>/<run>.parquet",
               ("one object per date and score run, published all at once by a",
                "compare-and-swap of the manifest (all dates of a run or none);",
                "unreferenced ones (killed runs, replaced dates) are pruned after 24 h"), ("prediction_object_key",)),
    Documented("prediction-log/date=<YYYY-MM-DD>/<instance>-<block>-<first>-<last>.jsonl",
               ("API predictions (id, time, features, outputs, version), one flush",
                "of one serving process's id block: an id's lookup lists one prefix"), ("prediction_log_key",)),
    Documented("prediction-log/date=<YYYY-MM-DD>/other-<uuid>.jsonl",
               ("logged predictions whose ids the serving process did not make",), ("prediction_log_other_key",)),
    Documented("feedback/date=<YYYY-MM-DD>/<arrival>-<instance>-<seq>.json",
               ("ground-truth labels by prediction id; a later label wins",), ("feedback_key",)),
    Documented("monitoring/runs/<start>_<end>_v<N>/results.json",
               ("what the run found, one folder per monitored window and version",), ("monitoring_results_key",)),
    Documented("monitoring/runs/<start>_<end>_v<N>/report.html", ("the run's report, for people",),
               ("monitoring_report_key",)),
    Documented("monitoring/alerts/<run>/<chunk>-<kind>.json",
               ("alerts raised, each created once (see loopml.cycle.monitoring_run)",), ("alert_key",)),
    Documented("monitoring/notified/<run>/<chunk>-<kind>.json", ("the alert was published to SNS",),
               ("notified_key",)),
    Documented("monitoring/decisions/<run>-<evidence>.json",
               ("audit log of retraining decisions and their evidence, each written once",), ("decision_key",)),
    Documented("monitoring/retraining/<until>.json", ("a retraining's claim (create-if-absent)",),
               ("retraining_claim_key",)),
    Documented("monitoring/retraining/<until>.started.json",
               ("what the claim started elsewhere (a deployed TrainFlow)",), ("retraining_started_key",)),
    Documented("monitoring/retraining/<until>.outcome.json", ("how the retraining ended: promoted or not, and why",),
               ("retraining_outcome_key",)),
    Documented("monitoring/latest.json", ("the last monitoring run",), ("LATEST_RUN",)),
    Documented("releases/<NNNNNNNN>.json",
               ("every promote and rollback: environment, who, model and function from -> to",), ("release_key",)),
    Documented("tmp/<name>", ("scratch objects, deleted by their writer (the preflight's write probe)",),
               ("tmp_key",)),
)


def documented_layout(indent: str = "    ", width: int = 48) -> str:
    """The layout block of :mod:`loopml.storage`'s docstring, rendered from :data:`LAYOUT` (a unit test
    keeps the two equal)."""
    lines = []
    for entry in LAYOUT:
        holds = list(entry.holds)
        if len(entry.pattern) < width:  # a long pattern gets a line of its own
            lines.append(f"{indent}{entry.pattern:<{width}} {holds.pop(0)}")
        else:
            lines.append(f"{indent}{entry.pattern}")
        lines += [f"{indent}{'':<{width}} {more}" for more in holds]
    return "\n".join(lines)
