"""The flows compile to their production schedulers' definitions: AWS Step Functions and Argo Workflows.

``--only-json`` makes Metaflow print the definition instead of deploying it; it still packages the
code into the S3 datastore, so it runs against the moto server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO
from tests.support.data import small_spec, write_spec
from tests.support.moto import BUCKET

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
SFN_ENV = {
    # what Metaflow's step-functions command refuses to compile without (found by trying)
    "METAFLOW_SFN_IAM_ROLE": f"arn:aws:iam::{ACCOUNT}:role/loopml-sfn",
    "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": f"arn:aws:iam::{ACCOUNT}:role/loopml-batch",
    "METAFLOW_BATCH_JOB_QUEUE": "loopml",  # Metaflow looks the queue up in AWS Batch: created in moto below
    "METAFLOW_SFN_DYNAMO_DB_TABLE": "loopml-sfn-state",
    "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": f"arn:aws:iam::{ACCOUNT}:role/loopml-events",
    "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": f"arn:aws:iam::{ACCOUNT}:role/loopml-fargate-exec",  # Fargate queue
}
# flow -> the steps its state machine must contain
FLOWS = {
    "train_flow": ["start", "tune", "select", "evaluate", "end"],
    "score_flow": ["start", "score", "end"],
    "monitor_flow": ["start", "monitor", "end"],
    "cycle_flow": ["start", "score", "monitor", "retrain", "end"],  # the one scheduled flow, in this order
}


@pytest.fixture(scope="module")
def deploy_spec(tmp_path_factory) -> dict[str, str]:
    """The spec a deployment freezes in (the flows take it as an IncludeFile, read at `create` time)."""
    data = {k: f"s3://{BUCKET}/data/{k}.parquet" for k in ("train", "new", "labels")}
    path = write_spec(tmp_path_factory.mktemp("deploy") / "project.yaml", small_spec(data))
    return {"LOOPML_SPEC": path, "LOOPML_STORE": f"s3://{BUCKET}/store"}


@pytest.fixture(scope="module")
def batch_queue(moto_server):
    """The AWS Batch job queue the state machine's tasks are sent to, in moto (Metaflow checks it exists)."""
    import boto3

    iam = boto3.client("iam")
    role = iam.create_role(RoleName="loopml-batch-service", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"},
                                                  "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="loopml", Description="loopml", VpcId=vpc)["GroupId"]
    batch = boto3.client("batch")
    env = batch.create_compute_environment(
        computeEnvironmentName="loopml", type="MANAGED", state="ENABLED", serviceRole=role,
        computeResources={"type": "FARGATE", "maxvCpus": 4, "subnets": [subnet], "securityGroupIds": [group]},
    )["computeEnvironmentArn"]
    batch.create_job_queue(jobQueueName="loopml", state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}])
    return "loopml"


def compile_flow(flow: str, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "flows" / f"{flow}.py"), "--no-pylint", "--with", "retry", *command, "--only-json"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=180,
    )


def _json_document(stdout: str) -> dict:
    """--only-json prints the definition; skip anything Metaflow prints before it."""
    start = stdout.index("{")
    return json.loads(stdout[start:])


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_step_functions_definition(batch_queue, deploy_spec, flow):
    proc = compile_flow(flow, {**SFN_ENV, **deploy_spec}, "step-functions", "create")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    machine = _json_document(proc.stdout)
    assert machine["StartAt"] == "start"
    states = all_states(machine)
    for step in FLOWS[flow]:
        assert step in states, (step, sorted(states))
        # each step is an AWS Batch job, with the retry we asked for
        assert states[step]["Type"] == "Task" and "batch:submitJob" in states[step]["Resource"]
        assert states[step].get("Retry"), step
    if flow == "train_flow":  # the candidates' foreach is a Map state that runs `tune` per candidate
        maps = [s for s in states.values() if s["Type"] == "Map"]
        assert maps and "tune" in all_states(maps[0].get("Iterator") or maps[0]["ItemProcessor"])
    if flow == "cycle_flow":
        order = [machine["StartAt"]]
        while "Next" in states[order[-1]]:
            order.append(states[order[-1]]["Next"])
        assert order == FLOWS[flow]  # a chain: monitoring cannot run before scoring, nor retraining before it
        # @project: the tasks run under this project and branch, never another deployment's
        env = json.dumps(states["start"])
        assert "loopml" in env and "user.test" in env, env[:2000]


