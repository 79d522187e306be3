"""Releases: what each step of the CI/CD pipeline runs (``.github/workflows/``), one function per step.

The workflows stay thin: every step is one ``loopml release ...`` command or ``make smoke``, and the
logic is here, tested against moto and a real HTTP server.

* :func:`check`    a version's own vetting (artifacts against their SHA-256, its gates; the registry's
                   :meth:`~loopml.registry.Registry.problems`) plus the latest monitoring evidence about
                   it: the reasons it must not ship, or none.
* :func:`promote`  make a version the champion of an environment's store, with the approver as the
                   ledger's ``who``; refused when :func:`check` finds a reason.
* :func:`smoke`    one real prediction through a deployed API, built from ``GET /model``'s schema.
* :func:`rollback` put back BOTH the champion that the current one replaced (the registry's history,
                   kept with the alias and its ledger) and the Lambda version that served before the
                   current one behind the function's ``live`` alias (found through the stack).

A release's record: every promote and rollback is also appended to ``releases/<NNNNNNNN>.json`` in the
store (create-if-absent, numbered, like the ledger): environment, who, model from → to, and the
function's live version from → to, so "what was live, and who said so" is one read.

Publishing a version to another store is the registry's own (``loopml publish``); the CLI's
``release publish`` only calls it.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from loopml.registry import CHAMPION, Registry, RegistryError
from loopml.storage import Store
from loopml.storage.layout import MONITORING, now_utc

__all__ = ["ReleaseError", "Verdict", "StackInfo", "FunctionMove", "SmokeResult", "check", "promote", "smoke",
           "read_stack", "rollback", "rollback_function", "releases", "RELEASES"]

RELEASES = "releases"
LIVE_ALIAS = "live"  # template.yaml: AutoPublishAlias of ApiFunction
FUNCTION_OUTPUT = "FunctionName"  # template.yaml output naming the API function
FUNCTION_LOGICAL_ID = "ApiFunction"  # fallback when the output is missing
STORE_OUTPUT = "StoreUri"


class ReleaseError(RuntimeError):
    """A release step that cannot go ahead; the message says why and what to do."""


# check -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    version: int
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return not self.reasons


def latest_monitoring(store: Store, version: int) -> dict[str, Any] | None:
    """The newest monitoring run that looked at ``version``'s predictions (``results.json`` of each run
    under ``monitoring/runs/``), or None when none has: a candidate that has never served."""
    found: list[dict[str, Any]] = []
    for key in store.list(f"{MONITORING}/runs/"):
        if not key.endswith("/results.json"):
            continue
        results = store.get_json(key)
        if isinstance(results, dict) and results.get("version") == version:
            # open_alerts: what is still open after this run (carried over, not yet resolved); older
            # results have only this run's alerts
            alerts = results.get("open_alerts", results.get("alerts")) or []
            found.append({"run_id": key.split("/")[2], "at": str(results.get("at") or ""),
                          "window": results.get("window"), "alerts": alerts})
    # run ids are <start>_<end>_v<version>: the latest window sorts last; `at` breaks ties
    return max(found, key=lambda r: (str((r["window"] or {}).get("end", "")), r["at"], r["run_id"]), default=None)


def check(store: Store, version: int, *, allow_alerts: bool = False) -> Verdict:
    """Why ``version`` must not be released from ``store`` (empty = it may)."""
    registry = Registry(store)
    v = registry.get(version)  # RegistryError names the store when it is not there
    reasons = list(registry.problems(v))
    monitoring = latest_monitoring(store, version)
    if monitoring and monitoring["alerts"] and not allow_alerts:
        kinds = sorted({str(a.get("kind", "alert")) for a in monitoring["alerts"]})
        reasons.append(f"its latest monitoring run {monitoring['run_id']} has {len(monitoring['alerts'])} open "
                       f"alert(s) ({', '.join(kinds)})")
    gates = v.meta.get("gates") or {}
    return Verdict(version, reasons, {"gates": gates, "metrics": v.meta.get("metrics"), "monitoring": monitoring,
                                      "champion": registry.alias(CHAMPION)})


# the release record ------------------------------------------------------------------------------
def _record(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    n = len(store.list(RELEASES + "/")) + 1
    while not store.put_new_json(f"{RELEASES}/{n:08d}.json", entry):
        n += 1  # another writer took this number: the next one
    return entry


def releases(store: Store) -> list[dict[str, Any]]:
    """Every promote and rollback recorded by this module, oldest first."""
    return [store.get_json(k) for k in store.list(RELEASES + "/")]


# promote ------------------------------------------------------------------------------------------
def promote(store: Store, version: int, *, env: str, approved_by: str, why: str = "",
            allow_alerts: bool = False, function: tuple[Any, str] | None = None) -> dict[str, Any]:
    """Make ``version`` the champion of ``store`` (the ``env`` environment's), approved by ``approved_by``.

    ``function`` = (lambda client, function name): the function's live version is recorded with the
    release, so a later rollback can be checked against what was live when the model changed."""
    if not approved_by.strip():
        raise ReleaseError("--approved-by is empty: a promotion records who approved it")
    verdict = check(store, version, allow_alerts=allow_alerts)
    if not verdict.passes:
        raise ReleaseError(f"version {version} may not be released to {env}: " + "; ".join(verdict.reasons))
    text = why or f"release to {env}"
    entry = Registry(store).promote(version, why=f"{text} (approved by {approved_by})", who=approved_by)
    live = _live_version(*function) if function else None
    return _record(store, {"when": now_utc().isoformat(), "action": "promote", "env": env, "who": approved_by,
                           "why": text, "model": {"from": entry["from"], "to": entry["to"]},
                           "function": {"name": function[1], "alias": LIVE_ALIAS, "from": live, "to": live}
                           if function else None})


# smoke --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeResult:
    url: str
    model_version: int | None
    row: dict[str, Any]
    answer: dict[str, Any] | None
    problems: list[str]

    @property
    def passes(self) -> bool:
        return not self.problems


def smoke_row(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid row for the model's schema: 1.0 for a numeric feature, a plain string for a categorical
    one (the feature pipeline maps an unseen level to its missing bucket, as it must in production)."""
    features = schema.get("features") if isinstance(schema, dict) else None
    if not features:
        raise ReleaseError("GET /model has no schema.features: cannot build a prediction")
    return {f["name"]: 1.0 if f.get("type") == "numeric" else "smoke-test" for f in features}


def _http(method: str, url: str, key: str | None, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"accept": "application/json"}
    if data is not None:
        headers["content-type"] = "application/json"
    if key:
        headers["x-api-key"] = key
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the operator's URL)
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise ReleaseError(f"{method} {url}: {getattr(err, 'reason', err)}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw[:200].decode(errors="replace")


def smoke(url: str, key: str | None = None, *, expect_version: int | None = None, timeout: float = 30.0,
          wait: float = 0.0, poll: float = 5.0) -> SmokeResult:
    """GET /health, GET /model, then POST /predict one row built from the model's schema; every answer
    is checked (status, the served version, one prediction of a known class with probabilities that
    add up to 1). Problems are collected, not raised: the caller decides (exit 1, roll back).

    ``wait``: a warm API re-reads the alias only after its TTL, so /model is asked again (every
    ``poll`` seconds, up to ``wait``) until it serves ``expect_version``."""
    base = url.rstrip("/")
    problems: list[str] = []
    status, health = _http("GET", f"{base}/health", key, timeout=timeout)
    if status != 200:
        problems.append(f"GET /health answered {status}: {health}")
    deadline = time.monotonic() + wait
    while True:
        status, model = _http("GET", f"{base}/model", key, timeout=timeout)
        served = model.get("version") if isinstance(model, dict) else None
        if expect_version is None or served == expect_version or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if status != 200 or not isinstance(model, dict):
        return SmokeResult(url, None, {}, None, [*problems, f"GET /model answered {status}: {model}"])
    version = model.get("version")
    if expect_version is not None and version != expect_version:
        problems.append(f"the API serves version {version}, expected {expect_version}")
    row = smoke_row(model.get("schema") or {})
    status, answer = _http("POST", f"{base}/predict", key, {"rows": [row]}, timeout=timeout)
    if status != 200 or not isinstance(answer, dict):
        return SmokeResult(url, version, row, None, [*problems, f"POST /predict answered {status}: {answer}"])
    problems += _check_answer(answer, model, version)
    return SmokeResult(url, version, row, answer, problems)


def _check_answer(answer: dict[str, Any], model: dict[str, Any], version: Any) -> list[str]:
    problems = []
    if answer.get("model_version") != version:
        problems.append(f"/predict used version {answer.get('model_version')}, /model says {version}")
    preds = answer.get("predictions")
    if not isinstance(preds, list) or len(preds) != 1:
        return [*problems, f"expected one prediction, got {preds!r}"]
    p = preds[0]
    schema = model.get("schema") or {}
    classes = schema.get("classes")
    if schema.get("task") == "regression":
        if not isinstance(p.get("prediction"), int | float) or not math.isfinite(p["prediction"]):
            problems.append(f"prediction {p.get('prediction')!r} is not a finite number")
    else:
        if classes and p.get("prediction") not in classes:
            problems.append(f"prediction {p.get('prediction')!r} is not one of the classes {classes}")
        probs = p.get("probabilities")
        values = list(probs.values()) if isinstance(probs, dict) else probs
        if not isinstance(values, list) or not values or abs(sum(values) - 1.0) > 1e-3:
            problems.append(f"probabilities {probs!r} do not add up to 1")
    if not p.get("id"):
        problems.append("the prediction has no id (feedback could not be joined to it)")
    return problems


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


# rollback -----------------------------------------------------------------------------------------
def rollback(store: Store, *, why: str, who: str, env: str = "", lam: Any = None, stack: StackInfo | None = None,
             codedeploy: Any = None, model: bool = True, to_function_version: int | None = None) -> dict[str, Any]:
    """Roll back the model alias (registry history) and, given a stack, the function's live alias.

    Both are attempted even if the first fails, so one broken half never leaves the other half
    standing; the release record says what moved, and a ReleaseError lists what did not."""
    errors: list[str] = []
    model_move: dict[str, Any] | None = None
    if model:
        try:
            e = Registry(store).rollback(why=why, who=who)
            model_move = {"from": e["from"], "to": e["to"]}
        except RegistryError as err:
            errors.append(f"model: {err}")
    fn_move: FunctionMove | None = None
    if stack is not None:
        try:
            fn_move = rollback_function(lam, stack.function, to=to_function_version, codedeploy=codedeploy,
                                        deployment_groups=stack.deployment_groups)
        except ReleaseError as err:
            errors.append(f"function: {err}")
    entry = {"when": now_utc().isoformat(), "action": "rollback", "env": env or (stack.name if stack else ""),
             "who": who, "why": why, "model": model_move,
             "function": None if fn_move is None else {
                 "name": fn_move.function, "alias": fn_move.alias, "from": fn_move.from_version,
                 "to": fn_move.to_version, "stopped_deployments": fn_move.stopped_deployments,
                 "cleared_weights": fn_move.cleared_weights},
             "errors": errors}
    if model_move or fn_move:
        _record(store, entry)
    if errors:
        raise ReleaseError("rollback incomplete: " + "; ".join(errors)
                           + (f" (what did move: {json.dumps({k: entry[k] for k in ('model', 'function')})})"
                              if model_move or fn_move else ""))
    return entry



# publish ------------------------------------------------------------------------------------------
def publish(source: Store, target: Store, version: int) -> list[int]:
    """Make ``version`` available in ``target`` with the registry's own publish (:mod:`loopml.publish`:
    every version missing there is copied whole, none is overwritten, aliases are left alone). Returns
    the versions copied; refuses when ``version`` is not in ``source``."""
    from loopml.publish import publish as publish_versions

    Registry(source).get(version)  # RegistryError naming the store when it is not there
    report = publish_versions(source, target)
    return report.copied
