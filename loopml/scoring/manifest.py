"""Committed batch predictions: one manifest that every reader follows.

A score run never overwrites what readers see. It writes each date's new object under a key of its
own (``predictions/date=<D>/<run id>.parquet``), then publishes all of them in one step: a
compare-and-swap of ``predictions/_manifest.json`` (date -> object key, rows, model versions, run id,
scored_at). So a run commits all its dates or none:

* a reader sees the manifest before the swap (every old date) or after it (every new date);
* a run killed before the swap leaves only unreferenced objects, which readers never open and
  :func:`prune` (run after every commit) deletes once they are older than a grace period (24 h);
* two runs racing on the manifest cannot lose each other's dates: the loser re-reads the manifest,
  re-merges the dates whose object changed meanwhile, and tries again.

Objects a commit replaced stay in the store, listed under ``retired`` with the time they stopped being
referenced, so that a reader holding the previous manifest can still finish; :func:`prune` deletes them
after the grace period.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml import faults
from loopml.data import DataError
from loopml.storage import CorruptObject, KeyNotFound, Store
from loopml.storage.layout import MANIFEST, PREDICTION_OBJECTS, prediction_object_key, prediction_object_run
from loopml.storage.records import Record, read_versioned

__all__ = ["MANIFEST", "Partition", "Manifest", "PartitionEntry", "ManifestRecord", "CommitConflict",
           "WouldTruncate", "new_run_id", "read_manifest", "committed", "read_predictions", "commit", "prune"]

FORMAT = 1
COMMIT_ATTEMPTS = 20
# longer than any reader holds a manifest and than any score run takes (a run's objects are orphans
# until it commits), so pruning never pulls an object from under a reader or a run still writing
PRUNE_GRACE = timedelta(hours=24)


class CommitConflict(RuntimeError):
    """The manifest kept changing under this run: nothing of it was published."""


class WouldTruncate(DataError):
    """Rows for a date that already holds predictions, and no id to merge them by."""


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique; its time prefix lets :func:`prune` age objects no manifest ever named."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Partition:
    """One committed date: which object holds it, and what is in it."""

    date: str
    key: str
    rows: int
    versions: tuple[int, ...]  # model versions whose rows the object holds (more than one after a merge)
    run_id: str
    scored_at: str

    @classmethod
    def from_entry(cls, day: str, e: PartitionEntry) -> Partition:
        """The committed date ``day`` as the manifest records it."""
        return cls(day, e.key, e.rows, tuple(e.versions), e.run_id, e.scored_at)

    def to_entry(self) -> PartitionEntry:
        """As the manifest records it (the date is the entry's key there)."""
        return PartitionEntry(key=self.key, rows=self.rows, versions=list(self.versions), run_id=self.run_id,
                              scored_at=self.scored_at)


class PartitionEntry(Record):
    """One date in ``predictions/_manifest.json``: the object that holds it and what is in it."""

    key: str
    rows: int
    versions: list[int]
    run_id: str
    scored_at: str


class ManifestRecord(Record):
    """``predictions/_manifest.json`` as stored: the committed dates and the retired objects."""

    format: Literal[1]
    dates: dict[str, PartitionEntry] = {}
    retired: dict[str, str] = {}


@dataclass
class Manifest:
    """The manifest as read: committed dates, retired objects, and the token its next swap compares."""

    dates: dict[str, Partition] = field(default_factory=dict)
    retired: dict[str, str] = field(default_factory=dict)  # object key -> when it stopped being referenced
    token: str | None = None  # what the compare-and-swap compares; None: no manifest yet

    def encode(self) -> bytes:
        """The manifest's bytes, as stored."""
        return ManifestRecord(format=FORMAT, dates={d: p.to_entry() for d, p in self.dates.items()},
                              retired=self.retired).to_json()

    def with_partitions(self, parts: list[Partition], now: str) -> Manifest:
        """A new manifest with ``parts`` published; the objects they replace are retired, not deleted."""
        dates, retired = dict(self.dates), dict(self.retired)
        for p in parts:
            old = dates.get(p.date)
            if old is not None and old.key != p.key:
                retired[old.key] = now
            dates[p.date] = p
            retired.pop(p.key, None)
        return Manifest(dates, retired, self.token)


def read_manifest(store: Store) -> Manifest:
    """The committed manifest (an empty one when nothing was ever committed)."""
    try:
        body, token = read_versioned(store, MANIFEST, ManifestRecord)
    except KeyNotFound:
        return Manifest()
    except CorruptObject as err:
        raise DataError(f"{err} (not a predictions manifest of format {FORMAT})") from None
    return Manifest({d: Partition.from_entry(d, p) for d, p in body.dates.items()}, dict(body.retired), token)


def _in_window(day: str, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start.isoformat()) and (end is None or day <= end.isoformat())


def committed(store: Store, start: date | None = None, end: date | None = None) -> dict[str, Partition]:
    """The committed dates in [start, end] (inclusive; None: unbounded), in date order."""
    return {d: p for d, p in sorted(read_manifest(store).dates.items()) if _in_window(d, start, end)}


def read_predictions(store: Store, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """Every committed prediction whose date is in [start, end]: what the manifest names, nothing else
    (objects of runs that were killed or are still writing are never read)."""
    return store.read_parquet_many([p.key for p in committed(store, start, end).values()])


# ------------------------------------------------------------------------------------------ commit
Rows = Callable[[], pa.Table]  # a date's new rows, loaded only when its object is (re)built


def merge(old: pd.DataFrame | None, new: pa.Table, id_column: str | None) -> pa.Table:
    """New rows replace old rows with the same id; other old rows are kept. Without an old frame, or
    without an id (the caller has decided to replace the date), the new rows are the date."""
    if old is None or old.empty or id_column is None:
        return new
    fresh = new.to_pandas()
    kept = old[~old[id_column].astype(str).isin(fresh[id_column].astype(str))]
    if kept.empty:
        return new
    return pa.Table.from_pandas(pd.concat([kept, fresh], ignore_index=True), preserve_index=False)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _refuse_truncation(manifest: Manifest, days: list[str], id_column: str | None, replace: bool) -> None:
    if id_column or replace:
        return
    held = [d for d in days if d in manifest.dates]
    if held:
        raise WouldTruncate(
            f"dates {', '.join(held[:5])}{' …' if len(held) > 5 else ''} already hold predictions and the spec has "
            "no id to merge new rows by: nothing was written; pass --replace to replace those dates")


def _build(store: Store, day: str, rows: Rows, base: Partition | None, id_column: str | None,
           replace: bool, run_id: str, scored_at: str) -> Partition:
    """Write the date's object under this run's key: its new rows merged into the committed ones
    (or, with ``replace``, instead of them)."""
    new = rows()
    if id_column and pc.count_distinct(new[id_column]).as_py() != new.num_rows:
        # batches are checked one by one; the same id in two batches or files would otherwise be kept twice
        raise DataError(f"id column {id_column!r} repeats ids among the new rows for {day}: nothing was committed")
    old = store.read_parquet(base.key) if base is not None and id_column and not replace else None
    table = merge(old, new, id_column)
    key = prediction_object_key(day, run_id)
    store.put(key, _parquet(table))  # one atomic PUT; the object is invisible until the manifest names it
    versions = tuple(sorted(int(v) for v in pc.unique(table["model_version"]).to_pylist()))
    return Partition(day, key, table.num_rows, versions, run_id, scored_at)


def commit(store: Store, run_id: str, staged: dict[str, Rows], id_column: str | None, *, replace: bool = False,
           attempts: int = COMMIT_ATTEMPTS, on_object: Callable[[str], None] | None = None) -> list[Partition]:
    """Publish every staged date at once, or none. ``on_object`` is called after each object is written
    (progress, and the hook fault tests kill at)."""
    built: dict[str, tuple[str | None, Partition]] = {}  # date -> (committed key merged into, object)
    for attempt in range(attempts):
        manifest = read_manifest(store)
        _refuse_truncation(manifest, sorted(staged), id_column, replace)
        scored_at = datetime.now(UTC).isoformat()
        for day in sorted(staged):
            base = manifest.dates.get(day)
            base_key = base.key if base is not None else None
            if day not in built or built[day][0] != base_key:  # first try, or another run changed this date
                built[day] = (base_key, _build(store, day, staged[day], base, id_column, replace, run_id, scored_at))
                faults.point("score.object_written")
                if on_object is not None:
                    on_object(built[day][1].key)
        parts = [p for _, p in built.values()]
        faults.point("score.before_commit")
        if store.put_if(MANIFEST, manifest.with_partitions(parts, scored_at).encode(), manifest.token):
            faults.point("score.after_commit")
            return sorted(parts, key=lambda p: p.date)
        time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # another run committed: back off, re-merge
    raise CommitConflict(f"{store.url(MANIFEST)} changed under this run {attempts} times; nothing was published")


# ------------------------------------------------------------------------------------------- prune
def _run_time(key: str) -> datetime | None:
    try:
        return datetime.strptime(prediction_object_run(key)[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None  # not written by a score run (e.g. a file someone put there): never deleted


def prune(store: Store, grace: timedelta = PRUNE_GRACE, now: datetime | None = None) -> list[str]:
    """Delete objects readers no longer follow: replaced ones retired longer than ``grace`` ago, and
    objects of runs that never committed, once older than ``grace``. Returns the deleted keys."""
    now = now or datetime.now(UTC)
    cutoff = now - grace
    for _ in range(COMMIT_ATTEMPTS):
        manifest = read_manifest(store)
        live = {p.key for p in manifest.dates.values()}
        expired = [k for k, at in manifest.retired.items() if datetime.fromisoformat(at) < cutoff]
        orphans = [k for k in store.list(PREDICTION_OBJECTS)
                   if k not in live and k not in manifest.retired and (t := _run_time(k)) is not None and t < cutoff]
        if expired:
            kept = {k: at for k, at in manifest.retired.items() if k not in expired}
            if not store.put_if(MANIFEST, Manifest(manifest.dates, kept).encode(), manifest.token):
                continue  # a commit happened meanwhile: look again
        for key in expired + orphans:
            store.delete(key)
        return sorted(expired + orphans)
    raise CommitConflict(f"{store.url(MANIFEST)} kept changing; nothing was pruned")
