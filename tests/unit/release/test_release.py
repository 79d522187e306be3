"""loopml/release.py: the pipeline's steps. The registry is the real one over a MemoryStore; the stack,
the function's versions and its live alias are moto's (in-process ``mock_aws``).

What moto cannot do here, and so what these tests do not cover: the SAM transform (the stack below is
written in plain CloudFormation), ``AWS::Lambda::Alias`` in CloudFormation (the alias is made through
Lambda's API, as SAM's AutoPublishAlias would have), and CodeDeploy's ``StopDeployment`` (a canary in
flight is seen through the alias's routing weights only; no deployment group is in the stack).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from loopml.cycle.records import AlertRecord, MonitoringResults
from loopml.registry.registry import CHAMPION, Registry
from loopml.release.aws import read_stack, rollback_function
from loopml.release.checks import check
from loopml.release.records import RELEASES, ReleaseError, releases
from loopml.release.smoke import _check_answer, smoke_row
from loopml.release.steps import promote, rollback
from loopml.storage import MemoryStore
from loopml.storage.layout import monitoring_results_key
from loopml.storage.records import write

PASSED = {"passes": True, "reasons": []}


def _register(store: MemoryStore, tag: str, gates: dict[str, Any] = PASSED) -> int:
    meta = {"name": "t", "tag": tag, "gates": gates, "metrics": {"roc_auc": 0.9}}
    return Registry(store).register({"model.joblib": f"model-{tag}".encode()}, meta).number


def _monitored(store: MemoryStore, version: int, start: str, end: str, open_alerts: tuple[dict[str, Any], ...] = ()) -> None:
    """A monitoring run's results that saw ``version`` over [start, end], with these alerts still open."""
    run_id = f"{start}_{end}_v{version}"
    stamp = {"run_id": run_id, "version": version, "at": f"{end}T23:00:00+00:00"}
    alerts = [AlertRecord(chunk="all", value=None, threshold=None, key=f"monitoring/alerts/{run_id}/a.json", **stamp, **a)
              for a in open_alerts]
    write(store, monitoring_results_key(run_id), MonitoringResults(
        **stamp, window={"start": start, "end": end}, rows=1, coverage={}, metric="roc_auc", chunks=[],
        drifting_features=[], messages=[], alerts=[], open_alerts=alerts, decision=""))


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# check ----------------------------------------------------------------------------------------------
def test_check_passes_a_vetted_version_that_no_monitoring_run_has_seen(store):
    n = _register(store, "a")
    verdict = check(store, n)
    assert verdict.passes and verdict.reasons == []
    assert verdict.evidence["monitoring"] is None and verdict.evidence["gates"] == PASSED


def test_check_gives_every_reason_a_version_must_not_ship(store):
    n = _register(store, "a", gates={"passes": False, "reasons": ["roc_auc 0.71 < 0.80"]})
    store.put("registry/versions/0001/model.joblib", b"tampered")
    # nothing new in this run, but last run's alert is still open (carried over)
    _monitored(store, n, "2024-01-01", "2024-01-31", open_alerts=({"kind": "performance",
                                                                   "message": "roc_auc below threshold"},))
    _monitored(store, n, "2023-12-01", "2023-12-31")  # older and clean: not the latest
    verdict = check(store, n)
    text = " | ".join(verdict.reasons)
    assert not verdict.passes and len(verdict.reasons) == 3, text
    assert "SHA-256" in text and "roc_auc 0.71 < 0.80" in text and "2024-01-01_2024-01-31_v1" in text
    assert "performance" in text
    assert len(check(store, n, allow_alerts=True).reasons) == 2


def test_check_names_a_version_that_is_not_there(store):
    from loopml.registry.registry import RegistryError

    with pytest.raises(RegistryError, match="no version 7"):
        check(store, 7)


