"""Benchmark: loopml.monitoring.monitor() against the plain NannyML calls doing the same work, and
monitor_stream() over a window larger than memory.

Synthetic binary classification, numeric features, a reference period and an unlabelled analysis
period with drift in its second half. Each contender runs in its own subprocess on identical data
(same seed), so peak memory (ru_maxrss) is per contender; the ratios loopml / plain are printed
side by side. Target: loopml within 1.3x of plain NannyML.

Contenders:
  plain-core  CBPE + univariate drift (Jensen-Shannon) + multivariate drift (data reconstruction)
  plain-full  plain-core + the data-quality calculators loopml also runs (missing values, numerical range)
  loopml      monitor(): all of the above, plus input checks, result assembly and figures

    python bench/bench_monitoring.py                 # 1,000,000 analysis rows x 20 features
    python bench/bench_monitoring.py --rows 100000   # a quick run

Bounded memory (issue 10 §6): ``--stream-rows 20000000`` adds two contenders and prints their ratio:
  today       the in-memory path of git revision ``--baseline-rev`` (default: the commit before
              streaming) at ``--rows``, run from that revision's own source
  stream      monitor_stream() fed 1,000,000-row pieces generated on the fly (never the whole window);
              the time spent generating them is measured and left out
Targets: stream peak RSS <= 2 GB; stream time per row <= 1.2x today's.

    python bench/bench_monitoring.py --stream-rows 20000000 --only-stream
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONTENDERS = ("plain-core", "plain-full", "loopml")
STREAM_CONTENDERS = ("today", "stream")
BASELINE_REV = "0bf2f7b"  # main before monitoring streamed chunk by chunk
PIECE_ROWS = 1_000_000


def _frame(rng: np.random.Generator, weights: np.ndarray, n: int, start: pd.Timestamp, drift_from: int | None) -> pd.DataFrame:
    n_features = len(weights)
    x = rng.normal(size=(n, n_features))
    if drift_from is not None:  # shift a quarter of the features from row drift_from on
        x[drift_from:, : max(n_features // 4, 1)] += 0.5
    logits = x @ weights / np.sqrt(n_features)
    proba = 1 / (1 + np.exp(-logits))
    y = (rng.random(n) < proba).astype("float64")
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(n_features)])
    df["timestamp"] = pd.date_range(start, periods=n, freq="s")
    df["y_pred_proba"] = proba
    df["y_pred"] = (proba >= 0.5).astype("float64")
    df["y"] = y
    return df


def make_data(rows: int, reference_rows: int, n_features: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=n_features)
    reference = _frame(rng, weights, reference_rows, pd.Timestamp("2025-01-01"), None)
    analysis = _frame(rng, weights, rows, pd.Timestamp("2025-06-01"), rows // 2).drop(columns=["y"])  # labels arrive late
    return reference, analysis


class Pieces:
    """The analysis window as 1,000,000-row pieces made on demand, like date partitions read one by
    one; ``seconds`` is the time spent making them (left out of the measured time)."""

    def __init__(self, rows: int, n_features: int, seed: int = 0) -> None:
        self.rows, self.seconds = rows, 0.0
        self.rng = np.random.default_rng(seed)
        self.weights = self.rng.normal(size=n_features)
        self.rng_ref = np.random.default_rng(seed + 1)

    def reference(self, rows: int) -> pd.DataFrame:
        return _frame(self.rng_ref, self.weights, rows, pd.Timestamp("2025-01-01"), None)

    def __iter__(self):
        done = 0
        while done < self.rows:
            t = time.perf_counter()
            n = min(PIECE_ROWS, self.rows - done)
            drift_from = max(self.rows // 2 - done, 0) if done + n > self.rows // 2 else None
            piece = _frame(self.rng, self.weights, n, pd.Timestamp("2025-06-01") + pd.Timedelta(seconds=done), drift_from)
            piece = piece.drop(columns=["y"])
            self.seconds += time.perf_counter() - t
            done += n
            yield piece


def run_plain(
    reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str], chunk_size: int, full: bool
) -> None:
    import nannyml as nml

    nml.disable_usage_logging()
    common = dict(timestamp_column_name="timestamp", chunk_size=chunk_size)
    cbpe = nml.CBPE(metrics=["roc_auc"], y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y",
                    problem_type="classification_binary", **common)  # fmt: skip
    cbpe.fit(reference).estimate(analysis)
    uni = nml.UnivariateDriftCalculator(column_names=features, continuous_methods=["jensen_shannon"],
                                        categorical_methods=["jensen_shannon"], **common)  # fmt: skip
    uni.fit(reference).calculate(analysis)
    nml.DataReconstructionDriftCalculator(column_names=features, **common).fit(reference).calculate(analysis)
    if full:
        nml.MissingValuesCalculator(column_names=features, normalize=False, **common).fit(reference).calculate(analysis)
        nml.NumericalRangeCalculator(column_names=features, normalize=False, **common).fit(reference).calculate(
            analysis
        )


def _spec(features: list[str], chunk_size: int):
    from loopml.spec import parse_spec

    return parse_spec(
        {
            "name": "bench", "task": "binary", "target": "y", "timestamp": "timestamp",
            "features": [{"name": f, "type": "numeric"} for f in features],
            "metric": {"name": "roc_auc", "threshold": 0.7}, "data": {"train": "unused"},
            "monitoring": {"chunk_size": chunk_size},
        }
    )  # fmt: skip


def run_loopml(reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str], chunk_size: int) -> None:
    from loopml.monitoring import monitor

    result = monitor(reference, analysis, _spec(features, chunk_size), [0.0, 1.0])
    assert result.chunks["estimated"].notna().all(), result.messages


def run_stream(args: argparse.Namespace, features: list[str]) -> dict[str, float]:
    """monitor_stream over generated pieces; returns the seconds spent generating them."""
    from loopml.monitoring import monitor_stream

    pieces = Pieces(args.stream_rows, args.features)
    reference = pieces.reference(args.reference)
    baseline = _rss_mb()
    start = time.perf_counter()
    result = monitor_stream(reference, pieces, _spec(features, args.chunk_size), [0.0, 1.0])
    seconds = time.perf_counter() - start - pieces.seconds
    assert result.chunks["estimated"].notna().all() and len(result.chunks) == -(-args.stream_rows // args.chunk_size)
    drifting = int(result.chunks["multivariate_alert"].sum())
    return {"seconds": seconds, "baseline_mb": baseline, "rows": args.stream_rows, "generate_s": pieces.seconds,
            "chunks": len(result.chunks), "multivariate_alerts": drifting}


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), to subtract the data from the peak."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def child(args: argparse.Namespace) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import nannyml  # noqa: F401 - import cost is not what we measure

    import loopml.monitoring  # noqa: F401

    features = [f"f{i}" for i in range(args.features)]
    if args.mode == "stream":
        out = run_stream(args, features)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"mode": "stream", "seconds": out["seconds"], "peak_mb": peak,
                          "extra_mb": peak - out["baseline_mb"], **out}))  # fmt: skip
        return
    reference, analysis = make_data(args.rows, args.reference, args.features)
    baseline = _rss_mb()
    start = time.perf_counter()
    if args.mode in ("loopml", "today"):
        run_loopml(reference, analysis, features, args.chunk_size)
    else:
        run_plain(reference, analysis, features, args.chunk_size, full=args.mode == "plain-full")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": args.mode, "seconds": seconds, "peak_mb": peak, "extra_mb": peak - baseline}))


def stream_parent(args: argparse.Namespace) -> None:
    import shutil
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    old = Path(tempfile.mkdtemp(prefix="loopml-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline_rev, "loopml"], check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        # Revisions before loopml/__init__.py existed extract as a namespace package, and Python prefers a
        # regular package later on sys.path over it: "today" silently ran the current tree. Make it regular.
        (old / "loopml" / "__init__.py").touch()
        runs = {}
        for mode, src in (("today", old), ("stream", repo)):
            cmd = [sys.executable, __file__, "--mode", mode, "--src", str(src), *_forward(args)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            runs[mode] = json.loads(out)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    t, s = runs["today"], runs["stream"]
    per_t, per_s = t["seconds"] / args.rows * 1e6, s["seconds"] / s["rows"] * 1e6
    print(f"today  ({args.baseline_rev}, in memory): {args.rows:,} rows in {t['seconds']:.2f} s = {per_t:.2f} us/row, "
          f"peak RSS {t['peak_mb']:.0f} MB")
    print(f"stream (monitor_stream):       {s['rows']:,} rows in {s['seconds']:.2f} s = {per_s:.2f} us/row, "
          f"peak RSS {s['peak_mb']:.0f} MB ({s['chunks']} chunks; {s['generate_s']:.1f} s generating pieces left out)")
    print(f"ratio stream/today per row: {per_s / per_t:.2f}x (target <= 1.2x); stream peak RSS "
          f"{s['peak_mb'] / 1024:.2f} GB (target <= 2 GB)")


def parent(args: argparse.Namespace) -> None:
    print(
        f"analysis {args.rows:,} rows x {args.features} features, reference {args.reference:,} rows, "
        f"chunk_size {args.chunk_size:,}, best of {args.repeat}"
    )
    results: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for mode in CONTENDERS:  # interleaved, so machine noise hits every contender alike
            cmd = [sys.executable, __file__, "--mode", mode, *_forward(args)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            run = json.loads(out)
            best = results.setdefault(mode, run)
            for key in ("seconds", "peak_mb", "extra_mb"):
                best[key] = min(best[key], run[key])
    print(f"{'contender':<12}{'time s':>10}{'peak RSS MB':>14}{'peak over data MB':>20}")
    for mode in CONTENDERS:
        r = results[mode]
        print(f"{mode:<12}{r['seconds']:>10.2f}{r['peak_mb']:>14.0f}{r['extra_mb']:>20.0f}")
    lo = results["loopml"]
    for base in ("plain-core", "plain-full"):
        b = results[base]
        print(
            f"ratio loopml/{base}: time {lo['seconds'] / b['seconds']:.2f}x, peak RSS {lo['peak_mb'] / b['peak_mb']:.2f}x, "
            f"peak over data {lo['extra_mb'] / b['extra_mb']:.2f}x  (target <= 1.3x)"
        )


def _forward(args: argparse.Namespace) -> list[str]:
    return ["--rows", str(args.rows), "--reference", str(args.reference), "--features", str(args.features),
            "--chunk-size", str(args.chunk_size), "--stream-rows", str(args.stream_rows)]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="analysis rows")
    p.add_argument("--reference", type=int, default=100_000, help="reference rows")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--chunk-size", type=int, default=None, help="default: rows / 20")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender; the best is kept")
    p.add_argument("--stream-rows", type=int, default=0, help="also run monitor_stream over this many rows")
    p.add_argument("--only-stream", action="store_true", help="skip the plain-NannyML comparison")
    p.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision whose in-memory path is 'today'")
    p.add_argument("--mode", choices=CONTENDERS + STREAM_CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.chunk_size = args.chunk_size or max(args.rows // 20, 500)
    if args.src:  # a contender runs the loopml of its own source tree
        sys.path.insert(0, args.src)
    if args.mode:
        child(args)
        return
    if not args.only_stream:
        parent(args)
    if args.stream_rows:
        stream_parent(args)


if __name__ == "__main__":
    main()
