"""Starting a deployed TrainFlow (Step Functions or Argo Workflows) as a challenger run on a newer window.

Used by MonitorFlow's ``--retrain-on`` when retraining is wanted on the training deployment rather
than inside the cycle (CycleFlow retrains in its own step, which needs none of this). The deployed
name is derived from the caller's ``@project`` and branch, never hard-coded, so staging, prod and
two projects each start their own TrainFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

from loopml.retraining.data import retraining_data
from loopml.spec import ProblemSpec
from loopml.storage import Store

__all__ = ["ENGINES", "deployed_name", "start_step_functions_retraining", "start_argo_retraining", "retrainer"]

ENGINES = ("step-functions", "argo-workflows")
TRAIN_FLOW = "TrainFlow"
ARGO_NAME_LIMIT = 45  # Metaflow shortens longer Argo names with a hash: pass those explicitly


def deployed_name(engine: str, project: str, branch: str, flow: str = TRAIN_FLOW) -> str:
    """The name Metaflow gives ``flow`` deployed under ``@project(name=project)`` on ``branch``."""
    name = f"{project}.{branch}.{flow}"
    if engine == "step-functions":
        from metaflow.metaflow_config import SFN_STATE_MACHINE_PREFIX

        prefix = SFN_STATE_MACHINE_PREFIX
        return name if not prefix or name.startswith(prefix) else f"{prefix}_{name}"
    if len(name) > ARGO_NAME_LIMIT:
        raise ValueError(f"the Argo workflow name for {name} is shortened by Metaflow; deploy with a shorter --branch")
    from metaflow.plugins.argo.argo_workflows_cli import sanitize_for_argo

    return sanitize_for_argo(name)


def _parameters(data_uri: str, until: date) -> dict[str, str]:
    # retraining-until tells TrainFlow which claim's outcome to record (loopml.retraining.claims)
    return {"mode": "challenger", "data": data_uri, "until": f"{until.isoformat()}T23:59:59",
            "retraining-until": until.isoformat()}


def start_step_functions_retraining(store: Store, spec: ProblemSpec, until: date, *, state_machine: str,
                                    sfn_client: Any = None) -> dict[str, Any]:
    """Write the newer window's data to the store and start the deployed TrainFlow's state machine on
    it, the way ``step-functions trigger`` does. TrainFlow registers the challenger and gates it."""
    data_uri = retraining_data(store, spec, until)
    if sfn_client is None:
        import boto3

        sfn_client = boto3.client("stepfunctions")
    machines = (m for page in sfn_client.get_paginator("list_state_machines").paginate() for m in page["stateMachines"])
    arn = next((m["stateMachineArn"] for m in machines if m["name"] == state_machine), None)
    if arn is None:
        return {"engine": "step-functions", "started": False, "data": data_uri,
                "why": f"no state machine named {state_machine}: deploy it with `flows/train_flow.py step-functions create`"}
    params = _parameters(data_uri, until)
    execution = sfn_client.start_execution(stateMachineArn=arn, input=json.dumps({"Parameters": json.dumps(params)}))
    return {"engine": "step-functions", "started": True, "execution": execution["executionArn"], "data": data_uri,
            "parameters": params}


def start_argo_retraining(store: Store, spec: ProblemSpec, until: date, *, workflow: str) -> dict[str, Any]:
    """The same on Argo Workflows, through Metaflow's own trigger (needs the cluster's kube config)."""
    from metaflow.plugins.argo.argo_workflows import ArgoWorkflows

    data_uri = retraining_data(store, spec, until)
    params = _parameters(data_uri, until)
    submitted = ArgoWorkflows.trigger(workflow, params)
    name = (submitted or {}).get("metadata", {}).get("name")
    return {"engine": "argo-workflows", "started": True, "workflow": workflow, "execution": name, "data": data_uri,
            "parameters": params}


def retrainer(engine: str, store: Store, spec: ProblemSpec, name: str) -> Callable[[date], dict[str, Any]]:
    """``until -> start record`` for :func:`loopml.cycle.monitoring_run.run_monitoring`'s ``on_retrain``."""
    if engine == "step-functions":
        return lambda until: start_step_functions_retraining(store, spec, until, state_machine=name)
    if engine == "argo-workflows":
        return lambda until: start_argo_retraining(store, spec, until, workflow=name)
    raise ValueError(f"--retrain-on must be one of {', '.join(ENGINES)} or empty, got {engine!r}")