def all_states(machine: dict) -> dict[str, dict]:
    """Every state, including those inside Map/Parallel states."""
    out: dict[str, dict] = {}
    for name, state in machine["States"].items():
        out[name] = state
        for inner in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if inner:
                out.update(all_states(inner))
    return out


KUBE_ENV = {
    "METAFLOW_KUBERNETES_NAMESPACE": "loopml",
    "METAFLOW_KUBERNETES_SERVICE_ACCOUNT": "loopml",
    "METAFLOW_KUBERNETES_CONTAINER_IMAGE": "python:3.11",
}


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_argo_workflows_definition(moto_server, deploy_spec, flow):
    # no cluster is needed for --only-json, only the `kubernetes` Python client (in requirements.txt)
    proc = compile_flow(flow, {**KUBE_ENV, **deploy_spec}, "argo-workflows", "create")
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]
    doc = _json_document(proc.stdout)
    assert doc["kind"] == "WorkflowTemplate"
    templates = {t["name"] for t in doc["spec"]["templates"]}
    for step in FLOWS[flow]:
        assert step in templates, (step, sorted(templates))
    if flow == "cycle_flow":
        assert doc["metadata"]["name"].startswith("loopml.user.test."), doc["metadata"]["name"]
        assert doc["metadata"]["annotations"]["metaflow/project_name"] == "loopml"
        dag = next(t["dag"]["tasks"] for t in doc["spec"]["templates"] if "dag" in t)
        depends = {t["name"]: t["depends"] for t in dag}
        steps = FLOWS[flow]
        assert depends == {"start": "", **{step: f"{before}.Succeeded" for before, step in zip(steps, steps[1:], strict=False)}}


# ---- infra/deploy_flows.sh: what an operator runs; the image is required and ends up in every task
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/loopml:3f2a1c"


def deploy_flows(command: str, env: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "infra" / "deploy_flows.sh"), command, *options], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHON": sys.executable, **env}, timeout=300)


def test_deploy_flows_puts_the_image_and_the_branch_into_the_step_functions_deployment(batch_queue, deploy_spec):
    import boto3

    proc = deploy_flows("sfn-json", {**SFN_ENV, **deploy_spec, "LOOPML_IMAGE": IMAGE}, "--branch", "staging")
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]
    machine = _json_document(proc.stdout[proc.stdout.index("\n{") :])
    states = all_states(machine)
    assert [s for s in FLOWS["cycle_flow"] if s not in states] == []
    # every step runs as a Batch job whose job definition (registered by Metaflow) names the image
    definitions = {states[s]["Parameters"]["JobDefinition"] for s in FLOWS["cycle_flow"]}
    described = boto3.client("batch").describe_job_definitions(jobDefinitions=sorted(definitions))["jobDefinitions"]
    assert described and {d["containerProperties"]["image"] for d in described} == {IMAGE}
    assert "test.staging" in json.dumps(states["start"]), "the --branch names the deployment"


def test_deploy_flows_puts_the_image_and_the_branch_into_the_argo_workflow(moto_server, deploy_spec):
    proc = deploy_flows("argo-json", {**KUBE_ENV, **deploy_spec, "LOOPML_IMAGE": IMAGE}, "--production")
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]
    doc = _json_document(proc.stdout[proc.stdout.index("\n{") :])
    assert doc["metadata"]["name"].startswith("loopml.prod."), doc["metadata"]["name"]
    images = {t["container"]["image"] for t in doc["spec"]["templates"] if "container" in t}
    assert images == {IMAGE}, images


def test_deploy_flows_refuses_to_deploy_without_the_image(deploy_spec):
    env = {**deploy_spec, "LOOPML_IMAGE": ""}
    for command in ("sfn-create", "argo-create", "train-batch"):
        proc = deploy_flows(command, env)
        assert proc.returncode == 2 and "LOOPML_IMAGE" in proc.stderr, (command, proc.stderr)
        assert proc.stdout == ""  # nothing was run
