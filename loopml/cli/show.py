"""What the ``loopml`` command prints: each function turns one result into the lines a person reads.

Nothing here reads the store or runs anything; :mod:`loopml.cli.main` calls :mod:`loopml.api` and hands
the result over. The lines are the CLI's contract (scripts and tests read them): change them with care.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from loopml.api import DoctorResult, MonitorResult, PublishResult, ScoreResult, TrainResult


def metrics(values: dict[str, float]) -> str:
    """``name=0.1234`` for each metric, in order."""
    return " ".join(f"{k}={v:.4f}" for k, v in values.items())


def _num(v: Any) -> str:
    return "   -  " if v is None else f"{v:.4f}"


def _short(v: Any) -> str:
    text = f"{v:.4f}" if isinstance(v, float) else json.dumps(v) if isinstance(v, dict) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _forced(entry: dict[str, Any]) -> str:
    return "; FORCED over: " + "; ".join(entry["overrode"]) if entry.get("forced") else ""


# ------------------------------------------------------------------------------ train, score, monitor
def trained(result: TrainResult) -> Iterator[str]:
    """The end of ``loopml train``: warnings, held-out metrics, the version and why it was not promoted."""
    for warning in result.warnings:
        yield f"warning: {warning}"
    yield "test metrics (held-out split): " + metrics(result.metrics)
    yield f"registered version {result.version} from {result.run}; promoted: {result.promoted}"
    for reason in result.reasons:
        yield f"  not promoted: {reason}"


def scored(result: ScoreResult) -> Iterator[str]:
    """What ``loopml score`` committed."""
    yield (f"committed {result.rows} rows into {len(result.partitions)} dates (run {result.score_run}) "
           f"with version {result.version}")


def monitored(result: MonitorResult) -> Iterator[str]:
    """What ``loopml monitor`` found: rows, alerts by kind, the decision, the report."""
    seen = "EMPTY window: no predictions (alert no_data)" if result.rows == 0 else f"{result.rows} rows"
    yield (f"monitoring run {result.run_id}: {seen}; {len(result.alerts)} alert(s) ({result.new_alerts} new); "
           f"retrain: {result.decision['retrain']}")
    for kind in sorted({a["kind"] for a in result.alerts}):
        yield f"  {sum(a['kind'] == kind for a in result.alerts)} x {kind}"
    yield f"report: {result.report_url}"


# ----------------------------------------------------------------------------------------- the registry
def promoted(entry: dict[str, Any]) -> Iterator[str]:
    """The champion's move by ``loopml promote``."""
    yield f"champion: {entry['from']} -> {entry['to']} ({entry['why']}){_forced(entry)}"


def rolled_back(entry: dict[str, Any]) -> Iterator[str]:
    """The champion's move by ``loopml rollback``."""
    yield f"champion rolled back: {entry['from']} -> {entry['to']} ({entry['why']}){_forced(entry)}"


def rollout_started(entry: dict[str, Any], version: int) -> Iterator[str]:
    """The candidate set by ``loopml rollout start``, and what happens next."""
    yield (f"candidate: {entry['from']} -> {entry['to']}; the API sends it LOOPML_CANDIDATE_WEIGHT of /predict "
           f"and rolls it back if it does worse; finish with `loopml promote {version}`")


def rollout_stopped(entry: dict[str, Any]) -> Iterator[str]:
    """The candidate cleared by ``loopml rollout stop``."""
    yield f"candidate cleared (was {entry['from']})"


def rollout(current: int | None, last: dict[str, Any] | None) -> Iterator[str]:
    """``loopml rollout status``: the candidate and its last change."""
    yield (f"candidate: {current if current is not None else 'none'}"
           + (f"; last change: {last['action']} by {last['who']}: {last['why']}" if last else ""))


def findings(result: DoctorResult) -> Iterator[str]:
    """Each of ``loopml doctor``'s findings, with what was (or can be) done about it."""
    for finding in result.findings:
        yield finding.line()


def doctor_problems(result: DoctorResult) -> str:
    """The one line ``loopml doctor`` ends with when problems remain."""
    left = result.left
    return (f"{len(left)} problem(s) in {result.store}"
            + ("; `loopml doctor --repair` fixes those marked repairable" if any(f.repair for f in left) else ""))


def healthy(result: DoctorResult) -> Iterator[str]:
    """``loopml doctor``'s last line when nothing is left to do."""
    yield f"{result.store}: registry healthy" + (f" ({len(result.findings)} repaired)" if result.findings else "")


def published(result: PublishResult, dry_run: bool) -> Iterator[str]:
    """What ``loopml publish`` copied (or would copy)."""
    yield (f"published to {result.store}: {len(result.copied)} version(s) {'to copy' if dry_run else 'copied'} "
           f"{result.copied}, {len(result.already_there)} already there; aliases and ledger untouched")


def ledger(entries: list[dict[str, Any]]) -> Iterator[str]:
    """``loopml ledger``: one line per alias change."""
    for e in entries:
        action = f"{e['action']}, forced" if e.get("forced") else e["action"]
        yield f"{e['when']}  {e['who']:<10} {e['alias']:<10} {e['from']} -> {e['to']}  [{action}] {e['why']}"


