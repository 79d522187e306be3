"""Retraining (loopml.retraining.claims, loopml.retraining.triggers): the challenger gate, claims with cooldown and in-flight
checks, the window's data file, and starting a deployed TrainFlow."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from loopml.registry.registry import CHALLENGER, Registry
from loopml.retraining.challenge import challenge, compare_on_recent
from loopml.retraining.claims import claim_retraining, record_outcome
from loopml.retraining.data import retraining_data
from loopml.storage import MemoryStore


def scored_store(trained, spec) -> MemoryStore:
    """A store with a champion (v1) and every new row scored by it; labels come from the spec's file."""
    from loopml.scoring.batch import score_range

    store = MemoryStore()
    trained.register(store)
    score_range(store, spec, date(2018, 10, 1), date(2019, 12, 31))
    return store


def test_challenger_is_judged_on_rows_it_did_not_train_on(trained, linear_trained, spec):
    store = scored_store(trained, spec)
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


def with_margin(spec, margin: float):
    return spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"min_improvement": margin})})


def test_challenger_must_beat_the_champion_by_the_spec_margin(trained, linear_trained, spec):
    """Two different models: the better one challenges the weaker champion. It wins with a margin
    below its gain and loses with one above it, so deleting the margin check fails this test."""
    store = scored_store(trained, spec)
    registry = Registry(store)
    other = linear_trained.register(store, promote=False)
    gain = compare_on_recent(store, spec, 1, other, None, None)["gain"]
    assert abs(gain) > 1e-4, "the two models must differ on the recent rows"
    challenger = other if gain > 0 else 1
    if gain < 0:  # the weaker one must be the champion
        registry.promote(other, why="test: the weaker model is the champion")
    gain = abs(gain)

    lost = challenge(store, with_margin(spec, gain * 1.5), challenger, None, None)
    assert lost["promoted"] is False and lost["gain"] == pytest.approx(gain)
    assert f"by more than {gain * 1.5:g}" in lost["why"]
    assert registry.alias(CHALLENGER) == challenger and registry.alias() != challenger

    ledger = len(registry.ledger())
    again = challenge(store, with_margin(spec, gain * 1.5), challenger, None, None)
    assert again["promoted"] is False and len(registry.ledger()) == ledger  # asked twice: the ledger moves once

    won = challenge(store, with_margin(spec, gain * 0.5), challenger, None, None)
    assert won["promoted"] is True and registry.alias() == challenger
    assert challenge(store, spec, challenger, None, None)["promoted"] is True  # a retry: nothing moves
    # two moves: the promotion, and the challenger alias it made stale cleared
    assert [e["action"] for e in registry.ledger()[ledger:]] == ["promote", "clear"]
    assert registry.alias(CHALLENGER) is None


# ------------------------------------------------------------------------------------------ claims
T0 = datetime(2019, 3, 1, tzinfo=UTC)


def test_a_window_is_claimed_once_and_resumed_only_by_its_own_run(spec):
    store = MemoryStore()
    first = claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0)
    assert first.granted and not first.resumed
    retry = claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0 + timedelta(minutes=5))
    assert retry.granted and retry.resumed
    other = claim_retraining(store, spec, date(2019, 2, 28), "cycle/b", T0 + timedelta(minutes=5))
    assert not other.granted and "already claimed by cycle/a" in other.why
    record_outcome(store, date(2019, 2, 28), {"promoted": True, "why": "won"}, T0 + timedelta(hours=1))
    done = claim_retraining(store, spec, date(2019, 2, 28), "cycle/b", T0 + timedelta(hours=2))
    assert not done.granted and "finished: won" in done.why
    assert claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0 + timedelta(hours=2)).resumed


def test_no_retraining_while_one_is_in_flight(spec):
    store = MemoryStore()
    assert claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0).granted
    busy = claim_retraining(store, spec, date(2019, 3, 1), "cycle/b", T0 + timedelta(hours=3))
    assert not busy.granted and "in flight" in busy.why and "in_flight_hours=24" in busy.why
    # a claim never closed is taken as abandoned after in_flight_hours
    assert claim_retraining(store, spec, date(2019, 3, 2), "cycle/c", T0 + timedelta(hours=25)).granted


