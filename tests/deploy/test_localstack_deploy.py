"""template.yaml deployed to LocalStack with localstack/deploy.sh, checked resource by resource, then deleted.

LocalStack runs as its own Python runtime (`infra/localstack.sh start`, 127.0.0.1 only). It cannot create Lambda
functions offline (it downloads its init binary when a function is created), so the stack is deployed with
LOCALSTACK_LAMBDA=0 (template parameter LambdaFunctions=false): the test checks what that variant creates and
that nothing built on a function is there (docs/localstack.md lists both).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.support import REPO as ROOT

pytestmark = pytest.mark.localstack

STACK = "loopml-ci"
STORE_PREFIX = "loopml"
ALERT_EMAIL = "ops@example.com"
# what LambdaFunctions=false creates with an alert e-mail; no StoreBucketPolicy (TLS-only: AWS only)
EXPECTED = {"StoreBucket": "AWS::S3::Bucket", "AlertTopic": "AWS::SNS::Topic",
            "AlertEmailSubscription": "AWS::SNS::Subscription", "JobPolicy": "AWS::IAM::ManagedPolicy"}
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}


@dataclass
class Deployed:
    """A LocalStack endpoint with the stack on it, and how long `localstack/deploy.sh` took."""

    endpoint: str
    port: int
    deploy_seconds: float
    outputs: dict[str, str]

    def client(self, service: str) -> Any:
        """A boto3 client for LocalStack."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a project script from the repository root; fail the test with its output when it fails."""
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, dict[str, str]]]:
    """LocalStack started on a free port of 127.0.0.1 by infra/localstack.sh, stopped after the module."""
    port = free_port()
    env = {"LOCALSTACK_STATE": str(tmp_path_factory.mktemp("localstack"))}
    run(["bash", "infra/localstack.sh", "start", str(port)], env, timeout=900)
    try:
        yield f"http://127.0.0.1:{port}", port, env
    finally:
        subprocess.run(["bash", "infra/localstack.sh", "stop"], cwd=ROOT, env={**os.environ, **env}, timeout=60)


@pytest.fixture(scope="module")
def deployed(localstack: tuple[str, int, dict[str, str]]) -> Deployed:
    """The stack deployed by the documented script, with no registry to publish and no Lambda."""
    endpoint, port, env = localstack
    env = {**env, **AWS_ENV, "AWS_ENDPOINT_URL": endpoint, "STACK_NAME": STACK, "STORE_PREFIX": STORE_PREFIX,
           "LOOPML_PUBLISH": "0", "LOCALSTACK_LAMBDA": "0", "PARAMETERS": f"AlertEmail={ALERT_EMAIL}"}
    started = time.monotonic()
    run(["bash", "localstack/deploy.sh"], env, timeout=600)
    seconds = time.monotonic() - started
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    print(f"localstack/deploy.sh took {seconds:.1f} s; stack {stack['StackStatus']}")
    return Deployed(endpoint, port, seconds, {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})


def stack_resources(deployed: Deployed) -> dict[str, dict[str, str]]:
    """The stack's resources by logical id."""
    cfn = deployed.client("cloudformation")
    return {r["LogicalResourceId"]: r for r in cfn.describe_stack_resources(StackName=STACK)["StackResources"]}


def test_listens_on_loopback_only(deployed: Deployed) -> None:
    """The gateway answers on 127.0.0.1 and refuses the machine's other addresses."""
    with socket.create_connection(("127.0.0.1", deployed.port), timeout=5):
        pass
    others = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), deployed.port, socket.AF_INET)}
    others |= {ip for ip in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
               if ":" not in ip}
    for address in others - {"127.0.0.1"}:
        with pytest.raises(OSError), socket.create_connection((address, deployed.port), timeout=5):
            pass


def test_stack_creates_exactly_the_variant(deployed: Deployed) -> None:
    """CREATE_COMPLETE with the resources of LambdaFunctions=false, each complete, and its outputs."""
    status = deployed.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE"
    resources = stack_resources(deployed)
    assert {k: r["ResourceType"] for k, r in resources.items()} == EXPECTED
    assert {r["ResourceStatus"] for r in resources.values()} == {"CREATE_COMPLETE"}
    bucket = resources["StoreBucket"]["PhysicalResourceId"]
    assert deployed.outputs["StoreUri"] == f"s3://{bucket}/{STORE_PREFIX}"
    assert deployed.outputs["StoreBucket"] == bucket
    assert not {"ApiUrl", "ApiId", "FunctionName", "CycleFunctionName"} & set(deployed.outputs)


def test_store_bucket_settings(deployed: Deployed) -> None:
    """Versioned (what LocalStack's CloudFormation provider for S3 applies), encrypted, private, owner-enforced.

    The provider applies versioning, CORS, object lock, tags, website and notifications only: encryption, the
    public access block and ownership below are S3's own defaults for a new bucket (equal to the template's), and
    the lifecycle rule is not applied at all in LocalStack (docs/localstack.md), so it is not checked here.
    """
    s3 = deployed.client("s3")
    bucket = deployed.outputs["StoreBucket"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_alert_topic_and_subscription(deployed: Deployed) -> None:
    """The topic, named after the stack, with the e-mail subscription."""
    sns = deployed.client("sns")
    topic = deployed.outputs["AlertTopicArn"]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"] == f"loopml alerts ({STACK})"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", ALERT_EMAIL)]


def test_job_policy(deployed: Deployed) -> None:
    """The jobs' managed policy: the store under its prefix, the data, the topic, the project's state machines."""
    iam = deployed.client("iam")
    arn = deployed.outputs["JobPolicyArn"]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {"ListStore", "ReadWriteStore", "ListData", "ReadData", "PublishAlerts",
                               "FindStateMachines", "StartRetraining"}
    bucket = deployed.outputs["StoreBucket"]
    assert statements["ReadWriteStore"]["Resource"] == f"arn:aws:s3:::{bucket}/{STORE_PREFIX}/*"
    assert sorted(statements["ReadWriteStore"]["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert statements["ReadData"]["Resource"] == f"arn:aws:s3:::{bucket}/data/*"
    assert statements["PublishAlerts"]["Resource"] == deployed.outputs["AlertTopicArn"]
    assert statements["StartRetraining"]["Resource"].endswith(":stateMachine:loopml.*")


def test_nothing_built_on_a_function(deployed: Deployed) -> None:
    """No function, REST API, usage plan, rule, log group or alarm exists in LocalStack (none was asked for)."""
    assert deployed.client("lambda").list_functions()["Functions"] == []
    assert deployed.client("apigateway").get_rest_apis()["items"] == []
    assert deployed.client("apigateway").get_usage_plans()["items"] == []
    assert deployed.client("events").list_rules()["Rules"] == []
    assert deployed.client("logs").describe_log_groups()["logGroups"] == []
    assert deployed.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_delete_leaves_the_store_bucket_only(deployed: Deployed) -> None:
    """Deleting the stack removes the topic and the policy and keeps the retained store bucket."""
    cfn = deployed.client("cloudformation")
    cfn.delete_stack(StackName=STACK)
    cfn.get_waiter("stack_delete_complete").wait(StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    bucket = deployed.outputs["StoreBucket"]
    assert bucket in {b["Name"] for b in deployed.client("s3").list_buckets()["Buckets"]}
    assert deployed.client("sns").list_topics()["Topics"] == []
    assert deployed.client("iam").list_policies(Scope="Local")["Policies"] == []
