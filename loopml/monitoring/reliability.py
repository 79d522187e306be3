"""Reliability: whether a chunk's performance estimate can be trusted, and how many labels would settle it.

Pure functions over pandas/numpy (scikit-learn for the domain classifier): nothing here reads the store
or fits NannyML. They answer, per analysis chunk:

- :func:`domain_auc`: how far the chunk lies from the reference. A shallow decision tree learns to tell
  the chunk's rows from the reference's; its out-of-fold ROC AUC is 0.5 when the two cannot be told apart
  and 1.0 when the chunk lies where the reference has no rows. :func:`fit_domain` encodes a bounded,
  seeded sample of the reference once; each chunk then costs one sample and two small tree fits.
- :func:`estimate_band`: the estimate's own uncertainty, ``estimate ± sigmas * sampling_error`` as
  NannyML's CBPE and DLE report it (their confidence band is 3 sampling errors wide each side).
- :func:`judge_estimate`: a :class:`Verdict`, unreliable (with reasons) when the chunk is outside what the
  reference covers or when the band reaches across the threshold the estimate is judged against.
- :func:`labels_needed`: how many labelled rows of the chunk would measure the metric to ± the margin
  between the estimate and the threshold, capped by the chunk's rows.
- :func:`label_strata` and :func:`sample_for_labels`: a stratified, seeded sample of prediction ids of
  that size.

The cutoff, from measurements (``python bench/reliability_probe.py --part cutoff``: NannyML 0.13.1's
shipped car loan, credit card (multiclass) and car price (regression) data, 5,000-6,000-row chunks, this
module's tree on 1,000 rows a side): a reference chunk against the rest of the reference reaches at most
0.53; the analysis halves NannyML built under covariate shift reach 0.70-0.85, and the estimate stays
within 3.4 times the realized value's noise on car loan and car price; a chunk cut from the other side of
a feature's median, while the reference holds only the lower side, reaches 0.998-1.000 (the car price
estimate misses there by 8.6 times the noise). :data:`DOMAIN_AUC_CUTOFF` = 0.95 sits between, far from
both next to the AUC's sampling noise (about 0.015). Two unit-variance normal features whose means differ
by 2.3 standard deviations give an AUC of 0.95. NannyML's own DomainClassifierCalculator (LightGBM, 5-fold
CV) measured 840 ms a 5,000-row car loan chunk against this module's 8.5 ms, and puts the covariate-shift
halves at 0.91-0.92, too near any cutoff that still flags what lies outside.

What no label-free check sees: a change in how the target follows the features (concept drift). The
credit card data's second half behaves so: CBPE misses by 15 times the noise on chunks inside the
reference's region (domain AUC 0.70-0.75), so no cutoff on the AUC can flag them without flagging the
accurate covariate-shift chunks too. Only realized performance, from labels, catches it;
:func:`labels_needed` says how many.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

__all__ = [
    "BAND_SIGMAS",
    "DOMAIN_AUC_CUTOFF",
    "DomainReference",
    "Verdict",
    "domain_auc",
    "estimate_band",
    "fit_domain",
    "judge_estimate",
    "label_strata",
    "labels_needed",
    "sample_for_labels",
]

DOMAIN_AUC_CUTOFF = 0.95  # see the module docstring for the measurements behind it
BAND_SIGMAS = 3.0  # NannyML's CBPE/DLE confidence band: value ± 3 sampling errors
DOMAIN_ROWS = 1000  # rows sampled a side: the AUC's noise is ~0.015, a chunk costs two fits on 1,000 rows
TREE_DEPTH = 4  # a few interactions; depth 6 costs 1.6x the time and lifts in-support shifts, not outside ones
TREE_MIN_LEAF = 20  # a leaf is a region of some size, not a single row
SCORE_DECILES = 10
OUTSIDE_REFERENCE, BAND_ACROSS_THRESHOLD, NO_ESTIMATE = "outside_reference", "band_across_threshold", "no_estimate"
_UNSEEN = "__unseen__"  # an analysis category the reference never had: a region the reference does not cover
_PROPORTION_METRICS = {"accuracy", "f1", "precision", "recall"}
_REGRESSION_METRICS = {"mae", "mse", "rmse", "r2"}
T = TypeVar("T")


@dataclass(frozen=True)
class DomainReference:
    """A bounded, seeded sample of the reference, encoded for the domain classifier (see :func:`fit_domain`)."""

    features: tuple[str, ...]
    categories: dict[str, pd.Index]  # categorical feature -> the reference's categories, in code order
    matrix: np.ndarray  # the sample: one row per reference row, one float column per feature
    seed: int


def fit_domain(
    reference: pd.DataFrame,
    features: Sequence[str],
    *,
    categorical: Collection[str] | None = None,
    max_rows: int = DOMAIN_ROWS,
    seed: int = 0,
) -> DomainReference:
    """Sample at most ``max_rows`` reference rows (seeded) and encode them once for :func:`domain_auc`.

    ``categorical`` names the features coded as categories; by default the non-numeric and boolean
    columns. A category the reference never had becomes one shared "unseen" code.
    """
    cats = set(categorical) if categorical is not None else {f for f in features if _is_categorical(reference[f])}
    categories = {f: pd.Index(pd.unique(reference[f].dropna().astype(str))) for f in features if f in cats}
    sample = _sample(reference, max_rows, seed)
    return DomainReference(tuple(features), categories, _encode(sample, tuple(features), categories), seed)


def domain_auc(domain: DomainReference, chunk: pd.DataFrame) -> float:
    """Out-of-fold ROC AUC of a shallow tree telling ``chunk``'s rows from the reference's: 0.5 when the
    chunk looks like the reference, 1.0 when it lies where the reference has no rows.

    Both sides are sampled to the same size (the smaller of the chunk and the reference sample), cut in
    two seeded folds; each fold is scored by a tree fitted on the other. NaN for a chunk with fewer than
    :data:`TREE_MIN_LEAF` rows, too few to tell anything.
    """
    rows = min(len(chunk), len(domain.matrix))
    if rows < TREE_MIN_LEAF:
        return math.nan
    x_chunk = _encode(_sample(chunk, rows, domain.seed), domain.features, domain.categories)
    x = np.vstack([domain.matrix[:rows], x_chunk])
    y = np.r_[np.zeros(rows), np.ones(rows)]
    fold = np.random.default_rng(domain.seed).permutation(len(y)) % 2 == 0
    score = np.empty(len(y))
    for test in (fold, ~fold):
        tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, min_samples_leaf=TREE_MIN_LEAF, random_state=domain.seed)
        tree.fit(x[~test], y[~test])
        score[test] = tree.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, score))


def estimate_band(estimate: float, sampling_error: float, sigmas: float = BAND_SIGMAS) -> tuple[float, float]:
    """The estimate's band, ``estimate ± sigmas * sampling_error`` (NannyML's band when ``sigmas`` is 3)."""
    return estimate - sigmas * sampling_error, estimate + sigmas * sampling_error


@dataclass(frozen=True)
class Verdict:
    """Whether one chunk's estimate can be trusted, and why not.

    ``margin`` is the distance from the estimate to the threshold it is judged against; ``reasons`` holds
    :data:`OUTSIDE_REFERENCE` (the chunk lies where the reference has no rows), :data:`BAND_ACROSS_THRESHOLD`
    (the band reaches the other side of the threshold) or :data:`NO_ESTIMATE` (no number to judge).
    """

    reliable: bool
    domain_auc: float
    band: tuple[float, float]
    margin: float
    reasons: tuple[str, ...] = field(default=())

    def as_row(self) -> dict[str, object]:
        """The verdict as flat result columns, for a chunk's row (the band itself is NannyML's, already
        there as ``estimated_lower``/``estimated_upper`` when ``sigmas`` is 3)."""
        return {"domain_auc": self.domain_auc, "threshold_margin": self.margin, "estimate_reliable": self.reliable,
                "unreliable_reasons": list(self.reasons)}  # fmt: skip


def judge_estimate(
    estimate: float,
    sampling_error: float,
    threshold: float,
    domain: float,
    *,
    sigmas: float = BAND_SIGMAS,
    cutoff: float = DOMAIN_AUC_CUTOFF,
) -> Verdict:
    """Judge one chunk's estimate: unreliable when its domain AUC ``domain`` is at least ``cutoff`` (the
    chunk is outside what the reference covers: the reference's calibration does not carry over), or when
    the band ``estimate ± sigmas * sampling_error`` reaches the threshold (the estimate cannot say which
    side of it the chunk is on). A NaN domain AUC (a tiny chunk) is no evidence either way."""
    band = estimate_band(estimate, sampling_error, sigmas)
    margin = abs(estimate - threshold)
    reasons: list[str] = []
    if not (math.isfinite(estimate) and math.isfinite(sampling_error)):
        reasons.append(NO_ESTIMATE)
    if domain >= cutoff:  # False for NaN
        reasons.append(OUTSIDE_REFERENCE)
    if math.isfinite(margin) and sigmas * sampling_error >= margin:
        reasons.append(BAND_ACROSS_THRESHOLD)
    return Verdict(not reasons, domain, band, margin, tuple(reasons))


def labels_needed(
    metric: str,
    margin: float,
    n_rows: int,
    *,
    estimate: float | None = None,
    positive_rate: float | None = None,
    residuals: np.ndarray | None = None,
    target_variance: float | None = None,
    sigmas: float = BAND_SIGMAS,
) -> int:
    """Labelled rows of a chunk of ``n_rows`` that would measure ``metric`` to ± ``margin`` (``sigmas``
    standard errors, the band :func:`judge_estimate` uses), capped by ``n_rows``.

    - roc_auc: Hanley & McNeil's standard error at AUC ``estimate``, with the chunk's predicted class
      balance ``positive_rate`` splitting the labelled rows into positives and negatives (multiclass:
      the smallest predicted class's share, as every one-vs-rest AUC must be measured).
    - accuracy, f1, precision, recall: a binomial proportion at ``estimate``; for f1, precision and recall
      only the positive rows (``positive_rate`` of them, predicted positives standing in for actual
      ones before labels exist) inform the metric, so the count is divided by that share.
    - mae, mse, rmse, r2: the spread of the reference's ``residuals`` (y - prediction): the standard
      deviation of ``|r|`` for mae, of ``r²`` for mse, by the delta method for rmse (and for r2, mse over
      ``target_variance``).
    """
    if n_rows <= 0:
        return 0
    if not margin > 0:  # the estimate sits on the threshold: only every row settles it
        return n_rows
    if metric == "roc_auc":
        need = _labels_for_auc(
            _known(estimate, "estimate"), _known(positive_rate, "positive_rate"), margin, sigmas, n_rows
        )
    elif metric in _PROPORTION_METRICS:
        p = min(max(_known(estimate, "estimate"), 0.0), 1.0)
        need = math.ceil((sigmas / margin) ** 2 * max(p * (1 - p), 1 / n_rows))
        if metric != "accuracy":
            need = math.ceil(need / max(_known(positive_rate, "positive_rate"), 1 / n_rows))
    elif metric in _REGRESSION_METRICS:
        spread = _regression_spread(metric, _known(residuals, "residuals"), target_variance)
        need = math.ceil((sigmas * spread / margin) ** 2)
    else:
        raise ValueError(f"no label count for metric {metric!r}")
    return int(min(max(need, 2), n_rows))


def label_strata(predictions: pd.Series, *, classes: bool, deciles: int = SCORE_DECILES) -> pd.Series:
    """The stratum of every prediction: its predicted class (``classes=True``) or its score's decile.

    Deciles are cut on ranks, so ties (a score held by many rows) never merge strata.
    """
    if classes:
        return predictions.astype(str)
    if predictions.empty:
        return pd.Series([], dtype=int, index=predictions.index)
    ranks = predictions.rank(method="first")
    return pd.qcut(ranks, q=min(deciles, max(len(predictions), 1)), labels=False).astype(int)


def sample_for_labels(ids: pd.Series, strata: pd.Series, size: int, *, seed: int = 0) -> pd.Series:
    """``size`` ids (all of them when fewer) drawn without replacement, each stratum in proportion to its
    rows (largest remainders round; every stratum gets one id when ``size`` allows), seeded.

    ``ids`` and ``strata`` align by position. Returned in stratum order, then draw order.
    """
    if len(ids) != len(strata):
        raise ValueError(f"{len(ids)} ids but {len(strata)} strata")
    size = max(min(size, len(ids)), 0)
    frame = pd.DataFrame({"id": ids.to_numpy(), "stratum": strata.to_numpy()})
    groups = {key: rows for key, rows in frame.groupby("stratum", sort=True)["id"]}
    quota = _allocate({key: len(rows) for key, rows in groups.items()}, size)
    rng = np.random.default_rng(seed)
    drawn = [rows.to_numpy()[rng.permutation(len(rows))[: quota[key]]] for key, rows in groups.items()]
    return pd.Series(np.concatenate(drawn) if drawn else np.array([], dtype=ids.dtype), name=ids.name)


def _allocate(sizes: dict[object, int], total: int) -> dict[object, int]:
    """Split ``total`` over strata in proportion to ``sizes``: one each first (when ``total`` allows, so a
    small stratum is not left out), the rest by largest remainder, never above a stratum's size."""
    quota = dict.fromkeys(sizes, 0)
    if total >= len(sizes):
        quota = {key: min(1, n) for key, n in sizes.items()}
    left = total - sum(quota.values())
    room = {key: n - quota[key] for key, n in sizes.items()}
    capacity = sum(room.values())
    if left <= 0 or capacity <= 0:
        return quota
    share = {key: left * r / capacity for key, r in room.items()}
    for key in share:
        quota[key] += math.floor(share[key])
    rest = left - sum(math.floor(s) for s in share.values())
    for key in sorted(share, key=lambda k: share[k] - math.floor(share[k]), reverse=True)[:rest]:
        quota[key] += 1
    return quota


def _labels_for_auc(auc: float, positive_rate: float, margin: float, sigmas: float, cap: int) -> int:
    """The fewest labelled rows whose Hanley-McNeil standard error is at most ``margin / sigmas``
    (bisection: the error falls as rows grow); ``cap`` when even all rows are not enough."""
    auc, rate = min(max(auc, 0.5), 1 - 1e-6), min(max(positive_rate, 1e-6), 1 - 1e-6)
    lo, hi = 2, cap
    if sigmas * _hanley_mcneil(auc, rate * hi, (1 - rate) * hi) > margin:
        return cap
    while lo < hi:
        mid = (lo + hi) // 2
        if sigmas * _hanley_mcneil(auc, rate * mid, (1 - rate) * mid) <= margin:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _hanley_mcneil(auc: float, positives: float, negatives: float) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC measured on these many positives and negatives."""
    if positives < 1 or negatives < 1:
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return math.sqrt(max(var, 0.0) / (positives * negatives))


def _regression_spread(metric: str, residuals: np.ndarray, target_variance: float | None) -> float:
    """One labelled row's standard deviation of ``metric``'s contribution: a chunk of n rows measures it
    to this over sqrt(n)."""
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    if metric == "mae":
        return float(np.std(np.abs(r)))
    squared = float(np.std(r**2))
    if metric == "mse":
        return squared
    if metric == "rmse":  # d sqrt(m) = dm / (2 sqrt(m))
        return squared / (2 * math.sqrt(max(float(np.mean(r**2)), 1e-12)))
    return squared / _known(target_variance, "target_variance")  # r2 = 1 - mse / var(y)


def _known(value: T | None, name: str) -> T:
    """``value``, or a clear error naming the argument the metric needs."""
    if value is None:
        raise ValueError(f"{name} is needed for this metric")
    return value


def _is_categorical(column: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column)


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn without replacement with ``seed`` (all rows, shuffled)."""
    picked = np.random.default_rng(seed).permutation(len(frame))[:rows]
    return frame.iloc[picked]


def _encode(frame: pd.DataFrame, features: tuple[str, ...], categories: dict[str, pd.Index]) -> np.ndarray:
    """Features as float columns: numbers as they are (the tree handles NaN), categories as the
    reference's codes, with NaN and unseen categories as one code past the last."""
    columns = []
    for f in features:
        if f in categories:
            codes = categories[f].get_indexer(frame[f].astype(str).where(frame[f].notna(), _UNSEEN))
            columns.append(np.where(codes < 0, len(categories[f]), codes).astype(float))
        else:
            columns.append(frame[f].to_numpy(dtype=float, na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))
