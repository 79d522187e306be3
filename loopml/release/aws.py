"""The AWS side of a release: the stack's outputs (CloudFormation), the function's ``live`` alias (Lambda)
and CodeDeploy's deployments. Every function takes its boto3 client, so the logic runs against moto."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopml.release.records import ReleaseError

LIVE_ALIAS = "live"  # template.yaml: AutoPublishAlias of ApiFunction


FUNCTION_OUTPUT = "FunctionName"  # template.yaml output naming the API function


FUNCTION_LOGICAL_ID = "ApiFunction"  # fallback when the output is missing


STORE_OUTPUT = "StoreUri"


# the stack and the function -----------------------------------------------------------------------
@dataclass(frozen=True)
class StackInfo:
    name: str
    outputs: dict[str, str]
    function: str
    deployment_groups: list[tuple[str, str]]  # (CodeDeploy application, deployment group)

    @property
    def store_uri(self) -> str:
        if STORE_OUTPUT not in self.outputs:
            raise ReleaseError(f"stack {self.name} has no {STORE_OUTPUT} output: pass --store")
        return self.outputs[STORE_OUTPUT]


def read_stack(cfn: Any, name: str) -> StackInfo:
    """The stack's outputs, its API function (output FunctionName, else the ApiFunction resource) and
    the CodeDeploy deployment groups SAM made for its canary."""
    try:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except cfn.exceptions.ClientError as err:
        raise ReleaseError(f"stack {name}: {err.response['Error'].get('Message', err)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    def physical(kind: str, logical: str | None = None) -> list[str]:
        return [r["PhysicalResourceId"] for r in resources if r.get("ResourceType") == kind
                and r.get("PhysicalResourceId") and logical in (None, r.get("LogicalResourceId"))]

    function = outputs.get(FUNCTION_OUTPUT) or next(iter(physical("AWS::Lambda::Function", FUNCTION_LOGICAL_ID)), None)
    if not function:
        raise ReleaseError(f"stack {name} has neither a {FUNCTION_OUTPUT} output nor an {FUNCTION_LOGICAL_ID} function")
    apps = physical("AWS::CodeDeploy::Application")
    groups = physical("AWS::CodeDeploy::DeploymentGroup")
    return StackInfo(name, outputs, function, [(a, g) for a in apps[:1] for g in groups])


def _live_version(lam: Any, function: str) -> str | None:
    try:
        return str(lam.get_alias(FunctionName=function, Name=LIVE_ALIAS)["FunctionVersion"])
    except lam.exceptions.ResourceNotFoundException:
        return None


def _published(lam: Any, function: str) -> list[int]:
    numbers: list[int] = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        numbers += [int(v["Version"]) for v in page["Versions"] if v["Version"].isdigit()]
    return sorted(numbers)


@dataclass(frozen=True)
class FunctionMove:
    function: str
    alias: str
    from_version: str
    to_version: str
    stopped_deployments: list[str]
    cleared_weights: dict[str, float]


def rollback_function(lam: Any, function: str, *, to: int | None = None, codedeploy: Any = None,
                      deployment_groups: list[tuple[str, str]] | None = None) -> FunctionMove:
    """Point the function's ``live`` alias at the version before the one it serves (or at ``to``).

    During a canary the alias still points at the old version and sends a share of traffic to the new
    one (``AdditionalVersionWeights``); CodeDeploy would finish the shift later and undo a plain alias
    update, so its in-flight deployments are stopped (with CodeDeploy's own rollback) and the share is
    removed: the old version, which the alias still names, takes all traffic again."""
    try:
        alias = lam.get_alias(FunctionName=function, Name=LIVE_ALIAS)
    except lam.exceptions.ResourceNotFoundException:
        raise ReleaseError(f"function {function} has no {LIVE_ALIAS!r} alias: nothing to roll back") from None
    live = str(alias["FunctionVersion"])
    weights = dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    stopped = _stop_deployments(codedeploy, deployment_groups or []) if weights else []
    if to is not None:
        target = str(to)
    elif weights:
        target = live  # the canary's old version: still the alias's own
    else:
        earlier = [n for n in _published(lam, function) if live.isdigit() and n < int(live)]
        if not earlier:
            raise ReleaseError(f"function {function}: version {live} is the first published version; "
                               "nothing earlier to roll back to")
        target = str(earlier[-1])
    lam.update_alias(FunctionName=function, Name=LIVE_ALIAS, FunctionVersion=target,
                     RoutingConfig={"AdditionalVersionWeights": {}})
    return FunctionMove(function, LIVE_ALIAS, live, target, stopped, weights)


def _stop_deployments(codedeploy: Any, groups: list[tuple[str, str]]) -> list[str]:
    """Stop the canary deployments in flight, letting CodeDeploy roll back what it started."""
    if codedeploy is None:
        return []
    stopped = []
    for app, group in groups:
        ids = codedeploy.list_deployments(applicationName=app, deploymentGroupName=group,
                                          includeOnlyStatuses=["Created", "Queued", "InProgress", "Ready"])
        for dep in ids.get("deployments", []):
            codedeploy.stop_deployment(deploymentId=dep, autoRollbackEnabled=True)
            stopped.append(dep)
    return stopped


# the clients: the one place a release makes them, so everything above takes a client and runs against moto
def client(service: str) -> Any:
    """A boto3 client for ``service``; boto3 honours AWS_REGION and AWS_ENDPOINT_URL (moto, LocalStack)."""
    import boto3

    return boto3.client(service)


def release_target(store_uri: str | None, stack_name: str | None) -> tuple[str | None, StackInfo | None]:
    """An environment: its store (``store_uri``, else the stack's StoreUri output; None when neither is
    given) and its stack (None without ``stack_name``)."""
    stack = read_stack(client("cloudformation"), stack_name) if stack_name else None
    if store_uri:
        return store_uri, stack
    if stack is not None:
        return stack.store_uri, stack
    return None, None
