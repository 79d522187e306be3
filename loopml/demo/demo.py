"""``loopml demo``: the whole loop on one machine, on NannyML's synthetic car loan data.

write project.yaml ▶ TrainFlow ▶ promote ▶ API over real HTTP (predict, feedback) ▶ one scheduled cycle,
CycleFlow: score (one partition per day) ▶ monitor (NannyML) ▶ retrain a challenger and gate it if the
decision says so ▶ summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from loopml.cycle.cycle import replay_as_of
from loopml.demo.data import car_loan_spec, write_car_loan
from loopml.registry.registry import Registry
from loopml.runtime.flowrun import run_flow
from loopml.spec import load_spec
from loopml.storage import from_uri

LABELS_UNTIL = "2019-03-01"  # labels arrive late: only the first months of the new period have them
THRESHOLD = 0.96


def write_project(workdir: Path) -> Path:
    write_car_loan(workdir / "data", labels_until=LABELS_UNTIL)
    spec_path = workdir / "project.yaml"
    spec_path.write_text(yaml.safe_dump(car_loan_spec("data", threshold=THRESHOLD), sort_keys=False))
    return spec_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the API did not start within 60 s") from None
                time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if key:
        req.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def run_demo(workdir: str | Path, echo: Callable[[str], None]) -> dict[str, Any]:
    t0 = time.monotonic()
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    store_uri = str(work / "store")
    if Path(store_uri).exists() and any(Path(store_uri).iterdir()):
        raise ValueError(f"{store_uri} already holds a store; the demo starts fresh: pass another --workdir or remove it")
    os.chdir(work)  # Metaflow keeps its local datastore (.metaflow) beside the demo's files,
    os.environ.setdefault("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(work))  # even when a parent folder has one
    spec_path = write_project(work)
    spec = load_spec(spec_path)
    echo(f"1. scoped: {spec_path} ({spec.task}, target {spec.target}, {len(spec.features)} features, success {spec.metric})")

    train = run_flow("train_flow", show_output=False, spec=spec_path, store=store_uri)
    registry = Registry(from_uri(store_uri))
    record = registry.get(train.data.version).record
    echo(f"2. trained {train.pathspec}: {record.selection_reason}")
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
    echo(f"   ONNX parity max abs diff {parity:.2e}; promoted: {train.data.decision['promoted']}")

    key = secrets.token_urlsafe(16)
    new_rows = pd.read_parquet(spec.data.new)  # written above; the demo does not re-parse NannyML's files
    row = {f.name: new_rows.iloc[0][f.name] for f in spec.features}
    row = {k: (x.item() if hasattr(x, "item") else x) for k, x in row.items()}
    row["repaid_loan_on_prev_car"] = str(row["repaid_loan_on_prev_car"])
    with ApiServer(store_uri, key) as api:
        status, health = http("GET", f"{api.url}/health")
        t = time.perf_counter()
        status, pred = http("POST", f"{api.url}/predict", {"row": row}, key)
        ms = (time.perf_counter() - t) * 1000
        p = pred["predictions"][0]
        echo(f"3. served over HTTP at {api.url}: POST /predict -> {status} in {ms:.1f} ms: prediction {p['prediction']}, "
             f"probabilities {p['probabilities']}, model v{pred['model_version']} ({pred['served_as']})")
        status_nokey, _ = http("POST", f"{api.url}/predict", {"row": row})
        status_bad, bad = http("POST", f"{api.url}/predict", {"row": {**row, "car_value": "a lot"}}, key)
        status_fb, fb = http("POST", f"{api.url}/feedback", {"labels": [{"id": p["id"], "label": 1.0}, {"id": "p-20190101-unknown", "label": 0.0}]}, key)
        echo(f"   no key -> {status_nokey}; bad row -> {status_bad} ({bad['detail'][0]['loc'][-1]}: {bad['detail'][0]['msg']}); "
             f"feedback -> {status_fb} {fb}")

    new_ts = new_rows["timestamp"]
    first, last = date.fromisoformat(str(new_ts.min())[:10]), date.fromisoformat(str(new_ts.max())[:10])
    span = (last - first).days + 1
    cycle = run_flow("cycle_flow", show_output=False, spec=spec_path, store=store_uri, day=last, days=span,
                     window=span, as_of=replay_as_of(last).isoformat())
    summary = cycle.data.summary
    s, m, d, r = summary["scored"], summary["monitoring"], summary["decision"], summary["retraining"]
    echo(f"4. one scheduled cycle ({cycle.pathspec}: score ▶ monitor ▶ retrain ▶ gate): scored {s['rows']} rows of "
         f"new data into {len(s['partitions'])} daily partitions ({first}..{last}) with v{s['version']}")
    results = json.loads((Path(store_uri) / "monitoring" / "runs" / m["run_id"] / "results.json").read_text())
    echo(f"5. monitored with NannyML: {spec.metric.name} per chunk, estimated (CBPE) vs realized "
         f"(labels until {LABELS_UNTIL})")
    for c in results["chunks"]:
        realized = "     -" if c["realized"] is None else f"{c['realized']:.4f}"
        flag = "  ALERT" if c["estimated_alert"] else ""
        echo(f"     {c['chunk']:>8} rows {c['n_rows']:>5}  estimated {c['estimated']:.4f}  realized {realized}  "
             f"drifting {c['n_drifting_features']}{flag}")
    echo(f"   drifting features: {', '.join(results['drifting_features']) or 'none'}")
    echo(f"   alerts: {m['alerts']}")
    kinds: dict[str, int] = {}
    for a in results["alerts"]:
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    for kind, n in kinds.items():
        echo(f"     {n} x {kind}")
    echo(f"   decision: retrain={d['retrain']}" + (f" ({'; '.join(d['reasons'])})" if d["reasons"] else ""))
    echo(f"   report: {m['report']}")
    if r is not None and r.get("version"):
        echo(f"6. retrained v{r['version']} on the newer window ({r['data']}); on {r['rows']} recent labelled rows "
             f"champion {r.get('champion_score', float('nan')):.4f} vs challenger {r.get('challenger_score', float('nan')):.4f}: "
             f"{'promoted' if r['promoted'] else 'kept as challenger'}")
    elif r is not None:
        echo(f"6. no retraining: {r['why']}")
    champ = registry.resolve()
    echo(f"done in {time.monotonic() - t0:.0f} s. champion: v{champ.number}. ledger:")
    for e in registry.ledger():
        echo(f"     {e['when'][:19]} {e['alias']}: {e['from']} -> {e['to']} ({e['why']})")
    echo(f"   store: {store_uri}   try: loopml status --store {store_uri}")
    return {"store": store_uri, "champion": champ.number, "monitoring": results}
