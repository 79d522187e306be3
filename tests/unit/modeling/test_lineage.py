"""Lineage: a version is registered only when its training data can be read back unchanged."""

from __future__ import annotations

import pandas as pd
import pytest

from loopml.modeling.lineage import check_traceable, code_version
from loopml.modeling.windows import load_training_data
from loopml.spec import parse_spec


@pytest.fixture
def data_file(tmp_path, car_loan, make_raw):
    path = tmp_path / "train.parquet"
    car_loan[0].head(200).to_parquet(path, index=False)
    raw = make_raw()
    raw["data"] = {**raw["data"], "train": str(path)}
    raw["retraining"] = {**raw.get("retraining", {}), "window_days": None}
    return path, parse_spec(raw)


def test_unchanged_data_is_traceable(data_file):
    path, spec = data_file
    check_traceable(spec, load_training_data(spec))


def test_data_changed_during_the_run_is_refused(data_file):
    path, spec = data_file
    data = load_training_data(spec)
    changed = pd.read_parquet(path)
    changed.loc[0, "car_value"] += 1
    changed.to_parquet(path, index=False)
    with pytest.raises(ValueError, match=r"changed during the run \(fingerprint [0-9a-f]{12} at load, [0-9a-f]{12} now\)"):
        check_traceable(spec, data)


def test_data_that_vanished_is_refused(data_file):
    path, spec = data_file
    data = load_training_data(spec)
    path.unlink()
    with pytest.raises(ValueError, match=f"the training data at {path} cannot be read back"):
        check_traceable(spec, data)


def test_the_window_is_read_back_the_same_way(data_file):
    """With ``until``, rows newer than the window may arrive meanwhile: the window is what must match."""
    path, spec = data_file
    until = str(pd.to_datetime(pd.read_parquet(path)["timestamp"]).iloc[100])
    data = load_training_data(spec, until=until)
    grown = pd.read_parquet(path)
    later = grown.tail(1).assign(id=10**9, timestamp="2030-01-01 00:00:00.000")
    pd.concat([grown, later]).to_parquet(path, index=False)
    check_traceable(spec, data)  # the new row is outside the window


def test_no_recorded_location_is_refused(data_file):
    _, spec = data_file
    data = load_training_data(spec)
    data.uri = ""
    with pytest.raises(ValueError, match="no recorded location or fingerprint"):
        check_traceable(spec, data)


def test_code_version_is_a_git_sha_in_a_checkout_and_none_elsewhere():
    version = code_version()
    assert version is None or len(version.removesuffix("-dirty")) == 40
