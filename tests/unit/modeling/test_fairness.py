"""The fairness gate: missing group values, single-class groups, a minimum group size, strict JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loopml.modeling.fairness import MISSING_GROUP, fairness
from loopml.modeling.gates import gates
from loopml.spec import parse_spec


def _strict(obj) -> str:
    return json.dumps(obj, allow_nan=False)  # raises on NaN / inf


@pytest.fixture
def fair_spec(make_raw):
    def _make(max_gap: float = 0.1, **extra):
        raw = make_raw()
        raw["constraints"] = {"fairness": {"group": "g", "max_gap": max_gap, **extra}}
        return parse_spec(raw)
    return _make


def _outputs(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and (n, 2) probabilities from a positive-class score (classes [0.0, 1.0])."""
    return (score > 0.5).astype(float), np.column_stack([1 - score, score])


def _group(rng, n: int, auc_noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.tile([0.0, 1.0], n // 2)
    return y, np.clip(y * 0.6 + 0.2 + rng.normal(0, auc_noise, len(y)), 0, 1)


def test_missing_group_values_are_a_group_of_their_own(fair_spec):
    rng = np.random.default_rng(0)
    ys, scores = zip(*(_group(rng, 60, 0.2) for _ in range(3)), strict=True)
    y, score = np.concatenate(ys), np.concatenate(scores)
    g = pd.Series(["a"] * 60 + [None] * 30 + [np.nan] * 30 + ["b"] * 60, dtype="string")
    pred, proba = _outputs(y, score)
    out = fairness(pd.DataFrame({"g": g}), y, pred, proba, fair_spec(max_gap=1.0), [0.0, 1.0])
    assert set(out["per_group"]) == {"a", "b", MISSING_GROUP}
    assert out["per_group"][MISSING_GROUP]["n"] == 60 and out["per_group"][MISSING_GROUP]["judged"]
    _strict(out)


def test_a_single_class_group_is_reported_not_judged_and_never_nan(fair_spec):
    rng = np.random.default_rng(1)
    y_a, s_a = _group(rng, 60, 0.1)
    y_b, s_b = _group(rng, 60, 0.1)
    y_one = np.ones(40)  # one class only: ROC AUC is undefined here
    s_one = rng.uniform(0, 1, 40)
    y = np.concatenate([y_a, y_b, y_one])
    pred, proba = _outputs(y, np.concatenate([s_a, s_b, s_one]))
    for names in (["a", "b", "zzz"], ["m", "n", "0-single"]):  # the verdict must not hang on how names sort
        g = pd.Series([names[0]] * 60 + [names[1]] * 60 + [names[2]] * 40)
        out = fairness(pd.DataFrame({"g": g}), y, pred, proba, fair_spec(max_gap=0.1), [0.0, 1.0])
        single = out["per_group"][names[2]]
        assert single["value"] is None and single["judged"] is False and "one class" in single["note"]
        assert out["judged_groups"] == 2 and out["gap"] is not None and out["gap"] <= 0.1
        assert out["passes"] is True
        _strict(out)


def test_groups_below_the_minimum_size_are_reported_not_judged(fair_spec):
    """Seven rows with a perfect AUC once blocked a model: a small group now only reports."""
    rng = np.random.default_rng(2)
    y_a, s_a = _group(rng, 100, 0.25)
    y_b, s_b = _group(rng, 100, 0.25)
    y_tiny = np.array([0, 1, 0, 1, 0, 1, 1], dtype=float)
    s_tiny = y_tiny * 0.9 + 0.05  # perfectly ranked
    y = np.concatenate([y_a, y_b, y_tiny])
    pred, proba = _outputs(y, np.concatenate([s_a, s_b, s_tiny]))
    g = pd.Series(["a"] * 100 + ["b"] * 100 + ["tiny"] * 7)
    spec = fair_spec(max_gap=0.05)
    assert spec.constraints.fairness.min_group_size == 30  # the default
    out = fairness(pd.DataFrame({"g": g}), y, pred, proba, spec, [0.0, 1.0])
    tiny = out["per_group"]["tiny"]
    assert tiny == {"n": 7, "value": None, "judged": False,
                    "note": "7 test rows < min_group_size 30: reported, not judged"}
    assert out["passes"] is True and out["gap"] < 0.05

    # the spec can lower the minimum: then the tiny group is judged and its perfect AUC opens the gap
    judged = fairness(pd.DataFrame({"g": g}), y, pred, proba, fair_spec(max_gap=0.05, min_group_size=5), [0.0, 1.0])
    assert judged["per_group"]["tiny"]["value"] == 1.0 and judged["passes"] is False
    assert any("fairness gap" in r for r in gates(spec, {"roc_auc": 0.99}, judged)["reasons"])


def test_fewer_than_two_judged_groups_means_no_gap(fair_spec):
    y = np.tile([0.0, 1.0], 30)
    pred, proba = _outputs(y, y * 0.5 + 0.25)
    out = fairness(pd.DataFrame({"g": ["a"] * 60}), y, pred, proba, fair_spec(), [0.0, 1.0])
    assert out["gap"] is None and out["passes"] is True and out["judged_groups"] == 1
    assert gates(fair_spec(), {"roc_auc": 0.99}, out)["passes"] is True


def test_version_json_is_strict_json(trained, make_raw, tmp_path):
    """The whole record written at registration parses with a strict JSON parser (no bare NaN)."""
    from loopml.modeling.evaluate import evaluate
    from loopml.storage import LocalStore

    raw = make_raw()
    raw["constraints"] = {"fairness": {"group": "salary_range", "max_gap": 0.5, "min_group_size": 5}}
    spec = parse_spec(raw)
    ev = evaluate(trained.winner, trained.splits, spec, trained.classes)
    store = LocalStore(tmp_path / "store")
    number = trained.register(store, spec=spec, evaluation=ev, promote=False)
    text = (tmp_path / "store" / "registry" / "versions" / f"{number:04d}" / "version.json").read_text()

    def no_constants(name: str):
        raise AssertionError(f"non-standard JSON constant {name} in version.json")

    meta = json.loads(text, parse_constant=no_constants)
    assert meta["fairness"]["group"] == "salary_range"