# promote --------------------------------------------------------------------------------------------
def test_promote_records_who_approved_in_the_ledger_and_the_release_log(store):
    a, b = _register(store, "a"), _register(store, "b")
    promote(store, a, env="prod", approved_by="alice")
    entry = promote(store, b, env="prod", approved_by="bob", why="better on recent data")
    assert entry["model"] == {"from": a, "to": b} and entry["who"] == "bob" and entry["env"] == "prod"
    last = Registry(store).ledger(CHAMPION)[-1]
    assert (last["who"], last["from"], last["to"], last["action"]) == ("bob", a, b, "promote")
    assert "approved by bob" in last["why"]
    assert [r["who"] for r in releases(store)] == ["alice", "bob"]


def test_promote_refuses_a_version_that_fails_its_check_and_changes_nothing(store):
    good = _register(store, "a")
    promote(store, good, env="prod", approved_by="alice")
    bad = _register(store, "b", gates={"passes": False, "reasons": ["fairness gap 0.2 > 0.05"]})
    before = {k: store.get(k) for k in store.list()}
    with pytest.raises(ReleaseError, match="fairness gap"):
        promote(store, bad, env="prod", approved_by="bob")
    with pytest.raises(ReleaseError, match="approved-by"):
        promote(store, good, env="prod", approved_by="  ")
    assert {k: store.get(k) for k in store.list()} == before
    assert Registry(store).alias(CHAMPION) == good


# the stack and the function (moto) ----------------------------------------------------------------
def _zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handlers/api.py", text)
    return buf.getvalue()


STACK = {
    "Resources": {
        "ApiFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "ApiFunction": {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": "python3.13", "Handler": "handlers.api.handler", "Role": {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]},
            "Code": {"ZipFile": "def handler(event, context):\n    return 1\n"}}},
        "ApiFunctionVersion1": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "ApiFunction"}}},
    },
    "Outputs": {"FunctionName": {"Value": {"Ref": "ApiFunction"}}, "StoreUri": {"Value": "s3://loopml-prod/loopml"}},
}


