"""The deployment canary (issue 9 §7): the PreTraffic hook's own code (inline in template.yaml, run
here with fake clients), the alarms that watch the new version only, and the usage-plan option."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml

from tests.support import REPO

TEMPLATE = REPO / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tagged(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    """!Ref X -> {"Ref": "X"}: CloudFormation's short-form functions kept as plain data."""
    tag = tag.lstrip("!")
    if isinstance(node, yaml.ScalarNode):
        return {tag: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {tag: loader.construct_sequence(node, deep=True)}
    return {tag: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tagged)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)


class FakeLambda:
    def __init__(self, answer: Any, function_error: str | None = None) -> None:
        self.answer, self.function_error, self.calls = answer, function_error, []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self.calls.append((FunctionName, json.loads(Payload)))
        out = {"Payload": io.BytesIO(json.dumps(self.answer).encode())}
        if self.function_error:
            out["FunctionError"] = self.function_error
        return out


class FakeCodeDeploy:
    def __init__(self) -> None:
        self.statuses: list[str] = []

    def put_lifecycle_event_hook_execution_status(self, deploymentId: str, lifecycleEventHookExecutionId: str,  # noqa: N803
                                                  status: str) -> None:
        self.statuses.append(status)


def hook(template: dict[str, Any]) -> dict[str, Any]:
    code = template["Resources"]["PreTrafficHookFunction"]["Properties"]["InlineCode"]
    namespace: dict[str, Any] = {}
    exec(compile(code, "pretraffic_inline.py", "exec"), namespace)  # noqa: S102 (our own template's code)
    return namespace


EVENT = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h-1"}


@pytest.mark.parametrize("answer, error, status", [
    ({"statusCode": 200, "body": json.dumps({"model_version": 3, "predictions": [{"id": "p"}]})}, None, "Succeeded"),
    ({"statusCode": 503, "body": json.dumps({"detail": "no champion"})}, None, "Failed"),
    ({"statusCode": 200, "body": json.dumps({"model_version": 3, "predictions": []})}, None, "Failed"),
    ({"errorMessage": "boom"}, "Unhandled", "Failed"),
])
def test_pretraffic_hook_passes_only_a_real_prediction(template, monkeypatch, answer, error, status):
    ns = hook(template)
    monkeypatch.setenv("NEW_VERSION", "arn:aws:lambda:us-east-1:1:function:api:7")
    lam, cd = FakeLambda(answer, error), FakeCodeDeploy()
    result = ns["handler"](EVENT, None, lam=lam, codedeploy=cd)
    assert cd.statuses == [status] and result["ok"] is (status == "Succeeded")
    assert lam.calls == [("arn:aws:lambda:us-east-1:1:function:api:7", {"loopml": "pretraffic"})]


def test_deployment_watches_http_5xx_and_latency_of_the_new_version(template):
    fn = template["Resources"]["ApiFunction"]["Properties"]
    assert fn["Runtime"] == "python3.13"
    pref = fn["DeploymentPreference"]
    assert pref["Hooks"]["PreTraffic"] == {"Ref": "PreTrafficHookFunction"}
    alarms = [a["Ref"] for a in pref["Alarms"]]
    assert {"CanaryHttp5xxAlarm", "CanaryLatencyAlarm"} <= set(alarms)
    for name in alarms:
        dims = {d["Name"]: d["Value"] for d in template["Resources"][name]["Properties"]["Dimensions"]}
        version = dims.get("FunctionVersion") or dims.get("ExecutedVersion")
        assert version == {"GetAtt": "ApiFunction.Version.Version"}, name
    http5xx = template["Resources"]["CanaryHttp5xxAlarm"]["Properties"]
    assert (http5xx["Namespace"], http5xx["MetricName"]) == ("loopml", "Http5xx")
    assert fn["Environment"]["Variables"]["LOOPML_OBSERVABILITY"] == "json"


def test_usage_plan_keys_are_an_option(template):
    res = template["Resources"]
    assert res["UsagePlan"]["Condition"] == "HasUsagePlan" and res["ClientApi"]["Condition"] == "HasUsagePlan"
    body = res["ClientApi"]["Properties"]["Body"]
    assert body["paths"]["/{proxy+}"]["x-amazon-apigateway-any-method"]["security"] == [{"api_key": []}]
    assert res["ClientKey1"]["Condition"] == "HasClient1" and res["ClientUsagePlanKey5"]["Condition"] == "HasClient5"


def test_request_bodies_reach_the_app_byte_for_byte(template):
    assert template["Resources"]["Api"]["Properties"]["BinaryMediaTypes"] == ["*~1*"]
