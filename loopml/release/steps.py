"""Releases: what each step of the CI/CD pipeline runs (``.github/workflows/``), one function per step.

The workflows stay thin: every step is one ``loopml release ...`` command or ``make smoke``, and the
logic is here, tested against moto and a real HTTP server.

* :func:`check`    a version's own vetting (artifacts against their SHA-256, its gates; the registry's
                   :meth:`~loopml.registry.registry.Registry.problems`) plus the latest monitoring evidence about
                   it: the reasons it must not ship, or none.
* :func:`promote`  make a version the champion of an environment's store, with the approver as the
                   ledger's ``who``; refused when :func:`check` finds a reason.
* :func:`smoke`    one real prediction through a deployed API, built from ``GET /model``'s schema.
* :func:`rollback` put back BOTH the champion that the current one replaced (the registry's history,
                   kept with the alias and its ledger) and the Lambda version that served before the
                   current one behind the function's ``live`` alias (found through the stack).

Every promote and rollback is also recorded (:mod:`loopml.release.records`).

Publishing a version to another store is the registry's own (``loopml publish``); the CLI's
``release publish`` only calls it.
"""

from __future__ import annotations

import json
from typing import Any

from loopml.registry.registry import Registry, RegistryError
from loopml.release.aws import LIVE_ALIAS, FunctionMove, StackInfo, _live_version, rollback_function
from loopml.release.checks import check
from loopml.release.records import ReleaseError, _record
from loopml.storage import Store
from loopml.storage.layout import now_utc


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
    """Make ``version`` available in ``target`` with the registry's own publish (:mod:`loopml.registry.publish`:
    every version missing there is copied whole, none is overwritten, aliases are left alone). Returns
    the versions copied; refuses when ``version`` is not in ``source``."""
    from loopml.registry.publish import publish as publish_versions

    Registry(source).get(version)  # RegistryError naming the store when it is not there
    report = publish_versions(source, target)
    return report.copied
