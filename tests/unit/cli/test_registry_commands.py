"""The registry's commands end to end through ``loopml.cli.main.main``: promote/rollback refusals and
--force, doctor and its repairs, publish to S3 (moto), and one-line errors that name the object."""

from __future__ import annotations

import json
import os
import time

import pytest

from loopml.cli.main import main
from loopml.registry.registry import CHALLENGER, CHAMPION, Registry
from loopml.storage import LocalStore
from loopml.storage.layout import alias_key, ledger_key, version_dir


@pytest.fixture(autouse=True)
def own_temp_folder(tmp_path, monkeypatch):
    """doctor looks for killed runs' scratch folders in the temp folder: give it one of its own, so
    these tests never touch the folders of runs going on elsewhere on this machine."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def local(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    reg = Registry(store)
    for tag in "abc":
        reg.register({"model.joblib": f"model-{tag}".encode()}, {"name": "t",
                                                                 "gates": {"passes": True, "reasons": []}})
    return store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_promote_refusal_says_how_to_force_and_force_is_in_the_ledger(local, capsys):
    reg = Registry(local)
    bad = reg.register({"model.joblib": b"m"}, {"gates": {"passes": False, "reasons": ["auc 0.6 < 0.8"]}}).number
    code, _, err = run(capsys, "promote", str(bad), "--why", "manual", "--store", local.uri)
    assert code == 2 and err.count("\n") == 1
    assert "failed its gates (auc 0.6 < 0.8)" in err and f"loopml promote {bad} --force" in err
    assert reg.alias(CHAMPION) is None
    code, out, _ = run(capsys, "promote", str(bad), "--why", "incident", "--force", "--store", local.uri)
    assert code == 0 and "FORCED over: it failed its gates" in out
    _, out, _ = run(capsys, "ledger", "--store", local.uri)
    assert "[promote, forced] incident" in out


def test_read_commands_on_a_missing_folder_say_no_such_store(tmp_path, capsys):
    missing = tmp_path / "typo"
    for cmd in ("ledger", "doctor"):
        code, _, err = run(capsys, cmd, "--store", str(missing))
        assert (code, err) == (2, f"loopml {cmd}: no such store: {missing}\n")
    assert not missing.exists()


def test_a_corrupt_version_json_is_one_line_naming_the_file(local, capsys):
    local.put(f"{version_dir(2)}/version.json", b"{oops")
    code, _, err = run(capsys, "promote", "2", "--why", "x", "--store", local.uri)
    assert code == 2 and err.count("\n") == 1
    assert f"{local.uri}/registry/versions/0002/version.json is not valid JSON" in err


def test_doctor_finds_and_repairs(local, capsys, own_temp_folder):
    reg = Registry(local)
    reg.promote(1, why="a")
    reg.promote(2, why="b")
    reg.set_alias(CHALLENGER, 2, why="stale", action="challenger")  # as if killed before clearing it
    local.put(alias_key(CHAMPION), b"\x00garbage")  # corrupt alias
    local.delete(ledger_key(CHAMPION, 2))  # the entry a kill kept out... (alias is corrupt: rebuilt from 1)
    local.put(f"{version_dir(3)}/model.joblib", b"tampered")  # a bad artifact: needs a person
    old = time.time() - 7200
    local.put_new(f"{version_dir(9)}/claim.json", json.dumps({"claimed_at": "2020-01-01T00:00:00+00:00"}).encode())
    local.put(f"{version_dir(9)}/model.joblib", b"half")
    tmp = local.root / "registry" / ".tmp-abc123"
    tmp.write_bytes(b"partial")
    os.utime(tmp, (old, old))
    scratch, live = own_temp_folder / "loopml-score-killed", own_temp_folder / "loopml-score-running"
    for folder in (scratch, live):
        folder.mkdir()
        (folder / "part.arrow").write_bytes(b"rows")
    os.utime(scratch, (old, old))
    code, out, err = run(capsys, "doctor", "--store", local.uri)
    assert code == 2 and "problem(s)" in err and "--repair" in err
    assert "registry/aliases/champion.json: unreadable" in out
    assert "registry/versions/0003/model.joblib: version 3: model.joblib does not match" in out
    assert "registry/versions/0009/: number 9 was claimed but never completed" in out
    assert ".tmp-abc123: a temporary file" in out
    code, out, err = run(capsys, "doctor", "--repair", "--store", local.uri)
    assert code == 2 and "1 problem(s)" in err  # the tampered artifact is left to a person
    assert not tmp.exists() and not local.list(f"{version_dir(9)}/")
    assert not scratch.exists() and live.exists()  # only the folder older than the grace
    assert reg.alias(CHAMPION) == 1 and reg.read_alias(CHAMPION).rebuilt is None
    reg.promote(2, why="b again")  # the repaired alias moves normally
    assert [e["to"] for e in reg.ledger(CHAMPION)] == [1, 2]
    assert reg.alias(CHALLENGER) is None  # the promote cleared the stale challenger
    local.put(f"{version_dir(3)}/model.joblib", b"model-c")
    code, out, _ = run(capsys, "doctor", "--store", local.uri)
    assert code == 0 and "registry healthy" in out


def test_doctor_leaves_a_young_claim_alone(local, capsys):
    local.put_new(f"{version_dir(7)}/claim.json", json.dumps({"claimed_at": "2999-01-01T00:00:00+00:00"}).encode())
    code, out, _ = run(capsys, "doctor", "--repair", "--store", local.uri)
    assert code == 0 and local.exists(f"{version_dir(7)}/claim.json")


# publish ---------------------------------------------------------------------------------------
def test_publish_copies_missing_versions_and_never_moves_the_remote_champion(local, s3_bucket, capsys):
    from loopml.storage.s3 import S3Store

    remote_uri = f"s3://{s3_bucket}/loopml"
    Registry(local).promote(2, why="local champion")
    code, out, _ = run(capsys, "publish", "--store", local.uri, "--to", remote_uri)
    assert code == 0 and "3 version(s) copied [1, 2, 3]" in out
    remote = Registry(S3Store(remote_uri))
    assert remote.versions() == [1, 2, 3] and remote.alias(CHAMPION) is None and remote.ledger() == []
    assert remote.artifact(remote.get(3), "model.joblib") == b"model-c"
    run(capsys, "promote", "2", "--why", "first deploy", "--store", remote_uri)
    run(capsys, "promote", "3", "--why", "v3 better in prod", "--store", remote_uri)
    ledger = remote.ledger()
    Registry(local).register({"model.joblib": b"model-d"}, {"name": "t"})
    code, out, _ = run(capsys, "publish", "--store", local.uri, "--to", remote_uri)  # a re-deploy
    assert code == 0 and "1 version(s) copied [4]" in out and "3 already there" in out
    assert remote.alias(CHAMPION) == 3 and remote.ledger() == ledger


def test_publish_refuses_a_number_taken_by_different_content(local, s3_bucket, capsys):
    from loopml.storage.s3 import S3Store

    remote_uri = f"s3://{s3_bucket}/loopml"
    remote = Registry(S3Store(remote_uri))
    remote.register({"model.joblib": b"trained-on-aws"}, {"name": "t"})
    before = remote.store.list()
    code, _, err = run(capsys, "publish", "--store", local.uri, "--to", remote_uri)
    assert code == 2 and err.count("\n") == 1
    assert "version 1 exists at" in err and "model.joblib differ by SHA-256" in err and "nothing was copied" in err
    assert remote.store.list() == before