# ------------------------------------------------------------------------------------------------ views
def status(s: dict[str, Any]) -> Iterator[str]:
    """``loopml status``: the champion, the last monitoring run, open alerts, the last decision."""
    yield f"store: {s['store']}  versions: {s['versions']}"
    c = s["champion"]
    yield "champion: none" if c is None else f"champion: v{c['version']} {c['family']} {metrics(c['metrics'])}"
    yield f"challenger: {s['challenger'] or 'none'}"
    if s["last_monitoring"]:
        yield from _last_monitoring(s["last_monitoring"])
    yield f"open alerts: {len(s['open_alerts'])}"
    for a in s["open_alerts"][:10]:
        yield f"  - {a['message']}"
    d = s["last_decision"]
    if d:
        yield f"last decision: retrain={d['retrain']} " + "; ".join(d.get("reasons", []))


def _last_monitoring(m: dict[str, Any]) -> Iterator[str]:
    seen = "EMPTY: no predictions" if m.get("rows") == 0 else f"{m.get('rows')} rows"
    yield f"last monitoring: {m['run_id']} on v{m['version']}, window {m['window']['start']}..{m['window']['end']}: {seen}"
    for ch in m["chunks"]:
        yield f"  {ch['chunk']:>12}  estimated {_num(ch['estimated'])}  realized {_num(ch['realized'])}"
    yield f"  drifting features: {', '.join(m['drifting_features']) or 'none'}"
    for ch in m.get("latency", []):
        yield f"  {ch['chunk']:>12}  API latency p50 {ch['latency_p50_ms']:.1f} ms  p99 {ch['latency_p99_ms']:.1f} ms"
    cost = m.get("cost") or {}
    for day in cost.get("days") or []:
        yield f"  {day['day']:>12}  cost ${day['total_usd']:.4f} ({day['api_rows']:,} API predictions)"
    if cost.get("usd_per_day") is not None:
        per_1000 = cost.get("api_usd_per_1000")
        yield (f"  cost per day ${cost['usd_per_day']:.4f}, projected monthly ${cost['projected_monthly_usd']:.2f}"
               + (f", ${per_1000:.5f} per 1,000 API predictions" if per_1000 is not None else ""))
    yield f"  report: {m['report']}"


def runs(rows: list[dict[str, Any]]) -> Iterator[str]:
    """``loopml runs``: one line per TrainFlow run, or why its results cannot be read."""
    for r in rows:
        state = {True: "ok", False: "FAILED", None: "?"}[r["successful"]]
        if "problem" in r:
            yield f"{r['run']}  {state}  (cannot read its results: {r['problem']})"
            continue
        shown = metrics(r["metrics"]) if r.get("metrics") else ""
        yield (f"{r['run']}  {state}  v{r.get('version')}  {r.get('family', '')} "
               f"{json.dumps(r.get('params', {}))}  data {str(r.get('fingerprint'))[:12]}  {shown}")


def comparison(rows: list[tuple[str, Any, Any]], a: int, b: int) -> Iterator[str]:
    """``loopml compare``: two versions side by side, a ``*`` where they differ."""
    width = max(len(k) for k, _, _ in rows)
    yield f"{'':<{width}}  {'v' + str(a):<40}  v{b}"
    for k, va, vb in rows:
        mark = " " if va == vb else "*"
        yield f"{k:<{width}}{mark} {_short(va):<40}  {_short(vb)}"


# ------------------------------------------------------------------------------------------- releases
def release_check(version: int, store_uri: str, verdict: Any) -> Iterator[str]:
    """``loopml release check``: the version's gates, metrics, champion, monitoring and any blocks."""
    m = verdict.evidence.get("monitoring")
    gates = "pass" if (verdict.evidence["gates"] or {}).get("passes") else "FAIL"
    yield (f"version {version} in {store_uri}: gates {gates}; "
           f"metrics {json.dumps(verdict.evidence.get('metrics'))}; champion now: {verdict.evidence.get('champion')}")
    yield ("monitoring: no run has seen this version yet" if m is None else
           f"monitoring: latest run {m['run_id']} ({len(m['alerts'])} open alert(s))")
    for reason in [] if verdict.passes else verdict.reasons:
        yield f"  blocked: {reason}"


def release_promoted(entry: dict[str, Any], env: str, store_uri: str) -> Iterator[str]:
    """``loopml release promote``: the champion's move in ``env``, and the function's live version."""
    fn = entry["function"]
    yield (f"{env}: champion {entry['model']['from']} -> {entry['model']['to']} in {store_uri}, approved by "
           f"{entry['who']}" + (f"; function {fn['name']} live version {fn['to']}" if fn else ""))


def release_rolled_back(entry: dict[str, Any]) -> Iterator[str]:
    """``loopml release rollback``: what moved back, the model and the function."""
    m, f = entry["model"], entry["function"]
    yield f"model: champion {m['from']} -> {m['to']}" if m else "model: not moved"
    yield f"function: {f['name']}:{f['alias']} version {f['from']} -> {f['to']}" if f else "function: not moved"


def release_published(copied: list[int], version: int, store_uri: str) -> Iterator[str]:
    """``loopml release publish``: the versions copied to the environment's store."""
    yield f"published to {store_uri}: " + (f"copied version(s) {', '.join(map(str, copied))}" if copied else
                                          f"version {version} was already there")


def smoked(result: Any) -> Iterator[str]:
    """``loopml release smoke``: the row sent, the answer, and every problem found."""
    yield f"smoke {result.url}: version {result.model_version}, row {json.dumps(result.row)}"
    if result.answer:
        yield f"  answer: {json.dumps(result.answer.get('predictions'))}"
    for p in [] if result.passes else result.problems:
        yield f"  FAILED: {p}"
