"""Stage 1: a spec either loads whole or fails with a SpecError that names the wrong field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from loopml.spec import ProblemSpec, SpecError, load_spec, parse_spec


def test_valid_spec_loads(make_raw):
    spec = parse_spec(make_raw())
    assert isinstance(spec, ProblemSpec)
    assert spec.task == "binary" and spec.target == "repaid"
    assert spec.numeric == ["car_value", "debt_to_income_ratio", "loan_length", "driver_tenure"]
    assert spec.categorical == ["salary_range", "repaid_loan_on_prev_car", "size_of_downpayment"]
    assert spec.metric.passes(0.95) and not spec.metric.passes(0.85)
    assert spec.constraints.max_model_mb == 50 and spec.constraints.p99_latency_ms is None


def test_defaults_fill_optional_sections(make_raw):
    raw = make_raw()
    for key in ("constraints", "candidates", "monitoring", "retraining", "timestamp", "id"):
        raw.pop(key)
    spec = parse_spec(raw)
    assert [c.family for c in spec.candidates] == ["linear", "random_forest"]
    assert spec.constraints.max_model_mb is None and spec.constraints.fairness is None
    assert spec.seed == 42


def test_fingerprint_is_stable_and_content_sensitive(make_raw):
    a, b = parse_spec(make_raw()), parse_spec(make_raw())
    assert a.fingerprint() == b.fingerprint()
    assert parse_spec(make_raw(seed=7)).fingerprint() != a.fingerprint()


def _error(raw) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return str(info.value)


@pytest.mark.parametrize("field", ["name", "task", "target", "features", "metric", "data"])
def test_missing_field_is_named(make_raw, field):
    raw = make_raw()
    raw.pop(field)
    msg = _error(raw)
    assert f"{field}: Field required" in msg


def test_wrong_type_names_the_nested_field(make_raw):
    raw = make_raw()
    raw["features"][1]["type"] = "text"
    msg = _error(raw)
    assert "features[1].type" in msg


def test_wrong_scalar_type_names_the_field(make_raw):
    raw = make_raw()
    raw["metric"]["threshold"] = "high"
    assert "metric.threshold" in _error(raw)


def test_unknown_task_is_named(make_raw):
    assert "task" in _error(make_raw(task="ranking"))


def test_unknown_metric(make_raw):
    raw = make_raw(metric={"name": "auc_roc", "threshold": 0.9})
    msg = _error(raw)
    assert "metric.name" in msg and "unknown metric 'auc_roc'" in msg


def test_metric_not_for_task(make_raw):
    raw = make_raw(metric={"name": "rmse", "threshold": 1.0})
    msg = _error(raw)
    assert "metric.name" in msg and "does not apply to task 'binary'" in msg


def test_duplicated_feature(make_raw):
    raw = make_raw()
    raw["features"].append(copy.deepcopy(raw["features"][0]))
    msg = _error(raw)
    assert "features" in msg and "duplicated" in msg and "car_value" in msg


def test_target_listed_as_feature(make_raw):
    raw = make_raw()
    raw["features"].append({"name": "repaid", "type": "numeric"})
    msg = _error(raw)
    assert "target" in msg and "'repaid'" in msg and "also listed as a feature" in msg


def test_typo_unknown_field_is_named(make_raw):
    raw = make_raw()
    raw["constraints"] = {"p99_latncy_ms": 50}
    msg = _error(raw)
    assert "constraints.p99_latncy_ms" in msg and "unknown field" in msg


def test_typo_at_top_level(make_raw):
    raw = make_raw(candidtes=[])
    assert "candidtes: unknown field" in _error(raw)


def test_every_problem_is_reported_at_once(make_raw):
    raw = make_raw(task="ranking")
    raw["features"][2]["type"] = "float"
    msg = _error(raw)
    assert "task" in msg and "features[2].type" in msg


def test_unknown_candidate_family(make_raw):
    raw = make_raw(candidates=[{"family": "xgboost"}])
    msg = _error(raw)
    assert "candidates[0].family" in msg and "xgboost" in msg


def test_top_level_must_be_a_mapping():
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_spec(["not", "a", "mapping"])


def _write(tmp_path: Path, raw) -> Path:
    path = tmp_path / "sub" / "project.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_relative_data_paths_resolve_against_the_yaml_folder(make_raw, tmp_path, monkeypatch):
    raw = make_raw(data={"train": "data/train.csv", "new": "s3://bucket/new.parquet", "labels": "/abs/labels.csv"})
    path = _write(tmp_path, raw)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    spec = load_spec(path)
    assert spec.data.train == str((tmp_path / "sub" / "data" / "train.csv").resolve())
    assert spec.data.new == "s3://bucket/new.parquet"
    assert spec.data.labels == "/abs/labels.csv"


def test_bad_yaml_is_a_spec_error(tmp_path):
    path = tmp_path / "project.yaml"
    path.write_text("name: car_loan\nfeatures: [unclosed\n  - x: : :\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_load_spec_names_the_file_and_field(make_raw, tmp_path):
    raw = make_raw()
    raw["features"][1]["type"] = "text"
    path = _write(tmp_path, raw)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "features[1].type" in str(info.value)


def test_shipped_examples_are_valid_specs():
    from pathlib import Path

    from loopml.spec import load_spec

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*/project.yaml"))
    assert examples
    for path in examples:
        assert load_spec(path).data.train.startswith(str(path.parent))
