"""The ``loopml`` command: argparse and :func:`main`. Each subcommand parses its arguments, calls one function
of :mod:`loopml.api` (the release steps: one of :mod:`loopml.release`) and prints the result with
:mod:`loopml.cli.show`; :func:`main` turns errors into one line and an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from loopml import api
from loopml.cli import show
from loopml.runtime.stopping import DEADLINE_EXIT, Stopped, stop_conditions

APP_FACTORY = "handlers.app:create_app"  # uvicorn imports it by name: the core never imports handlers/


def echo(text: str = "") -> None:
    """Print one line to stdout (sys.stdout looked up now: run_flow stands in for it while a flow runs)."""
    sys.stdout.write(text + "\n")


def echo_all(lines: Iterable[str]) -> None:
    """Print each line as it comes (a replay's lines arrive one cycle at a time)."""
    for line in lines:
        echo(line)


def _dates(args: argparse.Namespace) -> tuple[date, date]:
    from loopml.dates import date_range

    return date_range(args.start, args.end, "--start", "--end")


def flow_output(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a flow's own output goes: all of it with --debug, else Metaflow's progress lines only."""
    from loopml.runtime.flowrun import progress_only

    stream = sys.stdout  # bound now: run_flow stands in for sys.stdout while the flow runs

    def show_line(line: str) -> None:
        stream.write(line + "\n")

    return show_line if args.debug else progress_only(show_line)


def cmd_train(args: argparse.Namespace) -> None:
    """``loopml train``."""
    echo_all(show.trained(api.train(args.spec, store=args.store, mode=args.mode, until=args.until,
                                    data=args.data, output=flow_output(args))))


def cmd_promote(args: argparse.Namespace) -> None:
    """``loopml promote``."""
    echo_all(show.promoted(api.promote(args.version, why=args.why, store=args.store, force=args.force)))


def cmd_rollback(args: argparse.Namespace) -> None:
    """``loopml rollback``."""
    echo_all(show.rolled_back(api.rollback(why=args.why, to=args.to, store=args.store, force=args.force)))


def cmd_doctor(args: argparse.Namespace) -> None:
    """``loopml doctor``: the findings, then exit 2 while problems are left."""
    from loopml.registry.doctor import DoctorFound

    result = api.doctor(store=args.store, repair=args.repair, grace_hours=args.grace_hours)
    echo_all(show.findings(result))
    if result.left:
        raise DoctorFound(show.doctor_problems(result))
    echo_all(show.healthy(result))


def cmd_publish(args: argparse.Namespace) -> None:
    """``loopml publish``."""
    echo_all(show.published(api.publish(args.to, store=args.store, dry_run=args.dry_run, say=echo), args.dry_run))


def cmd_rollout(args: argparse.Namespace) -> None:
    """Gradual promotion: the API sends a share of requests to the candidate alias (loopml.serving.rollout)."""
    if args.action == "start":
        if args.version is None:
            raise ValueError("rollout start needs a version")
        echo_all(show.rollout_started(api.start_rollout(args.version, args.why, store=args.store), args.version))
    elif args.action == "stop":
        echo_all(show.rollout_stopped(api.stop_rollout(args.why, store=args.store)))
    else:
        echo_all(show.rollout(*api.rollout_status(store=args.store)))


def cmd_serve(args: argparse.Namespace) -> None:
    """``loopml serve``: the API under uvicorn, configured from ``LOOPML_*`` like on Lambda."""
    import uvicorn

    if args.store:
        os.environ["LOOPML_STORE"] = args.store  # the app reads its Settings from LOOPML_* like on Lambda
    # the app lives in handlers/ (the Lambda package); the core names it for uvicorn and never imports it
    uvicorn.run(APP_FACTORY, factory=True, host=args.host, port=args.port, log_level="info")


def cmd_score(args: argparse.Namespace) -> None:
    """``loopml score``: prints only when the run committed (any failure before the commit exits 2)."""
    start, end = _dates(args)
    echo_all(show.scored(api.score(args.spec, start, end, store=args.store, data=args.data, replace=args.replace,
                                   output=flow_output(args))))


def cmd_monitor(args: argparse.Namespace) -> None:
    """``loopml monitor``."""
    from loopml.dates import parse_as_of

    start, end = _dates(args)
    as_of = parse_as_of(args.as_of, "--as-of")  # checked here, as --start is, instead of deep inside MonitorFlow
    echo_all(show.monitored(api.monitor(args.spec, start, end, store=args.store, as_of=as_of,
                                        output=flow_output(args))))


def cmd_schedule(args: argparse.Namespace) -> None:
    """``loopml run-schedule``: each cycle's lines as soon as it is done."""
    start, end = _dates(args)
    echo_all(api.run_schedule(args.spec, start, end, store=args.store, every_days=args.every,
                              window_days=args.window, retrain=not args.no_retrain))


def cmd_status(args: argparse.Namespace) -> None:
    """``loopml status`` (``--json``: the same as JSON)."""
    s = api.status(store=args.store)
    echo_all([json.dumps(s, indent=1, default=str)] if args.json else show.status(s))


def cmd_runs(args: argparse.Namespace) -> None:
    """``loopml runs``."""
    echo_all(show.runs(api.runs(args.limit)))


def cmd_compare(args: argparse.Namespace) -> None:
    """``loopml compare``."""
    echo_all(show.comparison(api.compare(args.a, args.b, store=args.store), args.a, args.b))


def cmd_ledger(args: argparse.Namespace) -> None:
    """``loopml ledger``."""
    echo_all(show.ledger(api.ledger(store=args.store)))


def cmd_demo(args: argparse.Namespace) -> None:
    """``loopml demo``."""
    from loopml.demo.demo import run_demo

    run_demo(args.workdir, echo=echo)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a deadline must be more than 0 seconds")
    return value


# release: the pipeline's steps (.github/workflows/); a step that must not go ahead exits 1 ------------
def _release(fn: Any) -> Any:
    """A release step that refuses (:class:`ReleaseError`) exits 1, so the pipeline stops there."""
    def run(args: argparse.Namespace) -> None:
        from loopml.release.records import ReleaseError

        try:
            fn(args)
        except ReleaseError as err:
            sys.stderr.write(f"loopml release {args.release_command}: {err}\n")
            raise SystemExit(1) from None
    return run


def _release_target(args: argparse.Namespace) -> tuple[Any, Any]:
    """The store (``--store``, else the stack's StoreUri output, else the default store) and the stack."""
    from loopml.release.aws import release_target
    from loopml.storage import from_uri

    uri, stack = release_target(args.store, getattr(args, "stack", None))
    return from_uri(uri or api.store_uri()), stack


def _version_arg(store: Any, text: str) -> int:
    from loopml.registry.registry import Registry

    if text == "latest":
        versions = Registry(store).versions()
        if not versions:
            raise ValueError(f"--version latest: no version is registered in {store.uri}")
        return versions[-1]
    if not text.isdigit():
        raise ValueError(f"--version: expected a number or 'latest', got {text!r}")
    return int(text)


@_release
def cmd_release_check(args: argparse.Namespace) -> None:
    """``loopml release check``: exit 1 with the reasons a version must not ship."""
    from loopml.release.checks import check
    from loopml.release.records import ReleaseError

    store, _ = _release_target(args)
    args.version = _version_arg(store, args.version)
    verdict = check(store, args.version, allow_alerts=args.allow_alerts)
    output = args.output or os.environ.get("GITHUB_OUTPUT")
    if output:  # the next jobs of the workflow read the version from here (GitLab: a dotenv report)
        with open(output, "a") as out:
            out.write(f"version={args.version}\n")
    echo_all(show.release_check(args.version, store.uri, verdict))
    if not verdict.passes:
        raise ReleaseError(f"version {args.version} may not be released ({len(verdict.reasons)} reason(s) above)")
    echo(f"version {args.version}: releasable")


@_release
def cmd_release_promote(args: argparse.Namespace) -> None:
    """``loopml release promote``."""
    from loopml.release.aws import client
    from loopml.release.steps import promote

    store, stack = _release_target(args)
    entry = promote(store, args.version, env=args.env, approved_by=args.approved_by, why=args.why,
                    allow_alerts=args.allow_alerts, function=(client("lambda"), stack.function) if stack else None)
    echo_all(show.release_promoted(entry, args.env, store.uri))


@_release
def cmd_release_rollback(args: argparse.Namespace) -> None:
    """``loopml release rollback``: the model alias and the function's live alias, or one of them."""
    from loopml.registry.registry import current_user
    from loopml.release.aws import client
    from loopml.release.steps import rollback

    if args.stack is None and (args.store is None or args.function_only):
        raise ValueError("give --stack NAME (the model and the function) or --store URI with --model-only")
    store, stack = _release_target(args)
    function = stack if stack is not None and not args.model_only else None
    # a model-only rollback leaves the stack's function alone but still records the stack's environment
    env = args.env or (stack.name if stack is not None else "")
    entry = rollback(store, why=args.why, who=args.who or current_user(), env=env, model=not args.function_only,
                     lam=client("lambda") if function else None, stack=function,
                     codedeploy=client("codedeploy") if function else None,
                     to_function_version=args.to_function_version)
    echo_all(show.release_rolled_back(entry))


@_release
def cmd_release_publish(args: argparse.Namespace) -> None:
    """``loopml release publish``."""
    from loopml.release.steps import publish
    from loopml.storage import from_uri

    target, _ = _release_target(args)
    copied = publish(from_uri(args.source), target, args.version)
    echo_all(show.release_published(copied, args.version, target.uri))


@_release
def cmd_release_smoke(args: argparse.Namespace) -> None:
    """``loopml release smoke``: exit 1 on any problem with the deployed API."""
    from loopml.release.records import ReleaseError
    from loopml.release.smoke import smoke

    result = smoke(args.url, args.key or os.environ.get("LOOPML_API_KEY") or None,
                   expect_version=args.expect_version, timeout=args.timeout, wait=args.wait)
    echo_all(show.smoked(result))
    if not result.passes:
        raise ReleaseError(f"{len(result.problems)} problem(s) with {result.url}")
    echo("smoke: OK")


def _release_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    rp = sub.add_parser("release", help="the CI/CD pipeline's steps: check, publish, promote, smoke, rollback",
                        description="The CI/CD pipeline's steps (see .github/workflows/ and docs/releases.md).")
    rs = rp.add_subparsers(dest="release_command", required=True)

    def step(name: str, fn: Any, help: str, target: bool = True) -> argparse.ArgumentParser:
        sp = rs.add_parser(name, help=help, description=help, parents=[common])
        if target:
            sp.add_argument("--store", default=None, help="the environment's store (default: the stack's StoreUri output)")
            sp.add_argument("--stack", default=None, help="the environment's CloudFormation stack (template.yaml)")
        sp.set_defaults(fn=fn, command="release")
        return sp

    sp = step("check", cmd_release_check, "gates, SHA-256s and the latest monitoring evidence of a version; exit 1 with the reasons it must not ship")
    sp.add_argument("--version", required=True, help="N, or latest (the newest registered)")
    sp.add_argument("--output", default=None, help="append version=N to this file (default: $GITHUB_OUTPUT when set)")
    sp.add_argument("--allow-alerts", action="store_true", help="do not block on open monitoring alerts")
    sp = step("publish", cmd_release_publish, "copy a version to an environment's store (--to, or the stack's StoreUri)")
    sp.add_argument("--version", type=int, required=True)
    sp.add_argument("--from", dest="source", required=True, help="the store the version is registered in")
    sp.add_argument("--to", dest="store", default=None, help="the target store (default: the stack's StoreUri output)")
    sp = step("promote", cmd_release_promote, "make a version an environment's champion, recording who approved it")
    sp.add_argument("--env", required=True, help="staging, prod, ... (recorded)")
    sp.add_argument("--version", type=int, required=True)
    sp.add_argument("--approved-by", required=True, help="who approved (in CI: the approving run's github.actor)")
    sp.add_argument("--why", default="", help="recorded in the ledger")
    sp.add_argument("--allow-alerts", action="store_true")
    sp = step("rollback", cmd_release_rollback, "roll back the model alias AND the function's live alias to their previous versions")
    sp.add_argument("--why", required=True, help="recorded in the ledger and the release record")
    sp.add_argument("--who", default=None, help="recorded (default: $LOOPML_USER or the login)")
    sp.add_argument("--env", default="", help="recorded (default: the stack name)")
    only = sp.add_mutually_exclusive_group()
    only.add_argument("--model-only", action="store_true", help="leave the function alone (a model release failed)")
    only.add_argument("--function-only", action="store_true", help="leave the model alone (a code deploy failed)")
    sp.add_argument("--to-function-version", type=int, default=None, help="a specific function version")
    sp = step("smoke", cmd_release_smoke, "one real prediction through a deployed API; exit 1 on any problem", target=False)
    sp.add_argument("--url", required=True, help="the API's base URL (the stack's ApiUrl output)")
    sp.add_argument("--key", default=None, help="API key (default: $LOOPML_API_KEY)")
    sp.add_argument("--expect-version", type=int, default=None, help="fail unless the API serves this version")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    sp.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the API to serve --expect-version")


def parser() -> argparse.ArgumentParser:
    """The ``loopml`` command line: every command with its options (``--debug`` and ``--deadline`` on all)."""
    p = argparse.ArgumentParser(prog="loopml", description="The ML lifecycle as one loop.")
    sub = p.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks (a flow's too) on errors, and a flow's whole output")
    common.add_argument("--deadline", type=_seconds, default=os.environ.get("LOOPML_DEADLINE_SECONDS") or None,
                        metavar="SECONDS", help="stop the command (and any flow it started) after this long "
                        f"(exit code {DEADLINE_EXIT}); default $LOOPML_DEADLINE_SECONDS or none")

    def cmd(name: str, fn: Any, help: str, spec: bool = False, store: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, parents=[common])
        if spec:
            sp.add_argument("--spec", required=True, help="path to project.yaml")
        if store:
            sp.add_argument("--store", default=None, help="store root (folder or s3://bucket/prefix); default $LOOPML_STORE or .loopml")
        sp.set_defaults(fn=fn)
        return sp

    sp = cmd("train", cmd_train, "train, register and (if it passes the gates) promote a model", spec=True)
    sp.add_argument("--mode", choices=["promote", "challenger"], default="promote")
    sp.add_argument("--until", default="", help="train on data up to this time")
    sp.add_argument("--data", default="", help="override data.train")
    sp = cmd("promote", cmd_promote, "make a version the champion")
    sp.add_argument("version", type=int)
    sp.add_argument("--why", required=True, help="recorded in the ledger")
    sp.add_argument("--force", action="store_true",
                    help="promote even if the version fails its SHA-256 check or its gates (recorded as forced)")
    sp = cmd("rollback", cmd_rollback, "put back the champion the current one replaced")
    sp.add_argument("--to", type=int, default=None, help="a specific version (default: the previous champion)")
    sp.add_argument("--why", required=True, help="recorded in the ledger")
    sp.add_argument("--force", action="store_true",
                    help="roll back even to a version failing its SHA-256 check or its gates (recorded as forced)")
    sp = cmd("doctor", cmd_doctor, "check aliases, ledger, versions and artifacts; --repair fixes what is safe")
    sp.add_argument("--repair", action="store_true")
    sp.add_argument("--grace-hours", type=float, default=1.0,
                    help="leftovers younger than this may belong to a run in progress and are left alone")
    sp = cmd("publish", cmd_publish, "copy versions missing at another store there (never its aliases or ledger)")
    sp.add_argument("--to", required=True, help="destination store, e.g. s3://bucket/prefix")
    sp.add_argument("--dry-run", action="store_true")
    sp = cmd("rollout", cmd_rollout, "gradual promotion: start/stop the API's candidate, or show it")
    sp.add_argument("action", choices=["start", "stop", "status"])
    sp.add_argument("version", type=int, nargs="?", default=None)
    sp.add_argument("--why", default="", help="recorded in the ledger")
    sp = cmd("serve", cmd_serve, "serve the champion over HTTP with uvicorn")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    for name, fn, help in (("score", cmd_score, "score new data for a date range (ScoreFlow)"),
                           ("monitor", cmd_monitor, "monitor a date range with NannyML (MonitorFlow)")):
        sp = cmd(name, fn, help, spec=True)
        sp.add_argument("--start", required=True, help="YYYY-MM-DD")
        sp.add_argument("--end", default="", help="YYYY-MM-DD, inclusive (default: --start)")
        if name == "score":
            sp.add_argument("--data", default="", help="override data.new")
            sp.add_argument("--replace", action="store_true",
                            help="replace dates that already hold predictions (needed when the spec has no id)")
        else:
            sp.add_argument("--as-of", default="", help="the run's 'now' (ISO time) when replaying history")
    sp = cmd("run-schedule", cmd_schedule, "replay the scheduled cycle (CycleFlow: score, monitor, retrain a "
             "challenger and gate it) over a date range, one cycle every N days", spec=True)
    sp.add_argument("--start", required=True)
    sp.add_argument("--end", required=True)
    sp.add_argument("--every", type=int, default=7, help="days scored per cycle (1: day by day)")
    sp.add_argument("--window", type=int, default=28, help="days each monitoring run looks back")
    sp.add_argument("--no-retrain", action="store_true", help="record decisions but do not retrain")
    sp = cmd("status", cmd_status, "champion, last monitoring, open alerts, last decision")
    sp.add_argument("--json", action="store_true")
    sp = cmd("runs", cmd_runs, "TrainFlow runs (from Metaflow) with data fingerprint, parameters, metrics", store=False)
    sp.add_argument("--limit", type=int, default=20)
    sp = cmd("compare", cmd_compare, "two versions side by side")
    sp.add_argument("a", type=int)
    sp.add_argument("b", type=int)
    cmd("ledger", cmd_ledger, "every alias change")
    sp = cmd("demo", cmd_demo, "the whole loop on NannyML's car loan data, on this machine", store=False)
    sp.add_argument("--workdir", default="demo-output", help="where the demo writes its data, store and flows")
    _release_parser(sub, common)
    return p


def user_error(err: BaseException) -> bool:
    """Errors about the input or the environment (spec, data, arguments, settings, store, registry, a
    failed flow): one line and exit code 2. Anything else is a bug: exit code 1."""
    from loopml.registry.registry import RegistryError
    from loopml.runtime.flowrun import FlowFailed
    from loopml.storage import KeyNotFound, StoreError  # StoreError names the bucket/key or file

    if isinstance(err, FlowFailed):
        return err.user_error
    # ValueError covers SpecError, DataError and pydantic's ValidationError (a bad LOOPML_* setting)
    if isinstance(err, ValueError | OSError | RegistryError | KeyNotFound | StoreError):
        return True
    return type(err).__module__.startswith(("botocore", "boto3", "awswrangler"))  # the store on S3


def one_line(err: BaseException) -> str:
    """An error's message on one line, cut at 2000 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 2000 else text[:1997] + "..."


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0, 1 for a bug, 2 for bad input, 124 or 128+N when stopped)."""
    args = parser().parse_args(argv)
    try:
        with stop_conditions(args.deadline):
            args.fn(args)
    except Stopped as stop:
        sys.stderr.write(f"loopml {args.command}: {stop}; stopped (a flow it started was stopped too)\n")
        return stop.code
    except Exception as err:
        if args.debug:
            traceback.print_exception(err)
            detail = getattr(err, "traceback", None)  # a flow's own traceback, kept by run_flow
            if detail:
                sys.stderr.write(detail.rstrip() + "\n")
        if user_error(err):
            sys.stderr.write(f"loopml {args.command}: {one_line(err)}\n")
            return 2
        sys.stderr.write(f"loopml {args.command}: internal error: {type(err).__name__}: {one_line(err)}"
                         f"{'' if args.debug else ' (run again with --debug for the traceback)'}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
