"""Benchmark: batch scoring throughput, side by side with the bare model on the same rows.

A champion (random_forest, served as ONNX) is trained on NannyML's car loan data and registered in a
temporary LocalStore. The new data (50,000 rows, ten months) is repeated to --rows rows with fresh ids
and spread over --days days, written as one Parquet file, then scored three ways in one run:

  loopml    score_range(): read in bounded batches ▶ validate ▶ ONNX on whole columns ▶ one Parquet
            partition per date written atomically (the real ScoreFlow step, without Metaflow's process start)
  bare ONNX the same ONNX session on the same rows, already in memory as column arrays
  bare sklearn  pipeline.predict_proba on the same rows as a DataFrame

Prints rows/s for each and the ratios; peak memory of score_range is reported with tracemalloc.

    python bench/bench_scoring.py --rows 1000000
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loopml.data.features import prepare  # noqa: E402
from loopml.demo_data import car_loan_frames, car_loan_spec  # noqa: E402
from loopml.modeling.inprocess import train_in_process  # noqa: E402
from loopml.registry import Registry  # noqa: E402
from loopml.scoring import column_feeds, score_range  # noqa: E402
from loopml.serving import load_predictor  # noqa: E402
from loopml.spec import parse_spec  # noqa: E402
from loopml.storage import LocalStore  # noqa: E402


def build(tmp: Path, rows: int, days: int):
    train, new, _ = car_loan_frames()
    data = tmp / "data"
    data.mkdir()
    train.to_parquet(data / "train.parquet", index=False)
    reps = -(-rows // len(new))
    big = pd.concat([new] * reps, ignore_index=True).iloc[:rows].copy()
    big["id"] = np.arange(len(big))
    start = pd.Timestamp("2020-01-01")
    big["timestamp"] = (start + pd.to_timedelta(np.linspace(0, days * 86400 - 1, len(big)), unit="s")).astype(str)
    big.to_parquet(data / "new.parquet", index=False)
    raw = car_loan_spec(str(data))
    raw["candidates"] = [{"family": "random_forest", "n_iter": 1}]
    raw.pop("constraints")
    spec = parse_spec(raw)
    store = LocalStore(tmp / "store")
    train_in_process(spec, Registry(store))
    return spec, store, big, start.date()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--batch-rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec, store, big, first = build(tmp, args.rows, args.days)
        registry = Registry(store)
        version = registry.resolve()

        last = first + timedelta(days=args.days - 1)

        def run() -> float:
            t = time.perf_counter()
            result = score_range(store, spec, first, last, version=version, batch_rows=args.batch_rows,
                                 progress=lambda _: None)
            assert result.rows == len(big), (result.rows, len(big))
            return time.perf_counter() - t

        t_loop = run()  # timed without tracemalloc, which slows allocation-heavy code several-fold
        tracemalloc.start()
        run()  # the re-run replaces the same partitions: idempotent, and gives the memory peak
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        X = prepare(big, spec)
        onnx = load_predictor(registry, version)
        feeds = column_feeds(X, onnx.schema)
        t = time.perf_counter()
        onnx.raw(feeds)
        t_onnx = time.perf_counter() - t
        pipeline = joblib.load(io.BytesIO(registry.artifact(version, "model.joblib")))
        t = time.perf_counter()
        pipeline.predict_proba(X)
        t_skl = time.perf_counter() - t

        n = len(big)
        print(f"batch scoring, {n:,} rows over {args.days} daily partitions, model v{version.number} "
              f"({version.meta['family']}, served as {onnx.kind})")
        print(f"{'':<34}{'seconds':>10}{'rows/s':>14}")
        for label, secs in (("loopml score_range (end to end)", t_loop), ("bare ONNX session.run (in memory)", t_onnx),
                            ("bare sklearn predict_proba", t_skl)):
            print(f"{label:<34}{secs:>10.2f}{n / secs:>14,.0f}")
        print("   (loopml includes: read Parquet in batches, validate, predict, write partitions)")
        print(f"ratio loopml / bare ONNX time:    {t_loop / t_onnx:.2f}x")
        print(f"ratio loopml / bare sklearn time: {t_loop / t_skl:.2f}x")
        print(f"peak Python-heap memory in score_range (tracemalloc; Arrow buffers not counted): {peak / 1e6:.0f} MB "
              f"for {n:,} rows in batches of {args.batch_rows:,}")


if __name__ == "__main__":
    main()
