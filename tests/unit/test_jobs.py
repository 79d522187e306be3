"""Monitoring inputs: late labels and the API's prediction log, read back from the store."""

import json

import pandas as pd

from loopml.jobs import analysis_window, load_labels, read_prediction_log
from loopml.serving import PredictionLog
from loopml.spec import parse_spec
from loopml.storage import MemoryStore

SPEC = parse_spec({
    "name": "t", "task": "binary", "target": "y", "timestamp": "ts", "id": "id",
    "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}],
    "metric": {"name": "roc_auc", "threshold": 0.5}, "data": {"train": "t.csv"},
})


def _log(store, pid, when, c, p1):
    plog = PredictionLog(store, flush_seconds=3600)
    plog.add([{"id": pid, "time": when, "version": 3, "features": {"x": 1.5, "c": c},
               "prediction": 1.0 if p1 > 0.5 else 0.0, "probabilities": {"0.0": 1 - p1, "1.0": p1}}])
    plog.flush()


def test_prediction_log_reads_back_like_batch_predictions():
    store = MemoryStore()
    _log(store, "p-20260102-a", "2026-01-02T10:00:00+00:00", True, 0.8)
    _log(store, "p-20260105-b", "2026-01-05T10:00:00+00:00", "x", 0.3)
    frame = read_prediction_log(store, SPEC, pd.Timestamp("2026-01-01").date(), pd.Timestamp("2026-01-03").date())
    assert frame["id"].tolist() == ["p-20260102-a"]  # the window is respected
    row = frame.iloc[0]
    assert row["c"] == "True" and row["x"] == 1.5 and row["y_pred_proba"] == 0.8 and row["model_version"] == 3
    assert str(row["ts"]) == "2026-01-02 10:00:00"


def test_feedback_labels_join_the_logged_predictions():
    store = MemoryStore()
    _log(store, "p-20260102-a", "2026-01-02T10:00:00+00:00", "x", 0.8)
    store.put("feedback/date=2026-01-03/f.json", json.dumps({"labels": [{"id": "p-20260102-a", "label": 1.0}]}).encode())
    assert load_labels(store, SPEC).to_dict("records") == [{"id": "p-20260102-a", "label": 1.0}]
    frame = analysis_window(store, SPEC, None, None)
    assert frame["y"].tolist() == [1.0]


def _scored_store(trained, spec):
    """A store with a champion (v1) and every new row scored by it; labels come from the spec's file."""
    from datetime import date

    from loopml.scoring import score_range

    store = MemoryStore()
    trained.register(store)
    score_range(store, spec, date(2018, 10, 1), date(2019, 12, 31))
    return store


def test_challenger_is_judged_on_rows_it_did_not_train_on(trained, linear_trained, spec):
    from loopml.jobs import challenge
    from loopml.registry import CHALLENGER, Registry

    store = _scored_store(trained, spec)
    registry = Registry(store)
    v2 = linear_trained.register(store, promote=False)
    meta = {k: v for k, v in registry.get(v2).meta.items() if k not in ("version", "created_at", "artifacts", "reference")}
    meta["data"] = {**meta["data"], "test_from": "2019-05-01"}  # pretend it trained on everything before May
    v3 = registry.register({"model.onnx": registry.artifact(registry.get(v2), "model.onnx")}, meta).number

    outcomes = []
    for number in (v2, v3):
        outcome = challenge(store, spec, number, None, None)
        assert outcome["promoted"] == (outcome["gain"] > 0), outcome  # both pass their gates
        entry = registry.ledger()[-1]
        assert entry["to"] == number and entry["why"] == outcome["why"]
        assert entry["alias"] == ("champion" if outcome["promoted"] else CHALLENGER)
        outcomes.append(outcome)
    everything, held_out = outcomes
    assert 0 < held_out["rows"] < everything["rows"]
    assert everything["compared_from"] < "2019" and held_out["compared_from"] == "2019-05-01"


def test_challenger_must_beat_the_champion_by_the_spec_margin(trained, spec):
    from loopml.jobs import challenge
    from loopml.registry import CHALLENGER, Registry

    store = _scored_store(trained, spec)
    strict = spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"min_improvement": 1.0})})
    v2 = trained.register(store, promote=False)
    outcome = challenge(store, strict, v2, None, None)
    assert outcome["promoted"] is False and "by more than 1" in outcome["why"]
    assert Registry(store).alias(CHALLENGER) == v2 and Registry(store).alias() == 1


def test_retraining_on_aws_starts_the_deployed_trainflow(trained, spec, aws_env):
    """The decision to retrain starts TrainFlow's state machine as a challenger run on the newer window."""
    import boto3
    from moto import mock_aws

    from loopml.jobs import start_step_functions_retraining

    store = _scored_store(trained, spec)
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        missing = start_step_functions_retraining(store, spec, pd.Timestamp("2019-08-29").date(), sfn_client=sfn)
        assert missing["started"] is False and "step-functions create" in missing["why"]
        definition = json.dumps({"StartAt": "start", "States": {"start": {"Type": "Pass", "End": True}}})
        arn = sfn.create_state_machine(name="TrainFlow", definition=definition,
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        started = start_step_functions_retraining(store, spec, pd.Timestamp("2019-08-29").date(), sfn_client=sfn)
        execution = sfn.describe_execution(executionArn=started["execution"])
    assert execution["stateMachineArn"] == arn
    params = json.loads(json.loads(execution["input"])["Parameters"])
    assert params == {"mode": "challenger", "data": started["data"], "until": "2019-08-29T23:59:59"}
    assert store.exists(started["data"].removeprefix(store.uri + "/"))  # the window's data is in the store
