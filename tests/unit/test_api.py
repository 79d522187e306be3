"""The Python API (``import loopml``): cheap to import, and its registry functions do what the CLI does.

Training and scoring through the API run the same flows as the CLI: tests/integration/test_wheel.py calls
them from an installed wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import loopml
from loopml.registry.registry import Registry, RegistryError
from loopml.storage import LocalStore
from tests.support import REPO as ROOT


def test_import_loopml_loads_no_ml_library() -> None:
    code = ("import json, sys, loopml; print(json.dumps(sorted(m for m in ('pandas', 'numpy', 'sklearn', 'metaflow', "
            "'nannyml', 'pydantic', 'boto3', 'onnxruntime') if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_public_names_are_exactly_the_documented_ones() -> None:
    assert set(loopml.__all__) == {"train", "score", "monitor", "run_cycle", "promote", "rollback", "status",
                                   "TrainResult", "ScoreResult", "MonitorResult", "__version__"}
    for name in loopml.__all__:
        assert getattr(loopml, name) is not None
        if callable(getattr(loopml, name)):
            assert getattr(loopml, name).__doc__, name


def test_promote_rollback_and_status_through_the_api(tmp_path: Path, trained) -> None:
    store = LocalStore(tmp_path / "store")
    first = trained.register(store)
    second = trained.register(store, promote=False)
    uri = str(tmp_path / "store")

    entry = loopml.promote(second, why="api test", store=uri)
    assert (entry["from"], entry["to"], entry["why"]) == (first, second, "api test")
    assert loopml.status(store=uri)["champion"]["version"] == second
    back = loopml.rollback(why="api test: back", store=uri)
    assert (back["from"], back["to"]) == (second, first)
    assert Registry(store).alias() == first
    assert [e["why"] for e in Registry(store).ledger()][-2:] == ["api test", "api test: back"]


def test_api_errors_are_the_cli_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError):
        loopml.promote(7, why="no such version", store=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="mode"):
        loopml.train(tmp_path / "project.yaml", mode="sideways")
    with pytest.raises(ValueError, match="before start"):
        loopml.score(tmp_path / "project.yaml", "2026-01-02", "2026-01-01")


def test_the_api_runs_the_preflight_checks_the_cli_runs(tmp_path: Path, make_raw) -> None:
    """`import loopml` and the CLI do the same things: a bad input fails before any flow starts."""
    import yaml

    from loopml.runtime.preflight import PreflightError

    raw = make_raw()
    raw["data"] = {"train": "missing.csv", "new": "new.csv"}
    spec = tmp_path / "project.yaml"
    spec.write_text(yaml.safe_dump(raw))
    store = tmp_path / "store"
    with pytest.raises(PreflightError, match="missing.csv: no such file"):
        loopml.train(spec, store=str(store))
    with pytest.raises(PreflightError, match=f"no champion in store {store}"):
        loopml.monitor(spec, "2019-01-01", store=str(store))
    with pytest.raises(ValueError, match="as_of 'soon' is not an ISO time"):
        loopml.monitor(spec, "2019-01-01", store=str(store), as_of="soon")
    assert not store.exists() and not (tmp_path / ".metaflow").exists()
