"""Benchmark: loopml.monitoring.monitor() against the plain NannyML calls doing the same work.

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


def make_data(rows: int, reference_rows: int, n_features: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=n_features)

    def frame(n: int, start: str, drift: bool) -> pd.DataFrame:
        x = rng.normal(size=(n, n_features))
        if drift:  # shift a quarter of the features in the second half of the period
            x[n // 2 :, : max(n_features // 4, 1)] += 0.5
        logits = x @ weights / np.sqrt(n_features)
        proba = 1 / (1 + np.exp(-logits))
        y = (rng.random(n) < proba).astype("float64")
        df = pd.DataFrame(x, columns=[f"f{i}" for i in range(n_features)])
        df["timestamp"] = pd.date_range(start, periods=n, freq="min")
        df["y_pred_proba"] = proba
        df["y_pred"] = (proba >= 0.5).astype("float64")
        df["y"] = y
        return df

    reference = frame(reference_rows, "2025-01-01", drift=False)
    analysis = frame(rows, "2025-06-01", drift=True).drop(columns=["y"])  # labels arrive late
    return reference, analysis


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


def run_loopml(reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str], chunk_size: int) -> None:
    from loopml.monitoring import monitor
    from loopml.spec import parse_spec

    spec = parse_spec(
        {
            "name": "bench", "task": "binary", "target": "y", "timestamp": "timestamp",
            "features": [{"name": f, "type": "numeric"} for f in features],
            "metric": {"name": "roc_auc", "threshold": 0.7}, "data": {"train": "unused"},
            "monitoring": {"chunk_size": chunk_size},
        }
    )  # fmt: skip
    result = monitor(reference, analysis, spec, [0.0, 1.0])
    assert result.chunks["estimated"].notna().all(), result.messages


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), to subtract the data from the peak."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def child(args: argparse.Namespace) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import nannyml  # noqa: F401 - import cost is not what we measure

    import loopml.monitoring  # noqa: F401

    reference, analysis = make_data(args.rows, args.reference, args.features)
    features = [f"f{i}" for i in range(args.features)]
    baseline = _rss_mb()
    start = time.perf_counter()
    if args.mode == "loopml":
        run_loopml(reference, analysis, features, args.chunk_size)
    else:
        run_plain(reference, analysis, features, args.chunk_size, full=args.mode == "plain-full")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": args.mode, "seconds": seconds, "peak_mb": peak, "extra_mb": peak - baseline}))


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
            "--chunk-size", str(args.chunk_size)]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="analysis rows")
    p.add_argument("--reference", type=int, default=100_000, help="reference rows")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--chunk-size", type=int, default=None, help="default: rows / 20")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender; the best is kept")
    p.add_argument("--mode", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.chunk_size = args.chunk_size or max(args.rows // 20, 50)
    child(args) if args.mode else parent(args)


if __name__ == "__main__":
    main()
