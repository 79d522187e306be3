"""Probe: does loopml.monitoring.reliability flag the chunks whose estimate misses, and only those?

On NannyML 0.13.1's shipped synthetic data sets (offline, inside the package), three parts:

  cutoff   the domain AUC and the estimate's |error| of every kind of chunk: reference chunks against the
           rest of the reference, NannyML's own analysis chunks (the first half stable, the second half
           under the covariate shift NannyML built them to stay estimable under), and chunks cut from
           the other side of a feature's median while the reference holds only the lower side
  replay   one stable period then one period beyond the reference's range (reference: rows below the
           median of one feature; stable: analysis rows below it; shifted: analysis rows above it). Per
           chunk: domain AUC, the estimate (CBPE, DLE for regression), realized, |error|, the realized
           value's own noise (bootstrap), the band, the verdict, the labels needed, the check's time.
           Targets: every chunk whose estimate misses by more than 3x the realized noise is flagged;
           no stable chunk is flagged.
  cost     the check's time beside loopml's monitor() on bench/bench_monitoring.py's data (20 numeric
           features, 50,000-row chunks): the budget is +20 %

    python bench/reliability_probe.py                    # all three, every data set
    python bench/reliability_probe.py --part replay --dataset car_loan
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopml.monitoring.reliability import (  # noqa: E402 - after the path insert
    DOMAIN_AUC_CUTOFF,
    domain_auc,
    fit_domain,
    judge_estimate,
    labels_needed,
)

BOOTSTRAP = 200
NOISE_MULTIPLE = 3.0  # an estimate "misses" when |error| > 3x the realized value's own noise


@dataclass(frozen=True)
class Dataset:
    """One shipped NannyML data set and how to monitor it."""

    loader: str
    task: str  # binary, multiclass, regression
    target: str
    features: tuple[str, ...]
    region: str  # the numeric feature whose median cuts the reference's region
    proba: str | dict[str, str] | None
    metric: str
    drop: float  # the threshold: the reference's realized metric minus this (plus, when lower is better)


DATASETS = {
    "car_loan": Dataset(
        "load_synthetic_car_loan_dataset", "binary", "repaid",
        ("car_value", "salary_range", "debt_to_income_ratio", "loan_length", "repaid_loan_on_prev_car",
         "size_of_downpayment", "driver_tenure"), "car_value", "y_pred_proba", "roc_auc", 0.05),
    "credit_card": Dataset(
        "load_synthetic_multiclass_classification_dataset", "multiclass", "y_true",
        ("acq_channel", "app_behavioral_score", "requested_credit_limit", "app_channel", "credit_bureau_score",
         "stated_income", "is_customer"), "app_behavioral_score",
        {c: f"y_pred_proba_{c}" for c in ("prepaid_card", "highstreet_card", "upmarket_card")}, "roc_auc", 0.05),
    "car_price": Dataset(
        "load_synthetic_car_price_dataset", "regression", "y_true",
        ("car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel", "transmission"),
        "price_new", None, "mae", 150.0),
}  # fmt: skip


def load(ds: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and analysis, the analysis's labels joined back by id."""
    import nannyml as nml

    reference, analysis, truth = getattr(nml, ds.loader)()
    return reference, analysis.merge(truth, on="id")


def estimator(ds: Dataset, chunk_size: int):
    """NannyML's estimator for the data set's task: CBPE, or DLE for regression."""
    import nannyml as nml

    if ds.task == "regression":
        return nml.DLE(feature_column_names=list(ds.features), y_pred="y_pred", y_true=ds.target,
                       metrics=[ds.metric], chunk_size=chunk_size, hyperparameters={"verbosity": -1})  # fmt: skip
    return nml.CBPE(metrics=[ds.metric], y_pred_proba=ds.proba, y_pred="y_pred", y_true=ds.target,
                    problem_type=f"classification_{ds.task}", chunk_size=chunk_size)  # fmt: skip


def realized(ds: Dataset, chunk: pd.DataFrame) -> float:
    """The metric measured on the chunk's labels, as NannyML computes it (multiclass: macro one-vs-rest)."""
    y = chunk[ds.target].to_numpy()
    if ds.task == "regression":
        return float(mean_absolute_error(y, chunk["y_pred"]))
    if ds.task == "binary":
        return float(roc_auc_score(y, chunk[ds.proba]))
    classes = sorted(ds.proba)
    return float(roc_auc_score(y, chunk[[ds.proba[c] for c in classes]].to_numpy(), multi_class="ovr",
                               labels=classes, average="macro"))  # fmt: skip


def bootstrap_noise(ds: Dataset, chunk: pd.DataFrame, seed: int = 0) -> float:
    """The realized value's own sampling noise: its standard deviation over bootstrap resamples of the chunk."""
    rng = np.random.default_rng(seed)
    picks = (rng.integers(0, len(chunk), len(chunk)) for _ in range(BOOTSTRAP))
    return float(np.std([realized(ds, chunk.iloc[p]) for p in picks]))


