"""Kill -9 a score run at chosen moments (``LOOPML_FAULT``, see loopml.faults): the store must hold every
date of the last committed run and nothing of the killed one, and a re-run must converge to the result
of a run that was never killed. Issue 11 §1: a run commits all its partitions or none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.scoring.manifest import MANIFEST, committed, prune, read_predictions
from loopml.storage import LocalStore
from tests.support import REPO as ROOT

SCORE = """
import sys
from datetime import date
from loopml.scoring.batch import score_range
from loopml.spec import load_spec
from loopml.storage import LocalStore
spec, store, uri = load_spec(sys.argv[1]), LocalStore(sys.argv[2]), sys.argv[3]
print(score_range(store, spec, date(2018, 1, 1), date(2020, 12, 31), uri=uri).run_id)
"""


def _score(spec_path: Path, store: LocalStore, uri: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOPML_FAULT", None)
    if fault:
        env["LOOPML_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", SCORE, str(spec_path), str(store.root), uri],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def setup(trained, spec, car_loan, car_loan_dir, tmp_path):
    """A store whose champion has already committed the first half of two months of new data."""
    new = car_loan[1].sort_values("timestamp").head(120)
    store = LocalStore(tmp_path / "store")
    trained.register(store)
    half, full = tmp_path / "half.parquet", tmp_path / "full.parquet"
    new.head(60).to_parquet(half, index=False)
    new.to_parquet(full, index=False)
    spec_path = car_loan_dir / "project.yaml"
    assert _score(spec_path, store, str(half)).returncode == 0
    return spec_path, store, str(full), new


def _rows(store: LocalStore) -> pd.DataFrame:
    cols = ["id", "timestamp", "y_pred", "y_pred_proba", "model_version"]
    return read_predictions(store)[cols].sort_values("id", ignore_index=True)


@pytest.mark.parametrize("point", ["score.object_written", "score.before_commit"])
def test_a_kill_before_the_commit_publishes_nothing_and_a_rerun_converges(point, setup):
    spec_path, store, full, new = setup
    manifest, before = store.get(MANIFEST), _rows(store)
    objects = set(store.list("predictions/date="))
    killed = _score(spec_path, store, full, fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert store.get(MANIFEST) == manifest, "a killed run moved the manifest"
    pd.testing.assert_frame_equal(_rows(store), before)
    leftovers = set(store.list("predictions/date=")) - objects
    assert leftovers, "the kill came after at least one object was written"

    assert _score(spec_path, store, full).returncode == 0
    assert sorted(_rows(store)["id"]) == sorted(new["id"].astype(str))
    assert not leftovers & {p.key for p in committed(store).values()}
    deleted = prune(store, now=datetime.now(UTC) + timedelta(days=1))
    assert leftovers <= set(deleted), "the killed run's objects are cleaned up once stale"


def test_a_kill_after_the_commit_keeps_the_run_and_a_rerun_changes_no_row(setup):
    spec_path, store, full, new = setup
    killed = _score(spec_path, store, full, fault="score.after_commit")
    assert killed.returncode == -signal.SIGKILL
    after_kill = _rows(store)
    assert sorted(after_kill["id"]) == sorted(new["id"].astype(str)), "the swap happened: every date is there"
    assert _score(spec_path, store, full).returncode == 0
    pd.testing.assert_frame_equal(_rows(store), after_kill)


def test_killed_score_flow_exits_2_and_commits_nothing(trained, car_loan, car_loan_dir, tmp_path):
    """The same through `loopml score`: the ScoreFlow's task is killed mid-write; the command says so."""
    store = LocalStore(tmp_path / "store")
    trained.register(store)
    data = tmp_path / "new.parquet"
    car_loan[1].sort_values("timestamp").head(40).to_parquet(data, index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOPML_FAULT": "score.object_written",
           "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "mf")}
    for var in ("METAFLOW_DEFAULT_METADATA",):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "loopml.cli.main", "score", "--spec", str(car_loan_dir / "project.yaml"),
           "--store", str(store.root), "--start", "2018-01-01", "--end", "2020-12-31", "--data", str(data)]
    killed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert killed.returncode == 2, killed.stderr[-2000:]
    assert "committed" not in killed.stdout
    assert not store.exists(MANIFEST) and read_predictions(store).empty
    env.pop("LOOPML_FAULT")
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "committed 40 rows" in done.stdout
    assert len(read_predictions(store)) == 40
