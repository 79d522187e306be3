"""The Store port: a folder, the in-memory fake and S3 (moto's in-process mock) behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loopml.storage import KeyNotFound, LocalStore, MemoryStore, Store, from_uri
from loopml.storage.layout import LEDGER, event_key, partition_key, version_dir


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    elif request.param == "memory":
        yield MemoryStore()
    else:
        bucket = request.getfixturevalue("s3_bucket")
        from loopml.storage.s3 import S3Store

        yield S3Store(f"s3://{bucket}/root")


def test_put_get_overwrite(store):
    store.put("a/b.txt", b"one")
    assert store.get("a/b.txt") == b"one"
    store.put("a/b.txt", b"two")
    assert store.get("a/b.txt") == b"two"
    assert store.exists("a/b.txt") and not store.exists("a/c.txt")


def test_missing_key_raises_key_not_found(store):
    with pytest.raises(KeyNotFound) as info:
        store.get("nope/missing.json")
    assert "nope/missing.json" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_list_is_sorted_relative_and_prefix_filtered(store):
    for key in ["b/2.json", "a/1.json", "b/1.json", "ba/3.json"]:
        store.put(key, b"{}")
    assert store.list() == ["a/1.json", "b/1.json", "b/2.json", "ba/3.json"]
    assert store.list("b/") == ["b/1.json", "b/2.json"]
    assert store.list("b") == ["b/1.json", "b/2.json", "ba/3.json"]  # a prefix may end mid-name
    assert store.list("zzz/") == []


def test_delete_and_delete_missing(store):
    store.put("x/y", b"1")
    store.delete("x/y")
    assert not store.exists("x/y")
    assert store.list("x/") == []
    store.delete("x/never-there")  # not an error


def test_put_new_creates_only_once(store):
    assert store.put_new("claims/0001.json", b"first") is True
    assert store.put_new("claims/0001.json", b"second") is False
    assert store.get("claims/0001.json") == b"first"


def test_json_round_trip(store):
    store.put_json("meta/v.json", {"version": 3, "nested": {"x": [1, 2]}})
    assert store.get_json("meta/v.json") == {"version": 3, "nested": {"x": [1, 2]}}


def test_parquet_round_trip(store):
    df = pd.DataFrame({"id": [1, 2, 3], "value": [0.5, None, 2.5], "group": ["a", "b", None]})
    store.write_parquet("predictions/date=2024-01-01/part.parquet", df)
    store.write_parquet("predictions/date=2024-01-02/part.parquet", df.assign(id=[4, 5, 6]))
    back = store.read_parquet("predictions/date=2024-01-01/part.parquet")
    assert back["id"].tolist() == [1, 2, 3]
    assert back["value"].isna().tolist() == [False, True, False]
    assert back["group"].tolist()[:2] == ["a", "b"]
    both = store.read_parquet_many(store.list("predictions/"))
    assert sorted(both["id"].tolist()) == [1, 2, 3, 4, 5, 6]
    assert store.read_parquet_many([]).empty


def test_read_missing_parquet_is_key_not_found(store):
    with pytest.raises(KeyNotFound):
        store.read_parquet("predictions/date=1999-01-01/part.parquet")


def test_url_joins_uri_and_key(store):
    assert store.url("registry/x.json") == f"{store.uri}/registry/x.json"


# adapter specifics ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../outside.txt", "a/../../outside.txt", "/etc/passwd"])
def test_local_store_rejects_keys_escaping_the_root(tmp_path, key):
    store = LocalStore(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes the store root"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="escapes the store root"):
        store.get(key)
    assert not (tmp_path / "outside.txt").exists()


def test_local_store_leaves_no_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    store.put("a/b", b"1")
    store.put_new("a/c", b"2")
    store.put_new("a/c", b"3")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b", "c"]


def test_s3_store_writes_under_its_prefix(s3_bucket):
    import boto3

    from loopml.storage.s3 import S3Store

    store = S3Store(f"s3://{s3_bucket}/deep/root/")
    assert store.uri == f"s3://{s3_bucket}/deep/root"
    store.put("k/v.json", b"{}")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["deep/root/k/v.json"]
    assert store.list() == ["k/v.json"]


def test_from_uri_picks_the_adapter(tmp_path):
    from loopml.storage.s3 import S3Store

    assert isinstance(from_uri(str(tmp_path)), LocalStore)
    assert isinstance(from_uri("memory://x"), MemoryStore)
    s3 = from_uri("s3://bucket/prefix")  # constructing touches no network
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "prefix")
    with pytest.raises(ValueError, match="unsupported store URI"):
        from_uri("ftp://host/x")
    with pytest.raises(ValueError, match="no bucket"):
        from_uri("s3:///prefix")


def test_layout_keys():
    assert version_dir(7) == "registry/versions/0007"
    assert partition_key("predictions", "2024-05-01") == "predictions/date=2024-05-01/part.parquet"
    a, b = event_key(LEDGER), event_key(LEDGER)
    assert a.startswith(LEDGER + "/") and a.endswith(".json") and a != b


def test_local_store_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = LocalStore("rel")
    assert Path(store.uri) == (tmp_path / "rel").resolve()
