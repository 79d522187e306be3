"""Benchmark: batch scoring throughput, side by side with the bare model on the same rows.

A champion (random_forest, served as ONNX) is trained on NannyML's car loan data and registered in a
temporary LocalStore. The new data (50,000 rows, ten months) is repeated to --rows rows with fresh ids
and spread over --days days, written as one Parquet file, then scored four ways in one run:

  loopml    score_range(): read in bounded batches ▶ validate ▶ ONNX on whole columns ▶ one Parquet
            object per date ▶ one manifest commit (the real ScoreFlow step, without Metaflow's process start)
  fair baseline  the same work by hand: pyarrow reads the Parquet file, onnxruntime runs the same
            session on its columns, pyarrow writes one Parquet file per date (no validation, no
            merge, no commit): what the machine does at best for this job
  bare ONNX the same ONNX session on the same rows, already in memory as column arrays
  bare sklearn  pipeline.predict_proba on the same rows as a DataFrame

The runs alternate (baseline, loopml, baseline, loopml, …, --repeat times each, into fresh stores) and
the medians are compared, so that a noisy neighbour slows both alike. Prints rows/s for each and the
ratios; peak memory of score_range is reported with tracemalloc.

    python bench/bench_scoring.py --rows 1000000
"""

from __future__ import annotations

import argparse
import io
import statistics
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

from loopml.data.features import MISSING, prepare  # noqa: E402
from loopml.demo.data import car_loan_frames, car_loan_spec  # noqa: E402
from loopml.modeling.inprocess import train_in_process  # noqa: E402
from loopml.registry.registry import Registry  # noqa: E402
from loopml.scoring.batch import column_feeds, score_range  # noqa: E402
from loopml.serving.server import load_predictor  # noqa: E402
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


def _copy_registry(src: LocalStore, dst: LocalStore) -> None:
    for key in src.list("registry/"):
        dst.put(key, src.get(key))


def fair_baseline(path: Path, out: Path, session, schema, version: int) -> int:
    """The job by hand: read, predict on the columns, write one Parquet file per date. Returns rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    feeds = {}
    for name, kind in schema.features:
        col = table[name]
        if kind == "numeric":
            feeds[name] = col.cast(pa.float32()).to_numpy(zero_copy_only=False).reshape(-1, 1)
        else:
            feeds[name] = pc.fill_null(col.cast(pa.string()), MISSING).to_numpy(zero_copy_only=False).reshape(-1, 1)
    label, proba = session.run(None, feeds)[:2]
    scored = table.append_column("y_pred", pa.array(np.ravel(label))).append_column(
        "y_pred_proba", pa.array(np.asarray(proba)[:, 1])).append_column(
        "model_version", pa.array(np.full(len(table), version)))
    days = pc.utf8_slice_codeunits(table["timestamp"].cast(pa.string()), 0, 10)
    for day in pc.unique(days).to_pylist():
        part = out / f"date={day}"
        part.mkdir(parents=True)
        pq.write_table(scored.filter(pc.equal(days, day)), part / "part.parquet")
    return len(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--batch-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of loopml and of the baseline, alternating")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec, store, big, first = build(tmp, args.rows, args.days)
        registry = Registry(store)
        version = registry.resolve()

        last = first + timedelta(days=args.days - 1)
        onnx = load_predictor(registry, version)

        def run(target) -> float:
            t = time.perf_counter()
            result = score_range(target, spec, first, last, version=version, batch_rows=args.batch_rows,
                                 progress=lambda _: None)
            assert result.rows == len(big), (result.rows, len(big))
            return time.perf_counter() - t

        def baseline(i: int) -> float:
            t = time.perf_counter()
            rows = fair_baseline(tmp / "data" / "new.parquet", tmp / f"baseline-{i}", onnx.session, onnx.schema,
                                 version.number)
            assert rows == len(big)
            return time.perf_counter() - t

        t_base_all, t_loop_all, cpu_base, cpu_loop = [], [], [], []
        for i in range(args.repeat):
            c = time.process_time()  # CPU seconds of every thread: what a neighbour cannot inflate
            t_base_all.append(baseline(i))
            cpu_base.append(time.process_time() - c)
            fresh = LocalStore(tmp / f"store-{i}")  # an empty predictions area, like the baseline's folder
            _copy_registry(store, fresh)
            c = time.process_time()
            t_loop_all.append(run(fresh))
            cpu_loop.append(time.process_time() - c)
        t_base, t_loop = statistics.median(t_base_all), statistics.median(t_loop_all)
        t = time.perf_counter()
        run(store)  # into a store that already holds every date: the merge-by-id path
        t_merge = time.perf_counter() - t
        tracemalloc.start()  # timed runs go without tracemalloc, which slows allocation-heavy code several-fold
        run(store)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        X = prepare(big, spec)
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
        print(f"{'':<36}{'seconds':>10}{'rows/s':>14}")
        for label, secs in (("loopml score_range (end to end)", t_loop),
                            ("fair baseline (pyarrow+onnxruntime)", t_base),
                            ("loopml re-run, merging by id", t_merge),
                            ("bare ONNX session.run (in memory)", t_onnx),
                            ("bare sklearn predict_proba", t_skl)):
            print(f"{label:<36}{secs:>10.2f}{n / secs:>14,.0f}")
        print("   (loopml includes: read Parquet in batches, validate, predict, write partitions, commit the manifest)")
        print(f"   medians of {args.repeat} alternating runs; loopml runs: "
              f"{', '.join(f'{x:.2f}' for x in t_loop_all)} s; baseline runs: {', '.join(f'{x:.2f}' for x in t_base_all)} s")
        ratio = t_loop / t_base
        cpu_ratio = statistics.median(cpu_loop) / statistics.median(cpu_base)
        print(f"   CPU seconds (all threads), loopml: {', '.join(f'{x:.2f}' for x in cpu_loop)}; "
              f"baseline: {', '.join(f'{x:.2f}' for x in cpu_base)}")
        print(f"ratio loopml / fair baseline time: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (medians)")
        print(f"ratio loopml / bare ONNX time:    {t_loop / t_onnx:.2f}x")
        print(f"ratio loopml / bare sklearn time: {t_loop / t_skl:.2f}x")
        print(f"peak Python-heap memory in score_range (tracemalloc; Arrow buffers not counted): {peak / 1e6:.0f} MB "
              f"for {n:,} rows in batches of {args.batch_rows:,}")
        print(f"\n{'PASS' if ratio <= 1.3 else 'FAIL'}  loopml within 1.3x of the fair baseline (wall)  {ratio:.2f}x")
        print(f"{'PASS' if cpu_ratio <= 1.3 else 'FAIL'}  loopml within 1.3x of the fair baseline (CPU)   {cpu_ratio:.2f}x")


if __name__ == "__main__":
    main()
