"""Benchmark: the serving path, ONNX against scikit-learn, through the real Lambda handler.

One champion is trained on NannyML's car loan data with the real core functions
(``train_in_process``: load_training_data ▶ make_splits ▶ tune ▶ select ▶ evaluate ▶ register_version)
into a temporary LocalStore, and registered twice with the same metadata:

  version A  model.onnx + model.joblib   served as ONNX          (alias "bench-onnx")
  version B  model.joblib only           served by scikit-learn  (alias "bench-sklearn")

Both are served side by side in one process by ``Mangum(create_app(deps))`` (the same wiring as
``handlers/api.py``), invoked with API Gateway REST (v1 proxy) events carrying an ``x-api-key``
(the key check is on). Requests are interleaved A/B (the order rotates every round) so both paths
share the machine's noise. The prediction log is on, as in production: every request appends to
the in-memory buffer and a background thread writes JSON-lines files to the LocalStore; the run
reports how many records reached the store, so nothing is measured with logging silently off.

Measured:
  * single-row handler latency p50/p99 over --requests requests per path
  * 100-row batch handler latency p50 over --batch-requests requests per path
  * model-only cost: predictor.predict([row]) p50, to show the framework's share of a request
  * cold start in a fresh interpreter per path (median of --cold-runs): framework imports,
    ``import handlers.api`` (settings, store, alias, SHA-256 check, model load), first request;
    plus which heavy modules (pandas, sklearn, scipy, pyarrow) the ONNX process has loaded

Targets (printed PASS/FAIL, never asserted: this is a benchmark, not a test):
  ONNX single-row handler p50 < 1 ms; ONNX >= 5x faster than scikit-learn (p50); ONNX cold start < 1 s.

    python bench/bench_serving.py                      # random_forest, 2000 requests per path
    python bench/bench_serving.py --family linear --requests 500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "bench-key-0123456789"
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()
ALIASES = {"onnx": "bench-onnx", "sklearn": "bench-sklearn"}
HEAVY = ("pandas", "sklearn", "scipy", "pyarrow")


# --- the champion, built with the real core functions ---------------------------------------------
def build_store(root: Path, family: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Train one candidate on the car loan data, register it as A (ONNX + joblib) and B (joblib only).
    Returns sample rows (JSON-ready, from the test period) and the version numbers."""
    from loopml.demo_data import car_loan_spec, write_car_loan
    from loopml.modeling.inprocess import train_in_process
    from loopml.registry import Registry
    from loopml.spec import parse_spec
    from loopml.storage import LocalStore

    data_dir = root / "data"
    write_car_loan(data_dir)
    raw = car_loan_spec(str(data_dir))
    raw["candidates"] = [{"family": family, "n_iter": 1}]
    spec = parse_spec(raw, source="bench")
    registry = Registry(LocalStore(root / "store"))
    # load_training_data ▶ make_splits ▶ tune ▶ select ▶ evaluate ▶ register_version, as TrainFlow does
    a, _ = train_in_process(spec, registry, run_pathspec="bench", promote=False)
    version_a = registry.get(a)
    if not version_a.has_onnx:
        raise SystemExit(f"{family} did not convert to ONNX: {version_a.meta['onnx']['error']}")
    meta = {k: v for k, v in version_a.meta.items() if k not in ("version", "created_at", "artifacts", "reference")}
    b = registry.register({"model.joblib": registry.artifact(version_a, "model.joblib")}, meta).number
    registry.set_alias(ALIASES["onnx"], a, why="bench: ONNX path")
    registry.set_alias(ALIASES["sklearn"], b, why="bench: scikit-learn path")
    test = registry.reference(version_a)[spec.feature_names]  # the test period's features
    rows = test.astype(object).where(test.notna(), None).head(1000).to_dict("records")
    return json.loads(json.dumps(rows, default=str)), {"onnx": a, "sklearn": b}


# --- API Gateway REST (v1 proxy) events ------------------------------------------------------------
class LambdaContext:
    function_name = "loopml-api"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:loopml-api"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/loopml-api"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def rest_event(method: str, path: str, body: str | None, api_key: str | None = API_KEY) -> dict[str, Any]:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "bench",
               "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443", "X-Forwarded-For": "203.0.113.7"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["x-api-key"] = api_key
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/Prod{path}", "stage": "Prod",
            "accountId": "123456789012", "apiId": "abc123", "requestId": "bench-request", "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "bench", "apiKey": api_key},
            "requestTimeEpoch": 1767225600000,
        },
        "body": body, "isBase64Encoded": False,
    }


