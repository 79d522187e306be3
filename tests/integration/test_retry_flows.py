"""Retried and re-run flows change nothing the second time (Metaflow against a moto S3/SNS/SQS/SFN server).

- TrainFlow's ``end`` run again (``resume --step-to-rerun end``) registers no second version.
- MonitorFlow run twice over the same window stores each alert once, publishes one SNS message, writes
  one decision and starts this project's deployed TrainFlow (Step Functions) once.
"""

from __future__ import annotations

import json

import pytest

from tests.support import REPO
from tests.support.data import small_spec, write_spec
from tests.support.moto import BUCKET, put_parquet

pytestmark = pytest.mark.integration

STORE = f"s3://{BUCKET}/retry-store"
START, END = "2018-11-01", "2018-12-31"


@pytest.fixture(scope="module")
def project(moto_server, s3, car_loan_full, tmp_path_factory):
    train, new, labels = car_loan_full
    train = train.sample(6000, random_state=0).sort_values("timestamp").reset_index(drop=True)
    new = new[(new.timestamp >= START) & (new.timestamp < "2019-01-01")].reset_index(drop=True)
    data = {"train": put_parquet(s3, "retry/train.parquet", train), "new": put_parquet(s3, "retry/new.parquet", new),
            "labels": put_parquet(s3, "retry/labels.parquet", new[["id"]].merge(labels, on="id"))}
    folder = tmp_path_factory.mktemp("retry")
    # monitoring judges against a threshold no model meets, so alerts are raised and the decision is to retrain
    strict = small_spec(data, threshold=0.99, monitoring={"chunk_period": "W", "max_drifting_features": 2})
    return {"spec": write_spec(folder / "project.yaml", small_spec(data)),
            "strict": write_spec(folder / "strict.yaml", strict)}


@pytest.fixture(scope="module")
def trained(project):
    from loopml.runtime.flowrun import run_flow

    return run_flow("train_flow", show_output=False, spec=project["spec"], store=STORE)


def test_train_flow_end_run_twice_registers_one_version(trained, project, monkeypatch):
    from metaflow import Runner

    from loopml.registry.registry import Registry
    from loopml.storage import from_uri

    registry = Registry(from_uri(STORE))
    assert registry.versions() == [trained.data.version] and trained.data.decision["promoted"]
    ledger = registry.ledger()
    monkeypatch.setenv("LOOPML_SPEC", project["spec"])  # the IncludeFile's default, read again on resume
    with Runner(str(REPO / "flows" / "train_flow.py"), show_output=False).resume(
            origin_run_id=trained.id, step_to_rerun="end") as resumed:
        assert resumed.status == "successful", resumed.stderr[-3000:]
        again = resumed.run
    assert again.id != trained.id and again.data.version == trained.data.version
    assert registry.versions() == [trained.data.version]  # the same version, not a second one
    assert registry.ledger() == ledger  # and no second promotion


@pytest.fixture(scope="module")
def aws(moto_server):
    """SNS topic → SQS queue (to count messages) and this project's deployed TrainFlow state machine."""
    import boto3

    from loopml.retraining.triggers import deployed_name

    sns, sqs, sfn = boto3.client("sns"), boto3.client("sqs"), boto3.client("stepfunctions")
    topic = sns.create_topic(Name="retry-alerts")["TopicArn"]
    url = sqs.create_queue(QueueName="retry-alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    definition = json.dumps({"StartAt": "start", "States": {"start": {"Type": "Pass", "End": True}}})
    # a local run's @project branch is user.<name>: METAFLOW_USER=test in the moto env
    machine = sfn.create_state_machine(name=deployed_name("step-functions", "loopml", "user.test"),
                                       definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn")
    return {"topic": topic, "queue": url, "sqs": sqs, "sfn": sfn, "machine": machine["stateMachineArn"]}


def _messages(aws) -> int:
    n = 0
    while got := aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10,
                                            WaitTimeSeconds=1).get("Messages", []):
        n += len(got)
        for m in got:
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])
    return n


def test_monitor_flow_run_twice_alerts_publishes_decides_and_retrains_once(trained, project, aws):
    from datetime import date

    from loopml.runtime.flowrun import FlowFailed, run_flow
    from loopml.scoring.batch import score_range
    from loopml.spec import load_spec
    from loopml.storage import from_uri

    store = from_uri(STORE)
    score_range(store, load_spec(project["spec"]), date.fromisoformat(START), date.fromisoformat(END))
    runs = [run_flow("monitor_flow", show_output=False, spec=project["strict"], store=STORE, start=START, end=END,
                     as_of="2019-01-01T00:00:00+00:00", topic=aws["topic"], retrain_on="step-functions")
            for _ in range(2)]
    first, again = (r.data for r in runs)
    assert first.decision["retrain"] and first.alerts
    assert len({(a["chunk"], a["kind"]) for a in first.alerts}) == len(first.alerts)
    assert len(store.list("monitoring/alerts/")) == len(first.alerts)  # once per (window, version, chunk, kind)
    assert (first.new_alerts, again.new_alerts) == (len(first.alerts), 0)
    assert _messages(aws) == 1 and (first.notified, again.notified) == (len(first.alerts), 0)
    assert len(store.list("monitoring/decisions/")) == 1
    executions = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    assert len(executions) == 1 and first.decision["retraining"]["started"] is True
    assert again.decision["retraining"]["started"] is False and "already claimed" in again.decision["retraining"]["why"]
    params = json.loads(json.loads(aws["sfn"].describe_execution(
        executionArn=executions[0]["executionArn"])["input"])["Parameters"])
    assert params["mode"] == "challenger" and params["retraining-until"] == END

    with pytest.raises(FlowFailed, match="--retrain-on must be one of step-functions, argo-workflows"):
        run_flow("monitor_flow", show_output=False, spec=project["strict"], store=STORE, start=START, end=END,
                 retrain_on="airflow")


def test_cycle_flow_retrain_on_starts_this_projects_trainflow_once(trained, project, aws):
    """CycleFlow --retrain-on step-functions: the retrain step starts the deployed TrainFlow instead of
    training in process; the same day's cycle run again resumes its claim and starts nothing new."""
    from datetime import UTC, date, datetime

    from loopml.retraining.claims import record_outcome
    from loopml.runtime.flowrun import FlowFailed, run_flow
    from loopml.storage import from_uri

    # the retraining the MonitorFlow test started has finished (its TrainFlow records this): none in flight
    record_outcome(from_uri(STORE), date.fromisoformat(END), {"promoted": True, "why": "test"}, datetime(2019, 1, 1, tzinfo=UTC))
    before = len(aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"])
    runs = [run_flow("cycle_flow", show_output=False, spec=project["strict"], store=STORE, day="2018-12-30",
                     window=60, as_of="2018-12-31T00:00:00+00:00", retrain_on="step-functions").data.summary
            for _ in range(2)]
    executions = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    assert len(executions) == before + 1
    first, again = (s["retraining"] for s in runs)
    assert first["started"] and first["engine"] == "step-functions" and first["execution"] == again["execution"]
    assert again["claim"]["resumed"] and runs[1]["monitoring"]["new_alerts"] == 0

    with pytest.raises(FlowFailed, match="--retrain-on must be one of cycle, no, step-functions"):
        run_flow("cycle_flow", show_output=False, spec=project["strict"], store=STORE, day="2018-12-30",
                 retrain_on="yes")
