"""The ``loopml`` command. Each subcommand validates its arguments, calls one core function, prints."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

DEADLINE_EXIT = 124  # like timeout(1)
APP_FACTORY = "handlers.app:create_app"  # uvicorn imports it by name: the core never imports handlers/


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def store_uri(args: argparse.Namespace) -> str:
    if args.store:
        return args.store
    from loopml.settings import get_settings  # pydantic-settings only when no --store was given

    return get_settings().store


def _store(args: argparse.Namespace, existing: bool = False):
    """The store of ``--store`` (or the settings). ``existing``: for commands that only read, a store
    that does not exist is an error ("no such store"), not an empty registry."""
    from loopml.storage import from_uri

    store = from_uri(store_uri(args))
    if existing:
        store.require_existing()
    return store


def _dates(args: argparse.Namespace) -> tuple[date, date]:
    from loopml.dates import parse_date

    start = parse_date(args.start, "--start")
    end = parse_date(args.end, "--end") if args.end else start
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return start, end


def flow_output(args: argparse.Namespace):
    """Where a flow's own output goes: all of it with --debug, else Metaflow's progress lines only."""
    from loopml.runtime.flowrun import progress_only

    stream = sys.stdout  # bound now: run_flow stands in for sys.stdout while the flow runs

    def show(line: str) -> None:
        stream.write(line + "\n")

    return show if args.debug else progress_only(show)


def _as_of(text: str) -> str:
    """--as-of checked here, as --start is, instead of deep inside MonitorFlow."""
    if not text:
        return ""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not an ISO time, e.g. 2019-03-01 or 2019-03-01T00:00:00+00:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def cmd_train(args: argparse.Namespace) -> None:
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_train
    from loopml.spec import load_spec

    spec = load_spec(args.spec)  # fail here, with the field named, before a flow starts
    check_train(spec, store_uri(args), args.data or None)
    run = run_flow("train_flow", output=flow_output(args), spec=args.spec, store=store_uri(args), mode=args.mode,
                   until=args.until, data=args.data)
    d = run.data.decision
    for w in getattr(run.data, "warnings", []):
        echo(f"warning: {w['message']}")
    echo("test metrics (held-out split): " + _metrics(run.data.metrics))
    echo(f"registered version {run.data.version} from {run.pathspec}; promoted: {d['promoted']}")
    for reason in d["gates"]["reasons"]:
        echo(f"  not promoted: {reason}")


def cmd_promote(args: argparse.Namespace) -> None:
    from loopml.registry.registry import Registry

    entry = Registry(_store(args)).promote(args.version, why=args.why, force=args.force)
    echo(f"champion: {entry['from']} -> {entry['to']} ({entry['why']}){_forced(entry)}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from loopml.registry.registry import Registry

    entry = Registry(_store(args)).rollback(why=args.why, to=args.to, force=args.force)
    echo(f"champion rolled back: {entry['from']} -> {entry['to']} ({entry['why']}){_forced(entry)}")


def _forced(entry: dict[str, Any]) -> str:
    return "; FORCED over: " + "; ".join(entry["overrode"]) if entry.get("forced") else ""


def cmd_doctor(args: argparse.Namespace) -> None:
    from loopml.registry.doctor import DoctorFound, examine

    store = _store(args, existing=True)
    findings = examine(store, repair=args.repair, grace_seconds=args.grace_hours * 3600)
    for f in findings:
        echo(f.line())
    left = [f for f in findings if not f.repaired]
    if left:
        raise DoctorFound(f"{len(left)} problem(s) in {store.uri}"
                          + ("; `loopml doctor --repair` fixes those marked repairable" if any(f.repair for f in left)
                             else ""))
    echo(f"{store.uri}: registry healthy" + (f" ({len(findings)} repaired)" if findings else ""))


def cmd_publish(args: argparse.Namespace) -> None:
    from loopml.registry.publish import publish
    from loopml.storage import from_uri

    source, dest = _store(args, existing=True), from_uri(args.to)
    report = publish(source, dest, dry_run=args.dry_run, say=echo)
    echo(f"published to {dest.uri}: {len(report.copied)} version(s) {'to copy' if args.dry_run else 'copied'} "
         f"{report.copied}, {len(report.already_there)} already there; aliases and ledger untouched")


def cmd_rollout(args: argparse.Namespace) -> None:
    """Gradual promotion: the API sends a share of requests to the candidate alias (loopml.serving.rollout)."""
    from loopml.registry.registry import Registry
    from loopml.serving.rollout import CANDIDATE

    registry = Registry(_store(args))
    if args.action == "start":
        if args.version is None:
            raise ValueError("rollout start needs a version")
        entry = registry.set_alias(CANDIDATE, args.version, why=args.why or "gradual promotion", action="rollout")
        echo(f"candidate: {entry['from']} -> {entry['to']}; the API sends it LOOPML_CANDIDATE_WEIGHT of /predict "
             f"and rolls it back if it does worse; finish with `loopml promote {args.version}`")
    elif args.action == "stop":
        entry = registry.set_alias(CANDIDATE, None, why=args.why or "rollout stopped", action="rollback")
        echo(f"candidate cleared (was {entry['from']})")
    else:
        current = registry.alias(CANDIDATE)
        last = next((e for e in reversed(registry.ledger(CANDIDATE))), None)
        echo(f"candidate: {current if current is not None else 'none'}"
             + (f"; last change: {last['action']} by {last['who']}: {last['why']}" if last else ""))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    if args.store:
        os.environ["LOOPML_STORE"] = args.store  # the app reads its Settings from LOOPML_* like on Lambda
    # the app lives in handlers/ (the Lambda package); the core names it for uvicorn and never imports it
    uvicorn.run(APP_FACTORY, factory=True, host=args.host, port=args.port, log_level="info")


def cmd_score(args: argparse.Namespace) -> None:
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_score
    from loopml.spec import load_spec

    start, end = _dates(args)
    check_score(load_spec(args.spec), store_uri(args), args.data or None)
    run = run_flow("score_flow", output=flow_output(args), spec=args.spec, store=store_uri(args), start=start,
                   end=end, data=args.data, replace=args.replace or None)
    # reached only when the run committed: any failure before the commit exits 2 with nothing published
    echo(f"committed {sum(run.data.partitions.values())} rows into {len(run.data.partitions)} dates "
         f"(run {run.data.score_run}) with version {run.data.version}")


def cmd_monitor(args: argparse.Namespace) -> None:
    from loopml.runtime.flowrun import run_flow
    from loopml.runtime.preflight import check_monitor
    from loopml.spec import load_spec

    start, end = _dates(args)
    as_of = _as_of(args.as_of)
    check_monitor(load_spec(args.spec), store_uri(args))
    run = run_flow("monitor_flow", output=flow_output(args), spec=args.spec, store=store_uri(args), start=start,
                   end=end, as_of=as_of)
    seen = "EMPTY window: no predictions (alert no_data)" if run.data.rows == 0 else f"{run.data.rows} rows"
    echo(f"monitoring run {run.data.run_id}: {seen}; {len(run.data.alerts)} alert(s) ({run.data.new_alerts} new); "
         f"retrain: {run.data.decision['retrain']}")
    for kind in sorted({a["kind"] for a in run.data.alerts}):
        echo(f"  {sum(a['kind'] == kind for a in run.data.alerts)} x {kind}")
    echo(f"report: {run.data.report_url}")


def cmd_schedule(args: argparse.Namespace) -> None:
    from loopml.cycle.replay import replay
    from loopml.runtime.preflight import check_monitor
    from loopml.spec import load_spec

    start, end = _dates(args)
    check_monitor(load_spec(args.spec), store_uri(args))  # the spec's fields, and a champion to monitor
    for line in replay(args.spec, store_uri(args), start, end,
                       every_days=args.every, window_days=args.window, retrain=not args.no_retrain):
        echo(line)


def cmd_status(args: argparse.Namespace) -> None:
    from loopml.cycle.status import status

    s = status(_store(args, existing=True))
    if args.json:
        echo(json.dumps(s, indent=1, default=str))
        return
    echo(f"store: {s['store']}  versions: {s['versions']}")
    c = s["champion"]
    echo("champion: none" if c is None else f"champion: v{c['version']} {c['family']} {_metrics(c['metrics'])}")
    echo(f"challenger: {s['challenger'] or 'none'}")
    m = s["last_monitoring"]
    if m:
        seen = "EMPTY: no predictions" if m.get("rows") == 0 else f"{m.get('rows')} rows"
        echo(f"last monitoring: {m['run_id']} on v{m['version']}, window {m['window']['start']}..{m['window']['end']}: {seen}")
        for ch in m["chunks"]:
            echo(f"  {ch['chunk']:>12}  estimated {_num(ch['estimated'])}  realized {_num(ch['realized'])}")
        echo(f"  drifting features: {', '.join(m['drifting_features']) or 'none'}")
        for ch in m.get("latency", []):
            echo(f"  {ch['chunk']:>12}  API latency p50 {ch['latency_p50_ms']:.1f} ms  p99 {ch['latency_p99_ms']:.1f} ms")
        cost = m.get("cost") or {}
        for day in cost.get("days") or []:
            echo(f"  {day['day']:>12}  cost ${day['total_usd']:.4f} ({day['api_rows']:,} API predictions)")
        if cost.get("usd_per_day") is not None:
            per_1000 = cost.get("api_usd_per_1000")
            echo(f"  cost per day ${cost['usd_per_day']:.4f}, projected monthly ${cost['projected_monthly_usd']:.2f}"
                 + (f", ${per_1000:.5f} per 1,000 API predictions" if per_1000 is not None else ""))
        echo(f"  report: {m['report']}")
    echo(f"open alerts: {len(s['open_alerts'])}")
    for a in s["open_alerts"][:10]:
        echo(f"  - {a['message']}")
    d = s["last_decision"]
    if d:
        echo(f"last decision: retrain={d['retrain']} " + "; ".join(d.get("reasons", [])))


def _num(v: Any) -> str:
    return "   -  " if v is None else f"{v:.4f}"


def _metrics(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in m.items())


def cmd_runs(args: argparse.Namespace) -> None:
    from loopml.cycle.status import training_runs

    for r in training_runs(args.limit):
        state = {True: "ok", False: "FAILED", None: "?"}[r["successful"]]
        if "problem" in r:
            echo(f"{r['run']}  {state}  (cannot read its results: {r['problem']})")
            continue
        metrics = _metrics(r["metrics"]) if r.get("metrics") else ""
        echo(f"{r['run']}  {state}  v{r.get('version')}  {r.get('family', '')} "
             f"{json.dumps(r.get('params', {}))}  data {str(r.get('fingerprint'))[:12]}  {metrics}")


def cmd_compare(args: argparse.Namespace) -> None:
    from loopml.cycle.status import compare

    rows = compare(_store(args, existing=True), args.a, args.b)
    width = max(len(k) for k, _, _ in rows)
    echo(f"{'':<{width}}  {'v' + str(args.a):<40}  v{args.b}")
    for k, a, b in rows:
        mark = " " if a == b else "*"
        echo(f"{k:<{width}}{mark} {_short(a):<40}  {_short(b)}")


def _short(v: Any) -> str:
    text = f"{v:.4f}" if isinstance(v, float) else json.dumps(v) if isinstance(v, dict) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def cmd_ledger(args: argparse.Namespace) -> None:
    from loopml.registry.registry import Registry

    for e in Registry(_store(args, existing=True)).ledger():
        action = f"{e['action']}, forced" if e.get("forced") else e["action"]
        echo(f"{e['when']}  {e['who']:<10} {e['alias']:<10} {e['from']} -> {e['to']}  [{action}] {e['why']}")


def cmd_demo(args: argparse.Namespace) -> None:
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
    def run(args: argparse.Namespace) -> None:
        from loopml.release.records import ReleaseError

        try:
            fn(args)
        except ReleaseError as err:
            sys.stderr.write(f"loopml release {args.release_command}: {err}\n")
            raise SystemExit(1) from None
    return run


def _aws(service: str) -> Any:
    import boto3  # honours AWS_REGION and AWS_ENDPOINT_URL (moto, LocalStack)

    return boto3.client(service)


def _release_target(args: argparse.Namespace) -> tuple[Any, Any]:
    """The store (``--store``, else the stack's StoreUri output) and the stack (or None)."""
    from loopml.release.aws import read_stack
    from loopml.storage import from_uri

    stack = read_stack(_aws("cloudformation"), args.stack) if getattr(args, "stack", None) else None
    if args.store:
        return from_uri(args.store), stack
    if stack is not None:
        return from_uri(stack.store_uri), stack
    return from_uri(store_uri(args)), None


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
    from loopml.release.checks import check

    store, _ = _release_target(args)
    args.version = _version_arg(store, args.version)
    verdict = check(store, args.version, allow_alerts=args.allow_alerts)
    output = args.output or os.environ.get("GITHUB_OUTPUT")
    if output:  # the next jobs of the workflow read the version from here (GitLab: a dotenv report)
        with open(output, "a") as out:
            out.write(f"version={args.version}\n")
    m = verdict.evidence.get("monitoring")
    echo(f"version {args.version} in {store.uri}: gates {'pass' if (verdict.evidence['gates'] or {}).get('passes') else 'FAIL'}; "
         f"metrics {json.dumps(verdict.evidence.get('metrics'))}; champion now: {verdict.evidence.get('champion')}")
    echo("monitoring: no run has seen this version yet" if m is None else
         f"monitoring: latest run {m['run_id']} ({len(m['alerts'])} open alert(s))")
    if not verdict.passes:
        for reason in verdict.reasons:
            echo(f"  blocked: {reason}")
        from loopml.release.records import ReleaseError

        raise ReleaseError(f"version {args.version} may not be released ({len(verdict.reasons)} reason(s) above)")
    echo(f"version {args.version}: releasable")


@_release
def cmd_release_promote(args: argparse.Namespace) -> None:
    from loopml.release.steps import promote

    store, stack = _release_target(args)
    entry = promote(store, args.version, env=args.env, approved_by=args.approved_by, why=args.why,
                    allow_alerts=args.allow_alerts, function=(_aws("lambda"), stack.function) if stack else None)
    fn = entry["function"]
    echo(f"{args.env}: champion {entry['model']['from']} -> {entry['model']['to']} in {store.uri}, approved by "
         f"{entry['who']}" + (f"; function {fn['name']} live version {fn['to']}" if fn else ""))


@_release
def cmd_release_rollback(args: argparse.Namespace) -> None:
    from loopml.registry.registry import current_user
    from loopml.release.steps import rollback

    if args.stack is None and (args.store is None or args.function_only):
        raise ValueError("give --stack NAME (the model and the function) or --store URI with --model-only")
    store, stack = _release_target(args)
    function = stack if stack is not None and not args.model_only else None
    # a model-only rollback leaves the stack's function alone but still records the stack's environment
    env = args.env or (stack.name if stack is not None else "")
    entry = rollback(store, why=args.why, who=args.who or current_user(), env=env, model=not args.function_only,
                     lam=_aws("lambda") if function else None, stack=function,
                     codedeploy=_aws("codedeploy") if function else None,
                     to_function_version=args.to_function_version)
    m, f = entry["model"], entry["function"]
    echo(f"model: champion {m['from']} -> {m['to']}" if m else "model: not moved")
    echo(f"function: {f['name']}:{f['alias']} version {f['from']} -> {f['to']}" if f else "function: not moved")


@_release
def cmd_release_publish(args: argparse.Namespace) -> None:
    from loopml.release.steps import publish
    from loopml.storage import from_uri

    target, _ = _release_target(args)
    copied = publish(from_uri(args.source), target, args.version)
    echo(f"published to {target.uri}: " + (f"copied version(s) {', '.join(map(str, copied))}" if copied else
                                          f"version {args.version} was already there"))


@_release
def cmd_release_smoke(args: argparse.Namespace) -> None:
    from loopml.release.records import ReleaseError
    from loopml.release.smoke import smoke

    result = smoke(args.url, args.key or os.environ.get("LOOPML_API_KEY") or None,
                   expect_version=args.expect_version, timeout=args.timeout, wait=args.wait)
    echo(f"smoke {result.url}: version {result.model_version}, row {json.dumps(result.row)}")
    if result.answer:
        echo(f"  answer: {json.dumps(result.answer.get('predictions'))}")
    if not result.passes:
        for p in result.problems:
            echo(f"  FAILED: {p}")
        raise ReleaseError(f"{len(result.problems)} problem(s) with {result.url}")
    echo("smoke: OK")


def _release_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    rp = sub.add_parser("release", help="the CI/CD pipeline's steps: check, publish, promote, smoke, rollback",
                        description="The CI/CD pipeline's steps (see .github/workflows/ and README: Releases).")
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
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 2000 else text[:1997] + "..."


class Stopped(BaseException):
    """The command was stopped (a signal, its deadline). A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way up swallows it; run_flow stops the flow it started on the way."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _stop_on(signum: int, _frame: Any) -> None:
    raise Stopped(f"stopped by {signal.Signals(signum).name}", 128 + signum)


@contextmanager
def stop_conditions(deadline: float | None) -> Iterator[None]:
    """SIGTERM, SIGINT and the deadline raise :class:`Stopped` in the main thread, wherever it waits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _deadline(_signum: int, _frame: Any) -> None:
        raise Stopped(f"the deadline of {deadline:g} s passed", DEADLINE_EXIT)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGINT, _stop_on)
    if deadline:
        signal.signal(signal.SIGALRM, _deadline)
        signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
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
