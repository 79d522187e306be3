"""``loopml demo``: the whole loop on one machine, on NannyML's synthetic car loan data.

write project.yaml ▶ TrainFlow ▶ promote ▶ API over real HTTP (predict, feedback) ▶ one scheduled cycle,
CycleFlow: score (one partition per day) ▶ monitor (NannyML) ▶ retrain a challenger and gate it if the
decision says so ▶ summary.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from loopml import api
from loopml.cycle.cycle import replay_as_of
from loopml.cycle.records import MonitoringResults
from loopml.demo.data import car_loan_spec, write_car_loan
from loopml.registry.registry import Registry
from loopml.runtime.flowrun import run_flow
from loopml.runtime.net import Unreachable, free_port, request_json
from loopml.spec import ProblemSpec, load_spec
from loopml.storage import from_uri
from loopml.storage.layout import monitoring_results_key
from loopml.storage.records import read

LABELS_UNTIL = "2019-03-01"  # labels arrive late: only the first months of the new period have them
THRESHOLD = 0.96
Echo = Callable[[str], None]


def write_project(workdir: Path) -> Path:
    """The car loan data and a ``project.yaml`` for it in ``workdir``; returns the spec's path."""
    write_car_loan(workdir / "data", labels_until=LABELS_UNTIL)
    spec_path = workdir / "project.yaml"
    spec_path.write_text(yaml.safe_dump(car_loan_spec("data", threshold=THRESHOLD), sort_keys=False))
    return spec_path