def test_cooldown_after_a_challenger_lost(spec):
    store = MemoryStore()
    assert spec.retraining.cooldown_days == 7
    assert claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0).granted
    record_outcome(store, date(2019, 2, 28), {"promoted": False, "why": "lost"}, T0 + timedelta(hours=1))
    cooling = claim_retraining(store, spec, date(2019, 3, 3), "cycle/b", T0 + timedelta(days=3))
    assert not cooling.granted and "cooldown_days=7" in cooling.why
    assert claim_retraining(store, spec, date(2019, 3, 9), "cycle/c", T0 + timedelta(days=8)).granted
    quick = spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"cooldown_days": 1})})
    store2 = MemoryStore()
    claim_retraining(store2, quick, date(2019, 2, 28), "cycle/a", T0)
    record_outcome(store2, date(2019, 2, 28), {"promoted": False, "why": "lost"}, T0)
    assert claim_retraining(store2, quick, date(2019, 3, 3), "cycle/b", T0 + timedelta(days=2)).granted


def test_a_won_retraining_does_not_cool_down(spec):
    store = MemoryStore()
    claim_retraining(store, spec, date(2019, 2, 28), "cycle/a", T0)
    record_outcome(store, date(2019, 2, 28), {"promoted": True, "why": "won"}, T0)
    assert claim_retraining(store, spec, date(2019, 3, 1), "cycle/b", T0 + timedelta(days=1)).granted


# ---------------------------------------------------------------------------------------- data
def test_retraining_data_is_never_overwritten(trained, spec):
    store = scored_store(trained, spec)
    until = date(2019, 6, 30)
    first = retraining_data(store, spec, until)
    key = first.removeprefix(store.uri + "/")
    before = store.get(key)
    assert retraining_data(store, spec, until) == first  # same content, same object
    # a corrected label changes the window's content: a new object, the old one untouched
    labelled = store.read_parquet(key)
    row = labelled[labelled["timestamp"] >= "2019-01-01"].iloc[0]
    store.put_json("feedback/date=2019-07-01/fix.json", {"labels": [{"id": str(row["id"]), "label": 1.0 - row["repaid"]}]})
    second = retraining_data(store, spec, until)
    assert second != first and second.startswith(f"{store.uri}/inputs/retrain-until-{until}-")
    assert store.get(key) == before


# ------------------------------------------------------------------------------------ triggers
def test_deployed_names_follow_the_project_and_branch():
    from loopml.retraining.triggers import deployed_name

    assert deployed_name("step-functions", "loopml", "prod") == "loopml.prod.TrainFlow"
    assert deployed_name("step-functions", "loopml", "test.staging") == "loopml.test.staging.TrainFlow"
    assert deployed_name("argo-workflows", "loopml", "prod") == "loopml.prod.trainflow"


def test_retraining_on_aws_starts_the_deployed_trainflow(trained, spec, mock_aws_env):
    """The decision to retrain starts TrainFlow's state machine as a challenger run on the newer window."""
    import boto3
    from moto import mock_aws

    from loopml.retraining.triggers import start_step_functions_retraining

    store = scored_store(trained, spec)
    name = "loopml.prod.TrainFlow"
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        missing = start_step_functions_retraining(store, spec, date(2019, 8, 29), state_machine=name, sfn_client=sfn)
        assert missing["started"] is False and "step-functions create" in missing["why"]
        definition = json.dumps({"StartAt": "start", "States": {"start": {"Type": "Pass", "End": True}}})
        sfn.create_state_machine(name="loopml.staging.TrainFlow", definition=definition,
                                 roleArn="arn:aws:iam::123456789012:role/sfn")
        arn = sfn.create_state_machine(name=name, definition=definition,
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        started = start_step_functions_retraining(store, spec, date(2019, 8, 29), state_machine=name, sfn_client=sfn)
        execution = sfn.describe_execution(executionArn=started["execution"])
    assert execution["stateMachineArn"] == arn  # this deployment's TrainFlow, not staging's
    params = json.loads(json.loads(execution["input"])["Parameters"])
    assert params == {"mode": "challenger", "data": started["data"], "until": "2019-08-29T23:59:59",
                      "retraining-until": "2019-08-29"}
    assert store.exists(started["data"].removeprefix(store.uri + "/"))  # the window's data is in the store
    assert pd.Timestamp("2019-08-29").date().isoformat() in started["data"]