@pytest.fixture
def aws(mock_aws_env):
    """A stack with the API function, version 1 behind ``live``, then a deploy: version 2 behind it."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        cfn, lam = boto3.client("cloudformation"), boto3.client("lambda")
        cfn.create_stack(StackName="loopml-prod", TemplateBody=json.dumps(STACK), Capabilities=["CAPABILITY_IAM"])
        fn = read_stack(cfn, "loopml-prod").function
        lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")  # moto's CFN has no AWS::Lambda::Alias
        lam.update_function_code(FunctionName=fn, ZipFile=_zip("def handler(event, context):\n    return 2\n"))
        assert lam.publish_version(FunctionName=fn)["Version"] == "2"
        lam.update_alias(FunctionName=fn, Name="live", FunctionVersion="2")
        yield {"cfn": cfn, "lam": lam, "function": fn}


def _live(aws) -> tuple[str, dict[str, float]]:
    a = aws["lam"].get_alias(FunctionName=aws["function"], Name="live")
    return a["FunctionVersion"], (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def test_read_stack_finds_the_function_and_the_store(aws):
    stack = read_stack(aws["cfn"], "loopml-prod")
    assert stack.function == aws["function"] and stack.store_uri == "s3://loopml-prod/loopml"
    with pytest.raises(ReleaseError, match="stack nope"):
        read_stack(aws["cfn"], "nope")


def test_rollback_moves_the_model_alias_and_the_function_alias_back(store, aws):
    a, b = _register(store, "a"), _register(store, "b")
    promote(store, a, env="prod", approved_by="alice")
    promote(store, b, env="prod", approved_by="bob", function=(aws["lam"], aws["function"]))
    stack = read_stack(aws["cfn"], "loopml-prod")
    entry = rollback(store, why="smoke failed", who="ci", lam=aws["lam"], stack=stack)
    assert entry["model"] == {"from": b, "to": a}
    assert (entry["function"]["from"], entry["function"]["to"]) == ("2", "1")
    assert _live(aws) == ("1", {})
    assert Registry(store).alias(CHAMPION) == a
    records = releases(store)
    assert [r["action"] for r in records] == ["promote", "promote", "rollback"]
    assert records[1]["function"]["to"] == "2"  # what was live when bob's model went out
    last = Registry(store).ledger(CHAMPION)[-1]
    assert (last["action"], last["who"], last["from"], last["to"]) == ("rollback", "ci", b, a)


def test_rollback_during_a_canary_takes_the_traffic_share_away(aws):
    # CodeDeploy's canary: the alias names the old version (1) and sends 10% to the new one (2)
    aws["lam"].update_alias(FunctionName=aws["function"], Name="live", FunctionVersion="1",
                            RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    move = rollback_function(aws["lam"], aws["function"])
    assert (move.from_version, move.to_version, move.cleared_weights) == ("1", "1", {"2": 0.1})
    assert _live(aws) == ("1", {})


def test_rollback_says_what_it_could_not_do_and_still_does_the_rest(store, aws):
    a = _register(store, "a")
    promote(store, a, env="prod", approved_by="alice")  # the first champion: no earlier model
    stack = read_stack(aws["cfn"], "loopml-prod")
    with pytest.raises(ReleaseError, match="model: nothing to roll back to") as err:
        rollback(store, why="smoke failed", who="ci", lam=aws["lam"], stack=stack)
    assert '"to": "1"' in str(err.value)
    assert _live(aws) == ("1", {})  # the function half moved all the same
    assert releases(store)[-1]["errors"] and releases(store)[-1]["function"]["to"] == "1"
    with pytest.raises(ReleaseError, match="first published version"):
        rollback_function(aws["lam"], aws["function"])  # version 1 has nothing before it


# smoke ---------------------------------------------------------------------------------------------
def test_smoke_row_follows_the_schema():
    schema = {"task": "binary", "features": [{"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical"}]}
    assert smoke_row(schema) == {"x": 1.0, "c": "smoke-test"}
    with pytest.raises(ReleaseError, match="schema"):
        smoke_row({})


def test_smoke_answer_checks():
    model = {"schema": {"task": "binary", "classes": [False, True]}}
    ok = {"model_version": 3, "predictions": [{"id": "p1", "prediction": True, "probabilities": [0.3, 0.7]}]}
    assert _check_answer(ok, model, 3) == []
    bad = {"model_version": 2, "predictions": [{"id": "", "prediction": "maybe", "probabilities": [0.3, 0.3]}]}
    problems = " | ".join(_check_answer(bad, model, 3))
    for part in ("used version 2", "not one of the classes", "do not add up to 1", "no id"):
        assert part in problems


def test_release_cli_check_exits_1_with_reasons_and_2_on_a_bad_version(tmp_path, capsys, monkeypatch):
    from loopml.cli.main import main
    from loopml.storage import from_uri

    folder = from_uri(str(tmp_path / "store"))
    _register(folder, "a", gates={"passes": False, "reasons": ["roc_auc 0.71 < 0.80"]})
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    with pytest.raises(SystemExit) as exit_:
        main(["release", "check", "--version", "latest", "--store", str(tmp_path / "store")])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "blocked: it failed its gates (roc_auc 0.71 < 0.80)" in captured.out
    assert out.read_text() == "version=1\n"
    assert main(["release", "check", "--version", "one", "--store", str(tmp_path / "store")]) == 2
    assert not folder.list(RELEASES + "/")


def test_a_function_only_rollback_leaves_the_model_alone(store, aws):
    a, b = _register(store, "a"), _register(store, "b")
    promote(store, a, env="prod", approved_by="alice")
    promote(store, b, env="prod", approved_by="bob")
    entry = rollback(store, why="code deploy failed its smoke test", who="ci", model=False, lam=aws["lam"],
                     stack=read_stack(aws["cfn"], "loopml-prod"))
    assert entry["model"] is None and entry["function"]["to"] == "1"
    assert Registry(store).alias(CHAMPION) == b and _live(aws) == ("1", {})