class ApiServer:
    """``loopml serve`` in its own process on a loopback port, for the length of a ``with`` block: the
    real app under uvicorn, reached over HTTP like any client would (the core never imports handlers/)."""

    def __init__(self, store_uri: str, api_key: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LOOPML_STORE": store_uri,
                    "LOOPML_API_KEY_SHA256": hashlib.sha256(api_key.encode()).hexdigest()}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ApiServer:
        self.proc = subprocess.Popen([sys.executable, "-m", "loopml.cli.main", "serve", "--port", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited at start: {self.proc.stderr.read().decode()[-2000:]}")
            if self._healthy():
                return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the API did not start within 60 s") from None
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            status, _ = request_json("GET", f"{self.url}/health", timeout=2)
        except Unreachable:
            return False
        return status < 400

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------------- the steps
def prepare(workdir: str | Path) -> tuple[Path, str]:
    """The demo's folder and its (empty) store. Metaflow keeps its local datastore (.metaflow) beside
    the demo's files, even when a parent folder has one."""
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    store_uri = str(work / "store")
    if Path(store_uri).exists() and any(Path(store_uri).iterdir()):
        raise ValueError(f"{store_uri} already holds a store; the demo starts fresh: pass another --workdir or remove it")
    os.chdir(work)
    os.environ.setdefault("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(work))
    return work, store_uri


def scope(work: Path, echo: Echo) -> tuple[Path, ProblemSpec]:
    """1. Write the problem down: the data and ``project.yaml``."""
    spec_path = write_project(work)
    spec = load_spec(spec_path)
    echo(f"1. scoped: {spec_path} ({spec.task}, target {spec.target}, {len(spec.features)} features, success {spec.metric})")
    return spec_path, spec


def train(spec_path: Path, spec: ProblemSpec, store_uri: str, echo: Echo) -> None:
    """2. Train with TrainFlow: the candidates, the winner, its test metrics, fairness and ONNX parity."""
    trained = api.train(spec_path, store=store_uri)
    record = Registry(from_uri(store_uri)).get(trained.version).record
    echo(f"2. trained {trained.run}: {record.selection_reason}")
    for row in record.selection:
        echo(f"     {row.family:<14} valid {spec.metric.name} {row.valid_score:.4f}  p99 {row.latency_p99_ms:.3f} ms  "
             f"{row.size_mb:.2f} MB  {row.served_as}")
    echo(f"   registered v{record.version}; test " + ", ".join(f"{k} {x:.4f}" for k, x in record.metrics.items()))
    f = record.fairness
    if f is not None:  # the demo's spec judges fairness
        echo(f"   fairness: {f.metric} per {f.group} "
             + ", ".join(f"{g} {'-' if x.value is None else format(x.value, '.4f')}" for g, x in f.per_group.items())
             + (f"; gap {f.gap:.4f}" if f.gap is not None else "; no gap (fewer than two groups judged)")
             + f" (max {f.max_gap:g})")
    parity = record.onnx.parity_max_abs_diff if record.onnx else None
    echo(f"   ONNX parity max abs diff {parity:.2e}; promoted: {trained.promoted}")


def _first_row(spec: ProblemSpec, new_rows: pd.DataFrame) -> dict[str, Any]:
    """The first new row as a client would send it: plain JSON values."""
    row = {f.name: new_rows.iloc[0][f.name] for f in spec.features}
    row = {k: (x.item() if hasattr(x, "item") else x) for k, x in row.items()}
    row["repaid_loan_on_prev_car"] = str(row["repaid_loan_on_prev_car"])
    return row


def serve(spec: ProblemSpec, new_rows: pd.DataFrame, store_uri: str, echo: Echo) -> None:
    """3. Serve the champion over real HTTP: a prediction, the refusals (no key, a bad row), feedback."""
    key = secrets.token_urlsafe(16)
    row = _first_row(spec, new_rows)
    with ApiServer(store_uri, key) as api_server:
        url = api_server.url
        request_json("GET", f"{url}/health")
        t = time.perf_counter()
        status, pred = request_json("POST", f"{url}/predict", {"row": row}, key=key)
        ms = (time.perf_counter() - t) * 1000
        p = pred["predictions"][0]
        echo(f"3. served over HTTP at {url}: POST /predict -> {status} in {ms:.1f} ms: prediction {p['prediction']}, "
             f"probabilities {p['probabilities']}, model v{pred['model_version']} ({pred['served_as']})")
        status_nokey, _ = request_json("POST", f"{url}/predict", {"row": row})
        status_bad, bad = request_json("POST", f"{url}/predict", {"row": {**row, "car_value": "a lot"}}, key=key)
        labels = [{"id": p["id"], "label": 1.0}, {"id": "p-20190101-unknown", "label": 0.0}]
        status_fb, fb = request_json("POST", f"{url}/feedback", {"labels": labels}, key=key)
        echo(f"   no key -> {status_nokey}; bad row -> {status_bad} ({bad['detail'][0]['loc'][-1]}: {bad['detail'][0]['msg']}); "
             f"feedback -> {status_fb} {fb}")


def cycle(spec_path: Path, new_rows: pd.DataFrame, store_uri: str, echo: Echo) -> dict[str, Any]:
    """4. One scheduled cycle (CycleFlow) over all the new data, as of just after its last day."""
    new_ts = new_rows["timestamp"]
    first, last = date.fromisoformat(str(new_ts.min())[:10]), date.fromisoformat(str(new_ts.max())[:10])
    span = (last - first).days + 1
    run = run_flow("cycle_flow", show_output=False, spec=spec_path, store=store_uri, day=last, days=span,
                   window=span, as_of=replay_as_of(last).isoformat())
    summary = run.data.summary
    s = summary["scored"]
    echo(f"4. one scheduled cycle ({run.pathspec}: score ▶ monitor ▶ retrain ▶ gate): scored {s['rows']} rows of "
         f"new data into {len(s['partitions'])} daily partitions ({first}..{last}) with v{s['version']}")
    return summary


def monitored(spec: ProblemSpec, summary: dict[str, Any], store_uri: str, echo: Echo) -> dict[str, Any]:
    """5. What NannyML found in the cycle: estimated vs realized per chunk, drift, alerts, the decision."""
    m, d = summary["monitoring"], summary["decision"]
    results = read(from_uri(store_uri), monitoring_results_key(m["run_id"]), MonitoringResults)
    echo(f"5. monitored with NannyML: {spec.metric.name} per chunk, estimated (CBPE) vs realized "
         f"(labels until {LABELS_UNTIL})")
    for c in results.chunks:
        realized = "     -" if c.realized is None else f"{c.realized:.4f}"
        flag = "  ALERT" if c.estimated_alert else ""
        echo(f"     {c.chunk:>8} rows {c.n_rows:>5}  estimated {c.estimated:.4f}  realized {realized}  "
             f"drifting {c.n_drifting_features}{flag}")
    echo(f"   drifting features: {', '.join(results.drifting_features) or 'none'}")
    echo(f"   alerts: {m['alerts']}")
    kinds: dict[str, int] = {}
    for a in results.alerts:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    for kind, n in kinds.items():
        echo(f"     {n} x {kind}")
    echo(f"   decision: retrain={d['retrain']}" + (f" ({'; '.join(d['reasons'])})" if d["reasons"] else ""))
    echo(f"   report: {m['report']}")
    return results


def retrained(summary: dict[str, Any], echo: Echo) -> None:
    """6. The challenger the cycle trained, and whether it beat the champion (or why none was trained)."""
    r = summary["retraining"]
    if r is not None and r.get("version"):
        echo(f"6. retrained v{r['version']} on the newer window ({r['data']}); on {r['rows']} recent labelled rows "
             f"champion {r.get('champion_score', float('nan')):.4f} vs challenger {r.get('challenger_score', float('nan')):.4f}: "
             f"{'promoted' if r['promoted'] else 'kept as challenger'}")
    elif r is not None:
        echo(f"6. no retraining: {r['why']}")


def finish(store_uri: str, seconds: float, echo: Echo) -> int:
    """The champion now and every alias move the loop made; returns the champion's number."""
    registry = Registry(from_uri(store_uri))
    champ = registry.resolve()
    echo(f"done in {seconds:.0f} s. champion: v{champ.number}. ledger:")
    for e in registry.ledger():
        echo(f"     {e['when'][:19]} {e['alias']}: {e['from']} -> {e['to']} ({e['why']})")
    echo(f"   store: {store_uri}   try: loopml status --store {store_uri}")
    return champ.number


def run_demo(workdir: str | Path, echo: Echo) -> dict[str, Any]:
    """The whole loop in ``workdir``, told through ``echo``: scope ▶ train ▶ serve ▶ one cycle (score ▶
    monitor ▶ retrain ▶ gate) ▶ the ledger. Returns the store, the champion and the monitoring results."""
    t0 = time.monotonic()
    work, store_uri = prepare(workdir)
    spec_path, spec = scope(work, echo)
    train(spec_path, spec, store_uri, echo)
    new_rows = pd.read_parquet(spec.data.new)  # written above; the demo does not re-parse NannyML's files
    serve(spec, new_rows, store_uri, echo)
    summary = cycle(spec_path, new_rows, store_uri, echo)
    results = monitored(spec, summary, store_uri, echo)
    retrained(summary, echo)
    champion = finish(store_uri, time.monotonic() - t0, echo)
    return {"store": store_uri, "champion": champion, "monitoring": results}