def estimates(ds: Dataset, reference: pd.DataFrame, chunks: list[pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    """Per chunk the estimate and its sampling error (chunks of one size, estimated in one call), and the
    seconds per chunk that took."""
    size = len(chunks[0])
    est = estimator(ds, size).fit(reference)
    data = pd.concat([c.drop(columns=[ds.target]) for c in chunks], ignore_index=True)
    start = time.perf_counter()
    out = est.estimate(data).filter(period="analysis").to_df()
    seconds = (time.perf_counter() - start) / len(chunks)
    metric = {"roc_auc": "roc_auc", "mae": "mae"}[ds.metric]
    frame = pd.DataFrame({"estimate": out[(metric, "value")].to_numpy(),
                          "sampling_error": out[(metric, "sampling_error")].to_numpy()})  # fmt: skip
    return frame, seconds


def cut(frame: pd.DataFrame, size: int, count: int) -> list[pd.DataFrame]:
    """The first ``count`` whole chunks of ``size`` rows."""
    return [frame.iloc[i * size : (i + 1) * size] for i in range(min(count, len(frame) // size))]


def positive_rate(ds: Dataset, chunk: pd.DataFrame) -> float | None:
    """The predicted class balance labels_needed splits an AUC's rows by: binary, the predicted positive
    share; multiclass, the smallest predicted class (every one-vs-rest AUC must be measured)."""
    if ds.task == "binary":
        return float(chunk["y_pred"].mean())
    if ds.task == "multiclass":
        return float(chunk["y_pred"].value_counts(normalize=True).reindex(list(ds.proba), fill_value=0).min())
    return None


def part_cutoff(names: list[str]) -> None:
    """Domain AUC and |error| for every kind of chunk (the measurements behind DOMAIN_AUC_CUTOFF)."""
    print(f"== cutoff: domain AUC by kind of chunk (cutoff {DOMAIN_AUC_CUTOFF}); |error| of the estimate ==")
    print(
        f"{'data set':<12}{'kind':<36}{'chunks':>7}{'AUC min':>9}{'AUC max':>9}{'max |err|':>11}{'max err/noise':>15}"
    )
    for name in names:
        ds = DATASETS[name]
        reference, analysis = load(ds)
        size = len(analysis) // 10
        low = reference[ds.region] < reference[ds.region].median()
        kinds: dict[str, tuple[pd.DataFrame, list[pd.DataFrame]]] = {
            "reference chunk vs the rest": (reference, []),
            "analysis, first half (stable)": (reference, cut(analysis, size, 10)[:5]),
            "analysis, 2nd half (cov. shift)": (reference, cut(analysis, size, 10)[5:]),
            f"other region ({ds.region})": (
                reference[low], cut(analysis[analysis[ds.region] >= reference[ds.region].median()], size // 2, 5)),
        }  # fmt: skip
        for kind, (ref, chunks) in kinds.items():
            if not chunks:  # each reference chunk against the other nine tenths of the reference
                aucs = [
                    domain_auc(fit_domain(reference.drop(c.index), ds.features), c) for c in cut(reference, size, 10)
                ]
                print(f"{name:<12}{kind:<36}{len(aucs):>7}{min(aucs):>9.3f}{max(aucs):>9.3f}")
                continue
            domain = fit_domain(ref, ds.features)
            aucs = [domain_auc(domain, c) for c in chunks]
            est, _ = estimates(ds, ref, chunks)
            errors = np.array([abs(e - realized(ds, c)) for e, c in zip(est["estimate"], chunks, strict=True)])
            ratio = errors / np.array([bootstrap_noise(ds, c) for c in chunks])
            print(
                f"{name:<12}{kind:<36}{len(aucs):>7}{min(aucs):>9.3f}{max(aucs):>9.3f}{errors.max():>11.4f}{ratio.max():>15.1f}"
            )


def part_replay(names: list[str], size: int) -> None:
    """A stable period, then a period beyond the reference's range: the verdict of every chunk, and the targets."""
    for name in names:
        ds = DATASETS[name]
        reference, analysis = load(ds)
        median = reference[ds.region].median()
        ref = reference[reference[ds.region] < median]
        chunks = cut(analysis[analysis[ds.region] < median], size, 5)
        chunks += cut(analysis[analysis[ds.region] >= median], size, 5)
        periods = ["stable"] * 5 + ["shifted"] * 5
        est, est_seconds = estimates(ds, ref, chunks)
        base = realized(ds, ref)
        threshold = base - ds.drop if ds.metric != "mae" else base + ds.drop
        residuals = (ref[ds.target] - ref["y_pred"]).to_numpy() if ds.task == "regression" else None
        start = time.perf_counter()
        domain = fit_domain(ref, ds.features)
        fit_seconds = time.perf_counter() - start
        print(f"\n== replay: {name} ({ds.metric}), reference = {len(ref):,} rows with {ds.region} < {median:g}; "
              f"stable: analysis rows below it, shifted: rows at or above it; {size:,} rows a chunk; "
              f"threshold {threshold:.4f} (reference {base:.4f}) ==")  # fmt: skip
        print(f"{'chunk':<6}{'period':<9}{'dom AUC':>8}{'estimate':>10}{'realized':>10}{'|error|':>9}{'noise':>8}"
              f"{'err/noise':>10}{'band':>24}{'verdict':>11}  {'reasons':<34}{'labels':>7}{'check ms':>9}")  # fmt: skip
        misses_flagged, stable_clean, rows = True, True, []
        for i, (chunk, period) in enumerate(zip(chunks, periods, strict=True)):
            start = time.perf_counter()
            auc = domain_auc(domain, chunk)
            e, se = float(est["estimate"][i]), float(est["sampling_error"][i])
            verdict = judge_estimate(e, se, threshold, auc)
            need = labels_needed(ds.metric, verdict.margin, len(chunk), estimate=e,
                                 positive_rate=positive_rate(ds, chunk), residuals=residuals)  # fmt: skip
            check_ms = (time.perf_counter() - start) * 1000
            real, noise = realized(ds, chunk), bootstrap_noise(ds, chunk)
            error = abs(e - real)
            rows.append(check_ms)
            if error > NOISE_MULTIPLE * noise and verdict.reliable:
                misses_flagged = False
            if period == "stable" and not verdict.reliable:
                stable_clean = False
            band = f"[{verdict.band[0]:.4f}, {verdict.band[1]:.4f}]"
            print(f"{i:<6}{period:<9}{auc:>8.3f}{e:>10.4f}{real:>10.4f}{error:>9.4f}{noise:>8.4f}{error / noise:>10.1f}"
                  f"{band:>24}{'reliable' if verdict.reliable else 'UNRELIABLE':>11}  "
                  f"{','.join(verdict.reasons) or '-':<34}{need:>7}{check_ms:>9.1f}")  # fmt: skip
        print(f"check: fit_domain once {fit_seconds * 1000:.1f} ms; per chunk median {np.median(rows):.1f} ms "
              f"(the estimate itself: {est_seconds * 1000:.1f} ms a chunk)")  # fmt: skip
        print(f"target: every chunk missing by > {NOISE_MULTIPLE:g}x the realized noise is flagged: "
              f"{'PASS' if misses_flagged else 'FAIL'}")  # fmt: skip
        print(f"target: no stable chunk is flagged: {'PASS' if stable_clean else 'FAIL'}")


def part_cost(rows: int, repeat: int) -> None:
    """The check's time beside monitor() on bench_monitoring's data, run here side by side, interleaved
    (machine noise hits both alike); the best of ``repeat`` runs of each."""
    from bench.bench_monitoring import _spec, make_data
    from loopml.monitoring import monitor

    features = [f"f{i}" for i in range(20)]
    chunk_size = 50_000
    reference, analysis = make_data(rows, 100_000, len(features))
    monitor_seconds, check_seconds = math.inf, math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        monitor(reference, analysis, _spec(features, chunk_size), [0.0, 1.0])
        monitor_seconds = min(monitor_seconds, time.perf_counter() - start)
        start = time.perf_counter()
        domain = fit_domain(reference, features)
        for i in range(0, rows, chunk_size):
            domain_auc(domain, analysis.iloc[i : i + chunk_size])
        check_seconds = min(check_seconds, time.perf_counter() - start)
    chunks = -(-rows // chunk_size)
    print(f"\n== cost on bench_monitoring's data: {rows:,} rows x 20 features, {chunks} chunks of {chunk_size:,}, "
          f"best of {repeat} ==")  # fmt: skip
    print(f"monitor(): {monitor_seconds:.2f} s; reliability check: {check_seconds:.3f} s "
          f"({check_seconds / chunks * 1000:.1f} ms a chunk) = +{check_seconds / monitor_seconds:.1%} (budget +20 %)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("cutoff", "replay", "cost", "all"), default="all")
    p.add_argument("--dataset", choices=(*DATASETS, "all"), default="all")
    p.add_argument("--chunk-rows", type=int, default=2000, help="rows a replay chunk")
    p.add_argument("--cost-rows", type=int, default=1_000_000, help="analysis rows of the cost part")
    p.add_argument("--repeat", type=int, default=3, help="runs of the cost part; the best is kept")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    # NannyML 0.13.1's DLE reshapes categorical columns, which pandas' Arrow-backed strings cannot do
    pd.set_option("future.infer_string", False)
    import nannyml as nml

    nml.disable_usage_logging()
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    parts: dict[str, Callable[[], None]] = {
        "cutoff": lambda: part_cutoff(names),
        "replay": lambda: part_replay(names, args.chunk_rows),
        "cost": lambda: part_cost(args.cost_rows, args.repeat),
    }
    for name, run in parts.items():
        if args.part in (name, "all"):
            run()


if __name__ == "__main__":
    main()
