"""The Store port: a folder, the in-memory fake and S3 (moto's in-process mock) behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loopml.storage import KeyNotFound, LocalStore, MemoryStore, Store, from_uri
from loopml.storage.layout import partition_key, version_dir


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


def test_local_store_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = LocalStore("rel")
    assert Path(store.uri) == (tmp_path / "rel").resolve()


# compare-and-swap --------------------------------------------------------------------------
def test_put_if_swaps_only_against_the_current_token(store):
    assert store.put_if("alias.json", b"v1", None) is True  # None: only if absent
    assert store.put_if("alias.json", b"again", None) is False
    data, token = store.get_versioned("alias.json")
    assert data == b"v1"
    assert store.put_if("alias.json", b"v2", token) is True
    assert store.put_if("alias.json", b"v3", token) is False  # stale token: someone moved it
    assert store.get("alias.json") == b"v2"
    with pytest.raises(KeyNotFound):
        store.get_versioned("never.json")


def test_put_if_on_a_deleted_key_loses(store):
    store.put_if("k.json", b"1", None)
    _, token = store.get_versioned("k.json")
    store.delete("k.json")
    assert store.put_if("k.json", b"2", token) is False
    assert not store.exists("k.json")


def _increment(store: Store, key: str, times: int) -> None:
    """Read-modify-write with retries: with a real compare-and-swap no increment is ever lost."""
    for _ in range(times):
        while True:
            data, token = store.get_versioned(key)
            if store.put_if(key, str(int(data) + 1).encode(), token):
                break


def _real_race(store: Store) -> None:
    """moto checks If-Match and then writes without a lock (moto/s3/responses.py put_object), so two
    threads could both pass its check: a thread race against moto would test moto, not S3. For S3
    the interleaving (two readers, two conditional writes) is covered deterministically above, and
    the conditional headers against a real HTTP server in tests/faults."""
    if store.uri.startswith("s3://"):
        pytest.skip("moto's conditional PUT is not atomic between threads; see _real_race")


def test_racing_threads_lose_no_update(store):
    from concurrent.futures import ThreadPoolExecutor

    _real_race(store)
    store.put_if("counter", b"0", None)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: _increment(store, "counter", 25), range(4)))
    assert int(store.get("counter")) == 100


def test_racing_threads_create_if_absent_exactly_once(store):
    from concurrent.futures import ThreadPoolExecutor

    _real_race(store)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.put_if("claim.json", f"writer {i}".encode(), None), range(8)))
    assert won.count(True) == 1
    assert store.get("claim.json") == f"writer {won.index(True)}".encode()


_PROCESS_WRITER = """
import sys
from loopml.storage import LocalStore
store = LocalStore(sys.argv[1])
for _ in range(int(sys.argv[2])):
    while True:
        data, token = store.get_versioned("counter")
        if store.put_if("counter", str(int(data) + 1).encode(), token):
            break
"""


def test_local_put_if_is_atomic_across_processes(tmp_path):
    import subprocess
    import sys

    store = LocalStore(tmp_path)
    store.put_if("counter", b"0", None)
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_WRITER, str(tmp_path), "40"]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert store.get("counter") == b"160"
    assert store.list() == ["counter"]  # lock files stay out of listings


def test_local_store_files_are_readable_by_others(tmp_path):
    import os
    import stat

    store = LocalStore(tmp_path)
    store.put("a.json", b"1")
    store.put_new("b.json", b"1")
    store.put_if("c.json", b"1", None)
    old = os.umask(0o022)
    os.umask(old)
    for name in ("a.json", "b.json", "c.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~old


def test_local_store_names_a_missing_root(tmp_path):
    from loopml.storage import StoreError

    with pytest.raises(StoreError, match=f"no such store: {tmp_path / 'typo'}"):
        LocalStore(tmp_path / "typo").require_existing()
    LocalStore(tmp_path).require_existing()


def test_invalid_json_names_the_object(store):
    from loopml.storage import CorruptObject

    store.put("registry/aliases/champion.json", b"{not json")
    with pytest.raises(CorruptObject, match="registry/aliases/champion.json is not valid JSON"):
        store.get_json("registry/aliases/champion.json")


def test_exists_asks_for_metadata_never_the_object(store, monkeypatch):
    """A folder stats, memory looks up, S3 sends a HEAD: none of them reads the object's bytes."""
    store.put("big.bin", b"x" * 2_000_000)
    reads: list[str] = []
    if isinstance(store, (LocalStore, MemoryStore)):
        for name in ("get", "get_versioned"):
            monkeypatch.setattr(store, name, lambda key, *_: reads.append(key))
    else:
        store.client.meta.events.register("before-call.s3.GetObject", lambda **_: reads.append("GetObject"))
    assert store.exists("big.bin") and not store.exists("missing.bin") and not store.exists("big")
    assert reads == []


def test_s3_max_attempts_counts_every_connection_the_first_included(monkeypatch):
    """LOOPML_S3_MAX_ATTEMPTS=N makes N connections to an endpoint that never answers, not N+1 (botocore's
    ``max_attempts`` counts retries only)."""
    import socket
    import threading

    from loopml.settings import get_settings
    from loopml.storage.base import StoreError
    from loopml.storage.s3 import S3Store

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])  # held open, never answered
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("LOOPML_S3_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("LOOPML_S3_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    try:
        with pytest.raises(StoreError):
            S3Store("s3://silent/root").get("x.json")
    finally:
        listener.close()
        get_settings.cache_clear()
    assert len(accepted) == 2