def predict_event(rows: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {"row": rows[0]} if len(rows) == 1 else {"rows": rows}
    return rest_event("POST", "/predict", json.dumps(payload))


# --- cold start: one fresh interpreter per run -----------------------------------------------------
def cold_child(row_json: str) -> None:
    """Runs in a fresh interpreter with LOOPML_STORE/LOOPML_ALIAS/LOOPML_API_KEY_SHA256 set."""
    t0 = time.perf_counter()
    import mangum  # noqa: F401  the web layer and loopml's serving modules

    import handlers.app  # noqa: F401
    import handlers.deps  # noqa: F401
    t1 = time.perf_counter()
    import handlers.api  # settings, store, alias, SHA-256 check, model load, create_app, Mangum
    t2 = time.perf_counter()
    response = handlers.api.handler(predict_event([json.loads(row_json)]), LambdaContext())
    t3 = time.perf_counter()
    body = json.loads(response["body"])
    print(json.dumps({
        "import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2, "total_s": t3 - t0,
        "status": response["statusCode"], "served_as": body.get("served_as"),
        "heavy": [m for m in HEAVY if m in sys.modules],
    }))


def cold_start(store: Path, path: str, row: dict[str, Any], runs: int) -> dict[str, Any]:
    env = {**os.environ, "LOOPML_STORE": str(store), "LOOPML_ALIAS": ALIASES[path],
           "LOOPML_API_KEY_SHA256": API_KEY_SHA256, "PYTHONPATH": str(ROOT)}
    results = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--cold-child", json.dumps(row)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cold start child ({path}) failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["process_s"] = wall
        results.append(r)
    out = {k: statistics.median(r[k] for r in results) for k in ("import_s", "load_s", "first_s", "total_s", "process_s")}
    out["status"] = sorted({r["status"] for r in results})
    out["served_as"] = sorted({r["served_as"] for r in results})
    out["heavy"] = sorted({m for r in results for m in r["heavy"]})
    return out


# --- warm latency, in this process -----------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def rounds(calls: dict[str, Callable[[int], Any]], n: int) -> dict[str, list[float]]:
    """Latency in ms of each call, n rounds; every round runs each call once, and the order rotates
    round by round, so all contenders share the machine's noise."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            calls[name](i)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def invoke(handler: Any, events: list[dict[str, Any]], label: str) -> Callable[[int], None]:
    ctx = LambdaContext()

    def call(i: int) -> None:
        r = handler(events[i % len(events)], ctx)
        if r["statusCode"] != 200:
            raise SystemExit(f"{label}: HTTP {r['statusCode']}: {r['body'][:300]}")

    return call


def predict_only(predictor: Any, rows: list[dict[str, Any]]) -> Callable[[int], None]:
    return lambda i: predictor.predict([rows[i % len(rows)]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="random_forest", choices=["random_forest", "linear"])
    ap.add_argument("--requests", type=int, default=2000, help="single-row requests per path")
    ap.add_argument("--batch-requests", type=int, default=200, help="100-row requests per path")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--keep", help="build the store in this folder and keep it (default: a temp folder)")
    ap.add_argument("--cold-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_child is not None:
        cold_child(args.cold_child)
        return

    with tempfile.TemporaryDirectory(prefix="loopml-bench-serving-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rows, versions = build_store(root, args.family)
        print(f"built {args.family} champion in {time.perf_counter() - t0:.1f} s: "
              f"version {versions['onnx']} (onnx + joblib), version {versions['sklearn']} (joblib only)")
        run(root / "store", rows, versions, args)


def run(store_root: Path, rows: list[dict[str, Any]], versions: dict[str, int], args: argparse.Namespace) -> None:
    from mangum import Mangum

    from handlers.app import create_app
    from handlers.deps import build_deps
    from loopml.settings import Settings
    from loopml.storage import LocalStore
    from loopml.storage.layout import PREDICTION_LOG

    store = LocalStore(store_root)
    deps, handlers_ = {}, {}
    for p in ("onnx", "sklearn"):
        settings = Settings(store=str(store_root), alias=ALIASES[p], api_key_sha256=API_KEY_SHA256)
        deps[p] = build_deps(settings, store)
        model = deps[p].server.current()
        assert model is not None and model.predictor.kind == p, (p, model)
        handlers_[p] = Mangum(create_app(deps[p]), lifespan="off")

    # sanity: the key check is on, and both paths agree on the answer
    denied = handlers_["onnx"](rest_event("POST", "/predict", json.dumps({"row": rows[0]}), api_key="wrong"), LambdaContext())
    assert denied["statusCode"] == 403, denied
    answers = {p: json.loads(h(predict_event(rows[:20]), LambdaContext())["body"]) for p, h in handlers_.items()}
    agree = sum(a["prediction"] == b["prediction"] for a, b in
                zip(answers["onnx"]["predictions"], answers["sklearn"]["predictions"], strict=True))

    single = {p: [predict_event([r]) for r in rows] for p in handlers_}
    batches = {p: [predict_event(rows[i : i + 100]) for i in range(0, len(rows) - 99, 100)] for p in handlers_}
    predictors = {p: deps[p].server.current().predictor for p in handlers_}
    # single-row: handler A, handler B, and each model on its own, rotating within every round
    calls = {**{p: invoke(h, single[p], p) for p, h in handlers_.items()},
             **{f"{p} model": predict_only(predictors[p], rows) for p in handlers_}}
    rounds(calls, 200)  # warm-up
    one = rounds(calls, args.requests)
    batch_calls = {p: invoke(h, batches[p], p) for p, h in handlers_.items()}
    rounds(batch_calls, 10)
    many = rounds(batch_calls, args.batch_requests)
    # the ONNX path alone (as a Lambda serves it): no scikit-learn garbage or cache churn in between
    alone = rounds({"onnx": invoke(handlers_["onnx"], single["onnx"], "onnx")}, args.requests)["onnx"]

    # the prediction log: what the background thread wrote while we measured, then the rest
    flushed_during = len(store.list(PREDICTION_LOG + "/"))
    t0 = time.perf_counter()
    final = sum(d.log.flush() for d in deps.values())
    final_ms = (time.perf_counter() - t0) * 1000
    files = store.list(PREDICTION_LOG + "/")
    logged = sum(len(store.get(k).splitlines()) for k in files)
    expected = 2 * (20 + 200 + 10 * 100 + args.requests + 100 * args.batch_requests) + args.requests

    print(f"\ncold starts (fresh interpreter each, median of {args.cold_runs}) ...", flush=True)
    cold = {p: cold_start(store_root, p, rows[0], args.cold_runs) for p in handlers_}

    # --- report --------------------------------------------------------------------------------------
    fig = {p: {"p50": pct(one[p], 0.5), "p99": pct(one[p], 0.99), "batch": pct(many[p], 0.5),
               "model": pct(one[f"{p} model"], 0.5)} for p in handlers_}
    o, s = fig["onnx"], fig["sklearn"]
    print(f"\nserving bench: {args.family}, versions {versions['onnx']} (onnx) / {versions['sklearn']} (sklearn), "
          f"Mangum(create_app) with REST v1 events, API key on, prediction log on; python {sys.version.split()[0]}")
    print(f"{'':36}{'onnx':>12}{'sklearn':>12}{'sklearn/onnx':>14}")

    def line(label: str, a: float, b: float, unit: str = "ms") -> None:
        print(f"{label:36}{a:>10.3f}{unit:>2}{b:>10.3f}{unit:>2}{b / a:>13.1f}x")

    line(f"single-row p50 ({args.requests} req)", o["p50"], s["p50"])
    line("single-row p99", o["p99"], s["p99"])
    line(f"100-row batch p50 ({args.batch_requests} req)", o["batch"], s["batch"])
    line("model only predict([row]) p50", o["model"], s["model"])
    print(f"  onnx alone (no sklearn requests in between): single-row p50 {pct(alone, 0.5):.3f} ms, "
          f"p99 {pct(alone, 0.99):.3f} ms")
    for p in ("onnx", "sklearn"):
        f = fig[p]
        print(f"  {p:8} framework share of single-row p50: {f['p50'] - f['model']:.3f} ms "
              f"({(f['p50'] - f['model']) / f['p50']:.0%}); model {f['model']:.3f} ms ({f['model'] / f['p50']:.0%})")
    co, cs = cold["onnx"], cold["sklearn"]
    line("cold: framework imports", co["import_s"], cs["import_s"], "s")
    line("cold: import handlers.api (load+verify)", co["load_s"], cs["load_s"], "s")
    line("cold: first request", co["first_s"], cs["first_s"], "s")
    line("cold: total in-process", co["total_s"], cs["total_s"], "s")
    line("cold: whole process (incl. interpreter)", co["process_s"], cs["process_s"], "s")
    print(f"cold start statuses: onnx {co['status']} served_as {co['served_as']}; "
          f"sklearn {cs['status']} served_as {cs['served_as']}")
    print(f"heavy modules after the ONNX cold start: {co['heavy'] or 'none'} "
          f"(sklearn path: {cs['heavy'] or 'none'})")
    print(f"onnx and sklearn agree on {agree}/20 predictions")
    print(f"prediction log: {logged} records in {len(files)} files (expected {expected}); "
          f"{flushed_during} files written by the background thread during the run, "
          f"final flush of {final} records took {final_ms:.1f} ms")

    targets = [
        ("onnx single-row handler p50 < 1 ms", o["p50"] < 1.0, f"{o['p50']:.3f} ms"),
        ("onnx >= 5x faster than sklearn (p50)", s["p50"] / o["p50"] >= 5, f"{s['p50'] / o['p50']:.1f}x"),
        ("onnx cold start < 1 s (in-process)", co["total_s"] < 1.0, f"{co['total_s']:.3f} s"),
        ("no pandas/sklearn/scipy/pyarrow on onnx path", not co["heavy"], ", ".join(co["heavy"]) or "none"),
        ("prediction log complete", logged == expected, f"{logged}/{expected}"),
    ]
    print()
    for name, ok, value in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {name:48} {value}")


if __name__ == "__main__":
    main()
