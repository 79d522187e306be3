"""The ``loopml`` command. Each subcommand validates its arguments, calls one core function, prints."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from loopml.settings import get_settings


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _store(args: argparse.Namespace):
    from loopml.storage import from_uri

    return from_uri(args.store or get_settings().store)


def _dates(args: argparse.Namespace) -> tuple[date, date]:
    from loopml.scoring import parse_date

    start = parse_date(args.start, "--start")
    end = parse_date(args.end, "--end") if args.end else start
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return start, end


def cmd_train(args: argparse.Namespace) -> None:
    from loopml.flowrun import run_flow
    from loopml.spec import load_spec

    load_spec(args.spec)  # fail here, with the field named, before a flow starts
    run = run_flow("train_flow", spec=args.spec, store=args.store or get_settings().store, mode=args.mode,
                   until=args.until, data=args.data)
    d = run.data.decision
    echo(f"registered version {run.data.version} from {run.pathspec}; promoted: {d['promoted']}")
    for reason in d["gates"]["reasons"]:
        echo(f"  not promoted: {reason}")


def cmd_promote(args: argparse.Namespace) -> None:
    from loopml.registry import Registry

    entry = Registry(_store(args)).promote(args.version, why=args.why)
    echo(f"champion: {entry['from']} -> {entry['to']} ({entry['why']})")


def cmd_rollback(args: argparse.Namespace) -> None:
    from loopml.registry import Registry

    entry = Registry(_store(args)).rollback(why=args.why, to=args.to)
    echo(f"champion rolled back: {entry['from']} -> {entry['to']} ({entry['why']})")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from handlers.app import create_app
    from handlers.deps import build_deps
    from loopml.settings import Settings

    settings = Settings(store=args.store) if args.store else get_settings()
    uvicorn.run(create_app(build_deps(settings)), host=args.host, port=args.port, log_level="info")


def cmd_score(args: argparse.Namespace) -> None:
    from loopml.flowrun import run_flow

    start, end = _dates(args)
    run = run_flow("score_flow", spec=args.spec, store=args.store or get_settings().store, start=start, end=end,
                   data=args.data)
    echo(f"scored {sum(run.data.partitions.values())} rows into {len(run.data.partitions)} partitions "
         f"with version {run.data.version}")


def cmd_monitor(args: argparse.Namespace) -> None:
    from loopml.flowrun import run_flow

    start, end = _dates(args)
    run = run_flow("monitor_flow", spec=args.spec, store=args.store or get_settings().store, start=start, end=end,
                   as_of=args.as_of)
    seen = "EMPTY window: no predictions (alert no_data)" if run.data.rows == 0 else f"{run.data.rows} rows"
    echo(f"monitoring run {run.data.run_id}: {seen}; {len(run.data.alerts)} alert(s) ({run.data.new_alerts} new); "
         f"retrain: {run.data.decision['retrain']}")
    for kind in sorted({a["kind"] for a in run.data.alerts}):
        echo(f"  {sum(a['kind'] == kind for a in run.data.alerts)} x {kind}")
    echo(f"report: {run.data.report_url}")


def cmd_schedule(args: argparse.Namespace) -> None:
    from loopml.schedule import replay
    from loopml.spec import load_spec

    start, end = _dates(args)
    load_spec(args.spec)  # fail here, with the field named, before a flow starts
    for line in replay(args.spec, args.store or get_settings().store, start, end,
                       every_days=args.every, window_days=args.window, retrain=not args.no_retrain):
        echo(line)


def cmd_status(args: argparse.Namespace) -> None:
    from loopml.inspect import status

    s = status(_store(args))
    if args.json:
        echo(json.dumps(s, indent=1, default=str))
        return
    echo(f"store: {s['store']}  versions: {s['versions']}")
    c = s["champion"]
    echo("champion: none" if c is None else f"champion: v{c['version']} {c['family']} {_metrics(c['metrics'])}")
    echo(f"challenger: {s['challenger'] or 'none'}")
    m = s["last_monitoring"]
    if m:
        echo(f"last monitoring: {m['run_id']} on v{m['version']}, window {m['window']['start']}..{m['window']['end']}")
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
    from loopml.inspect import training_runs

    for r in training_runs(args.limit):
        metrics = _metrics(r["metrics"]) if r.get("metrics") else ""
        echo(f"{r['run']}  {'ok' if r['successful'] else 'FAILED'}  v{r.get('version')}  {r.get('family', '')} "
             f"{json.dumps(r.get('params', {}))}  data {str(r.get('fingerprint'))[:12]}  {metrics}")


def cmd_compare(args: argparse.Namespace) -> None:
    from loopml.inspect import compare

    rows = compare(_store(args), args.a, args.b)
    width = max(len(k) for k, _, _ in rows)
    echo(f"{'':<{width}}  {'v' + str(args.a):<40}  v{args.b}")
    for k, a, b in rows:
        mark = " " if a == b else "*"
        echo(f"{k:<{width}}{mark} {_short(a):<40}  {_short(b)}")


def _short(v: Any) -> str:
    text = f"{v:.4f}" if isinstance(v, float) else json.dumps(v) if isinstance(v, dict) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def cmd_ledger(args: argparse.Namespace) -> None:
    from loopml.registry import Registry

    for e in Registry(_store(args)).ledger():
        echo(f"{e['when']}  {e['who']:<10} {e['alias']:<10} {e['from']} -> {e['to']}  [{e['action']}] {e['why']}")


def cmd_demo(args: argparse.Namespace) -> None:
    from loopml.demo import run_demo

    run_demo(args.workdir, echo=echo)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loopml", description="The ML lifecycle as one loop.")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, fn: Any, help: str, spec: bool = False, store: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
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
    sp = cmd("rollback", cmd_rollback, "put the previous champion back")
    sp.add_argument("--to", type=int, default=None, help="a specific version (default: the previous champion)")
    sp.add_argument("--why", required=True, help="recorded in the ledger")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pydantic import ValidationError  # a bad LOOPML_* setting

    from loopml.data.validate import DataError
    from loopml.flowrun import FlowFailed
    from loopml.registry import RegistryError
    from loopml.spec import SpecError

    try:
        args.fn(args)
    except (SpecError, DataError, RegistryError, FlowFailed, ValidationError, ValueError, FileNotFoundError) as err:
        sys.stderr.write(f"loopml {args.command}: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
