"""Batch scoring loses nothing (issue 11 §1): all-or-nothing commits through the manifest, merge by id,
refusal to truncate, zero rows the same for every format, and new data as date partitions (issue 8 §5)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data import DataError
from loopml.scoring.batch import NothingToScore, score_range
from loopml.scoring.manifest import (
    MANIFEST,
    WouldTruncate,
    committed,
    new_run_id,
    prune,
    read_manifest,
    read_predictions,
)
from loopml.spec import ProblemSpec, parse_spec
from loopml.storage import LocalStore, MemoryStore, Store
from loopml.storage.layout import prediction_object_key as object_key

FIRST, LAST = date(2018, 10, 1), date(2019, 12, 31)


@pytest.fixture
def store(trained, tmp_path) -> LocalStore:
    s = LocalStore(tmp_path / "store")
    trained.register(s)
    return s


@pytest.fixture
def new(car_loan) -> pd.DataFrame:
    return car_loan[1].copy()


@pytest.fixture
def recent(new) -> pd.DataFrame:
    """Two months of new data: enough dates to matter, few enough that a test scores it quickly."""
    return new[pd.to_datetime(new["timestamp"]) < pd.Timestamp(FIRST) + pd.Timedelta(days=60)].copy()


def _write(df: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path, index=False)
    return str(path)


def _busiest_day(df: pd.DataFrame) -> date:
    return pd.to_datetime(df["timestamp"]).dt.date.value_counts().idxmax()


def _with(spec: ProblemSpec, **changes) -> ProblemSpec:
    return parse_spec({**spec.model_dump(mode="json", exclude_none=True), **changes})


def _snapshot(store: Store) -> dict[str, bytes]:
    return {k: store.get(k) for k in store.list("predictions/")}


# ----------------------------------------------------------------------------- merge, never truncate
def test_a_late_file_for_a_scored_date_is_merged_by_id(store, spec, new, tmp_path):
    score_range(store, spec, FIRST, LAST, uri=_write(new, tmp_path / "new.parquet"))
    day = _busiest_day(new)
    before = read_predictions(store, day, day)
    late = new[pd.to_datetime(new["timestamp"]).dt.date == day].head(3).copy()
    late.loc[late.index[0], "car_value"] = late["car_value"].iloc[0] * 10  # a corrected row
    extra = late.iloc[[1]].assign(id=10_000_000)  # a row that was not there
    result = score_range(store, spec, day, day, uri=_write(pd.concat([late, extra]), tmp_path / "late.csv"))
    after = read_predictions(store, day, day)
    assert result.partitions == {day.isoformat(): 4}
    assert len(after) == len(before) + 1, "a late file must never truncate the date"
    assert set(before["id"]) | {"10000000"} == set(after["id"])
    fixed = after.set_index("id").loc[str(late["id"].iloc[0]), "car_value"]
    assert fixed == pytest.approx(late["car_value"].iloc[0])


def test_ids_are_written_as_the_data_gave_them(store, spec, new, tmp_path):
    score_range(store, spec, FIRST, LAST, uri=_write(new, tmp_path / "new.csv"))
    ids = read_predictions(store)["id"]
    assert set(ids) == set(new["id"].astype(str)) and not ids.str.contains(r"\.").any()


def test_a_null_id_fails_the_run_and_commits_nothing(store, spec, new, tmp_path):
    bad = new.astype({"id": float})
    bad.loc[[4, 9], "id"] = np.nan
    with pytest.raises(DataError, match=r"'id' is missing in rows 4, 9"):
        score_range(store, spec, FIRST, LAST, uri=_write(bad, tmp_path / "new.csv"))
    assert _snapshot(store) == {}


def test_without_an_id_a_held_date_is_refused_unless_replaced(store, spec, new, tmp_path):
    no_id = _with(spec, id=None)
    score_range(store, no_id, FIRST, LAST, uri=_write(new, tmp_path / "new.parquet"))
    day = _busiest_day(new)
    late = _write(new[pd.to_datetime(new["timestamp"]).dt.date == day].head(2), tmp_path / "late.parquet")
    before = _snapshot(store)
    with pytest.raises(WouldTruncate, match=rf"{day}.*--replace"):
        score_range(store, no_id, day, day, uri=late)
    assert _snapshot(store) == before, "a refused run writes nothing"
    score_range(store, no_id, day, day, uri=late, replace=True)
    assert len(read_predictions(store, day, day)) == 2


def test_rerunning_a_range_converges(store, spec, recent, tmp_path):
    uri = _write(recent, tmp_path / "new.parquet")
    score_range(store, spec, FIRST, LAST, uri=uri)
    first = read_predictions(store).drop(columns="scored_at").sort_values("id", ignore_index=True)
    score_range(store, spec, FIRST, LAST, uri=uri)
    second = read_predictions(store).drop(columns="scored_at").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(first, second)


# --------------------------------------------------------------------------------- all or nothing
class Killed(Exception):
    pass


def test_a_run_that_dies_mid_write_publishes_none_of_its_dates(store, spec, recent, tmp_path):
    new = recent
    uri = _write(new, tmp_path / "new.parquet")
    half = new.sort_values("timestamp").head(len(new) // 2)
    score_range(store, spec, FIRST, LAST, uri=_write(half, tmp_path / "half.parquet"))
    manifest, before = store.get(MANIFEST), read_predictions(store)
    written: list[str] = []

    def die_after_five(key: str) -> None:
        written.append(key)
        if len(written) == 5:
            raise Killed

    with pytest.raises(Killed):
        score_range(store, spec, FIRST, LAST, uri=uri, on_object=die_after_five)
    assert store.get(MANIFEST) == manifest
    pd.testing.assert_frame_equal(read_predictions(store), before)
    score_range(store, spec, FIRST, LAST, uri=uri)  # the re-run converges to a clean run's result
    assert sorted(read_predictions(store)["id"]) == sorted(new["id"].astype(str))


@pytest.mark.parametrize("make_store", [MemoryStore, lambda: None], ids=["memory", "folder"])
def test_two_concurrent_runs_keep_each_others_dates(make_store, trained, spec, recent, tmp_path):
    new = recent
    store = make_store() or LocalStore(tmp_path / "store")
    trained.register(store)
    ordered = new.sort_values("timestamp")
    third = len(ordered) // 3
    early, late = ordered.iloc[: 2 * third], ordered.iloc[third:]  # the middle third is scored by both
    uris = [_write(early, tmp_path / "a.parquet"), _write(late, tmp_path / "b.parquet")]
    both_built = threading.Barrier(2, timeout=60)
    seen: dict[int, int] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        def hold(_key: str) -> None:  # both runs read the same manifest before either commits
            seen[i] = seen.get(i, 0) + 1
            if seen[i] == 1:
                both_built.wait()
        try:
            score_range(store, spec, FIRST, LAST, uri=uris[i], on_object=hold)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    got = read_predictions(store)
    assert sorted(got["id"]) == sorted(new["id"].astype(str)), "a racing run lost the other's rows"


# ------------------------------------------------------------------------------------------ zero rows
@pytest.mark.parametrize("kind", ["header-only csv", "empty parquet", "rows outside the range", "no partitions"])
def test_zero_rows_is_the_same_answer_for_every_format(kind, store, spec, new, tmp_path):
    uri = {
        "header-only csv": lambda: _write(new.iloc[:0], tmp_path / "new.csv"),
        "empty parquet": lambda: _write(new.iloc[:0], tmp_path / "new.parquet"),
        "rows outside the range": lambda: _write(new, tmp_path / "new.parquet"),
        "no partitions": lambda: str(tmp_path),
    }[kind]()
    with pytest.raises(NothingToScore, match="no rows to score between 2030-01-01 and 2030-01-02"):
        score_range(store, spec, date(2030, 1, 1), date(2030, 1, 2), uri=uri)
    assert _snapshot(store) == {}


def test_epoch_timestamps_are_refused_not_scored_as_1970(store, spec, new, tmp_path):
    new["timestamp"] = (pd.to_datetime(new["timestamp"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    with pytest.raises(DataError, match="timestamp_unit"):
        score_range(store, spec, date(1970, 1, 1), LAST, uri=_write(new, tmp_path / "new.parquet"))
    result = score_range(store, _with(spec, timestamp_unit="s"), FIRST, LAST, uri=_write(new, tmp_path / "e.parquet"))
    assert result.rows == len(new)


def test_day_first_dates_never_replace_other_days(store, spec, new, tmp_path):
    new["timestamp"] = pd.to_datetime(new["timestamp"]).dt.strftime("%d/%m/%Y")
    with pytest.raises(DataError, match="ambiguous"):
        score_range(store, spec, FIRST, LAST, uri=_write(new, tmp_path / "new.csv"))
    assert _snapshot(store) == {}
    result = score_range(store, _with(spec, timestamp_format="%d/%m/%Y"), FIRST, LAST, uri=str(tmp_path / "new.csv"))
    assert result.rows == len(new)


# -------------------------------------------------------------------------------- data.new partitions
def _partition(new: pd.DataFrame, root: Path, layout: str) -> None:
    days = pd.to_datetime(new["timestamp"]).dt.date
    for day, rows in new.groupby(days):
        path = root / (f"date={day}/part-0.parquet" if layout == "hive" else f"{day}.csv")
        _write(rows, path)


@pytest.mark.parametrize("layout", ["hive", "template"])
def test_a_scheduled_run_reads_only_the_dates_it_scores(layout, store, spec, new, tmp_path):
    root = tmp_path / "incoming"
    _partition(new, root, layout)
    day = _busiest_day(new)
    for other in root.iterdir():  # every other date's file is unreadable: opening one fails the run
        if day.isoformat() not in other.name:
            target = next(other.rglob("*.parquet")) if other.is_dir() else other
            target.write_bytes(b"not data")
    uri = str(root) if layout == "hive" else f"{root}/{{date}}.csv"
    result = score_range(store, spec, day, day, uri=uri)
    assert result.partitions == {day.isoformat(): int((pd.to_datetime(new["timestamp"]).dt.date == day).sum())}


def test_partitions_on_s3_are_read_by_date(s3_bucket, trained, spec, new):
    import awswrangler as wr

    store = MemoryStore()
    trained.register(store)
    days = pd.to_datetime(new["timestamp"]).dt.date
    first = sorted(days.unique())[:3]
    for day in first:
        wr.s3.to_parquet(new[days == day], f"s3://{s3_bucket}/incoming/date={day}/part-0.parquet", index=False)
    result = score_range(store, spec, first[0], first[-1], uri=f"s3://{s3_bucket}/incoming")
    assert sorted(result.partitions) == [d.isoformat() for d in first]
    assert result.rows == int(days.isin(first).sum())


def test_without_a_timestamp_rows_are_scored_by_ingestion_date(store, spec, new, tmp_path):
    plain = _with(spec, timestamp=None)
    uri = _write(new.drop(columns="timestamp"), tmp_path / "today.parquet")
    with pytest.raises(ValueError, match="one date at a time"):
        score_range(store, plain, date(2024, 5, 1), date(2024, 5, 2), uri=uri)
    result = score_range(store, plain, date(2024, 5, 1), date(2024, 5, 1), uri=uri)
    assert result.partitions == {"2024-05-01": len(new)}
    root = tmp_path / "batches"
    for i, day in enumerate(("2024-05-02", "2024-05-03")):
        _write(new.drop(columns="timestamp").iloc[i * 10:(i + 1) * 10], root / f"date={day}" / "part.parquet")
    result = score_range(store, plain, date(2024, 5, 2), date(2024, 5, 3), uri=str(root))
    assert result.partitions == {"2024-05-02": 10, "2024-05-03": 10}


# ----------------------------------------------------------------------------- what readers are told
def test_prune_deletes_only_what_no_reader_follows(store, spec, recent, tmp_path):
    uri = _write(recent, tmp_path / "new.parquet")
    score_range(store, spec, FIRST, LAST, uri=uri)
    score_range(store, spec, FIRST, LAST, uri=uri)  # every first object is now retired
    stray = object_key("2019-01-01", new_run_id(datetime.now(UTC) - timedelta(days=2)))  # a killed run's object
    store.put(stray, b"half")
    live = {p.key for p in committed(store).values()}
    assert prune(store, now=datetime.now(UTC)) == [stray], "within the grace period only a stale orphan goes"
    deleted = prune(store, now=datetime.now(UTC) + timedelta(days=1))
    assert deleted and not set(deleted) & live
    assert set(store.list("predictions/date=")) == live and read_manifest(store).retired == {}


def test_commits_on_an_s3_store(s3_bucket, trained, spec, recent, tmp_path):
    """The manifest's compare-and-swap on S3 (If-Match / If-None-Match), and readers that follow it."""
    from loopml.storage.s3 import S3Store

    store = S3Store(f"s3://{s3_bucket}/store")
    trained.register(store)
    uri = _write(recent, tmp_path / "new.parquet")
    first = score_range(store, spec, FIRST, LAST, uri=uri)
    second = score_range(store, spec, FIRST, LAST, uri=uri)
    assert {p.run_id for p in committed(store).values()} == {second.run_id} != {first.run_id}
    got = read_predictions(store)
    assert sorted(got["id"]) == sorted(recent["id"].astype(str))


def test_an_id_repeated_across_files_fails_the_run(store, spec, recent, tmp_path):
    day = _busiest_day(recent)
    rows = recent[pd.to_datetime(recent["timestamp"]).dt.date == day]
    root = tmp_path / "in"
    _write(rows, root / f"date={day}" / "a.parquet")
    _write(rows.head(1), root / f"date={day}" / "b.parquet")
    with pytest.raises(DataError, match="repeats ids"):
        score_range(store, spec, day, day, uri=str(root))
    assert committed(store) == {}


def test_a_committed_run_prunes_stale_leftovers(store, spec, recent, tmp_path):
    stray = object_key("2019-01-01", new_run_id(datetime.now(UTC) - timedelta(days=2)))  # a run killed two days ago
    store.put(stray, b"half")
    fresh = object_key("2019-01-01", new_run_id())  # a run still writing: left alone
    store.put(fresh, b"half")
    score_range(store, spec, FIRST, LAST, uri=_write(recent, tmp_path / "new.parquet"))
    assert not store.exists(stray) and store.exists(fresh)
