"""loopml.monitoring.reliability on NannyML's shipped synthetic data (offline): the domain AUC, the verdict,
the labels needed and the label sample."""

from __future__ import annotations

import math
import warnings
from functools import cache

import nannyml as nml
import numpy as np
import pandas as pd
import pytest

from loopml.monitoring.reliability import (
    BAND_ACROSS_THRESHOLD,
    DOMAIN_AUC_CUTOFF,
    OUTSIDE_REFERENCE,
    domain_auc,
    fit_domain,
    judge_estimate,
    label_strata,
    labels_needed,
    sample_for_labels,
)

FEATURES = ("car_value", "salary_range", "debt_to_income_ratio", "loan_length", "repaid_loan_on_prev_car",
            "size_of_downpayment", "driver_tenure")  # fmt: skip
CHUNK = 2000


@cache
def _car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference, and the analysis's first (stable) half with its labels."""
    ref, ana, truth = nml.load_synthetic_car_loan_dataset()
    return ref, ana.head(len(ana) // 2).merge(truth, on="id")


@cache
def _region_cut() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The reference cut to car_value below its median; a stable analysis chunk below it; one above it."""
    ref, ana = _car_loan()
    median = ref["car_value"].median()
    low = ref[ref["car_value"] < median]
    return low, ana[ana["car_value"] < median].head(CHUNK), ana[ana["car_value"] >= median].head(CHUNK)


def _cbpe(reference: pd.DataFrame, chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """CBPE's estimated ROC AUC and sampling error per chunk (chunks of one size)."""
    nml.disable_usage_logging()
    cbpe = nml.CBPE(metrics=["roc_auc"], y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="repaid",
                    problem_type="classification_binary", chunk_size=len(chunks[0]))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = pd.concat([c.drop(columns=["repaid"]) for c in chunks], ignore_index=True)
        out = cbpe.fit(reference).estimate(data).filter(period="analysis").to_df()
    return pd.DataFrame({"estimate": out[("roc_auc", "value")], "sampling_error": out[("roc_auc", "sampling_error")]})


def test_stable_chunks_are_reliable():
    ref, ana = _car_loan()
    chunks = [ana.iloc[i * CHUNK : (i + 1) * CHUNK] for i in range(3)]
    domain = fit_domain(ref, FEATURES)
    est = _cbpe(ref, chunks)
    threshold = 0.9  # the estimates sit near 0.97: clear of it
    for chunk, (_, row) in zip(chunks, est.iterrows(), strict=True):
        auc = domain_auc(domain, chunk)
        verdict = judge_estimate(row["estimate"], row["sampling_error"], threshold, auc)
        assert auc < 0.56, auc  # indistinguishable from the reference, within the AUC's noise
        assert verdict.reliable and verdict.reasons == (), verdict


def test_a_chunk_outside_the_reference_is_flagged_with_the_reason():
    low, inside, outside = _region_cut()
    domain = fit_domain(low, FEATURES)
    est = _cbpe(low, [inside, outside])
    verdicts = [judge_estimate(row["estimate"], row["sampling_error"], 0.9, domain_auc(domain, chunk))
                for chunk, (_, row) in zip([inside, outside], est.iterrows(), strict=True)]  # fmt: skip
    assert verdicts[0].reliable, verdicts[0]
    assert not verdicts[1].reliable and verdicts[1].reasons == (OUTSIDE_REFERENCE,), verdicts[1]
    assert verdicts[1].domain_auc >= DOMAIN_AUC_CUTOFF > verdicts[0].domain_auc
    assert verdicts[1].as_row()["unreliable_reasons"] == [OUTSIDE_REFERENCE]


def test_an_unseen_category_lies_outside_the_reference():
    ref, ana = _car_loan()
    chunk = ana.head(CHUNK).assign(salary_range="200K+ €")  # a value the reference never had
    assert domain_auc(fit_domain(ref, FEATURES), chunk) >= DOMAIN_AUC_CUTOFF
    # told it is a number-free category column, not inferred: the same answer
    assert domain_auc(fit_domain(ref, FEATURES, categorical={"salary_range", "size_of_downpayment",
                                                             "repaid_loan_on_prev_car"}), chunk) >= DOMAIN_AUC_CUTOFF  # fmt: skip


def test_domain_auc_is_deterministic_and_bounded_by_its_sample():
    ref, ana = _car_loan()
    domain = fit_domain(ref, FEATURES, max_rows=500, seed=3)
    assert len(domain.matrix) == 500
    chunk = ana.head(CHUNK)
    assert domain_auc(domain, chunk) == domain_auc(domain, chunk)
    assert math.isnan(domain_auc(domain, chunk.head(5)))  # too few rows to tell anything


def test_a_band_across_the_threshold_is_unreliable():
    ref, ana = _car_loan()
    (estimate, error), = _cbpe(ref, [ana.head(CHUNK)]).itertuples(index=False)  # fmt: skip
    near = estimate - 2 * error  # inside the ±3 sampling errors band
    verdict = judge_estimate(estimate, error, near, 0.5)
    assert not verdict.reliable and verdict.reasons == (BAND_ACROSS_THRESHOLD,)
    assert verdict.band[0] < near < verdict.band[1]
    assert judge_estimate(estimate, error, estimate - 4 * error, 0.5).reliable


@cache
def _car_price() -> tuple[np.ndarray, float]:
    """The car price reference's residuals and its target's variance."""
    ref, _, _ = nml.load_synthetic_car_price_dataset()
    return (ref["y_true"] - ref["y_pred"]).to_numpy(), float(np.var(ref["y_true"]))


@pytest.mark.parametrize(
    ("metric", "kwargs"),
    [
        ("roc_auc", {"estimate": 0.97, "positive_rate": 0.5}),
        ("roc_auc", {"estimate": 0.8, "positive_rate": 0.1}),
        ("accuracy", {"estimate": 0.9}),
        ("f1", {"estimate": 0.9, "positive_rate": 0.3}),
        ("mae", {"residuals": None}),
        ("rmse", {"residuals": None}),
        ("mse", {"residuals": None}),
        ("r2", {"residuals": None}),
    ],
)
def test_labels_needed_shrink_as_the_margin_grows_and_never_exceed_the_chunk(metric, kwargs):
    if "residuals" in kwargs:
        residuals, variance = _car_price()
        kwargs = {"residuals": residuals, "target_variance": variance}
    # car price residuals are in the hundreds, their squares in the hundreds of thousands; r2 is a fraction
    scale = {"mae": 1000.0, "rmse": 1000.0, "mse": 1e6}.get(metric, 1.0)
    margins = [m * scale for m in (0.0, 0.002, 0.01, 0.03, 0.1, 0.3)]
    needed = [labels_needed(metric, m, 5000, **kwargs) for m in margins]
    assert needed[0] == 5000  # no margin: every row
    assert all(a >= b for a, b in zip(needed, needed[1:], strict=False)), needed
    assert needed[-1] < needed[2] <= 5000, needed
    assert all(2 <= n <= 5000 for n in needed)


def test_labels_needed_for_roc_auc_is_the_fewest_rows_that_reach_the_margin():
    from loopml.monitoring.reliability import _hanley_mcneil

    auc, rate, margin = 0.9, 0.3, 0.02
    n = labels_needed("roc_auc", margin, 100_000, estimate=auc, positive_rate=rate)
    assert 3 * _hanley_mcneil(auc, rate * n, (1 - rate) * n) <= margin
    assert 3 * _hanley_mcneil(auc, rate * (n - 1), (1 - rate) * (n - 1)) > margin
    # a rarer class needs more rows for the same margin
    assert labels_needed("roc_auc", margin, 100_000, estimate=auc, positive_rate=0.05) > n


def test_the_label_sample_is_stratified_deterministic_and_of_the_asked_size():
    _, ana = _car_loan()
    chunk = ana.head(CHUNK)
    deciles = label_strata(chunk["y_pred_proba"], classes=False)
    ids = sample_for_labels(chunk["id"], deciles, 100, seed=7)
    assert len(ids) == 100 and ids.is_unique and ids.isin(chunk["id"]).all()
    per_decile = deciles[chunk["id"].isin(ids).to_numpy()].value_counts()
    assert len(per_decile) == 10 and (per_decile == 10).all(), per_decile  # deciles hold equal rows
    assert ids.tolist() == sample_for_labels(chunk["id"], deciles, 100, seed=7).tolist()
    assert ids.tolist() != sample_for_labels(chunk["id"], deciles, 100, seed=8).tolist()

    classes = label_strata(chunk["y_pred"], classes=True)
    picked = sample_for_labels(chunk["id"], classes, 50, seed=0)
    share = classes[chunk["id"].isin(picked).to_numpy()].value_counts()
    expected = classes.value_counts(normalize=True) * 50
    assert len(picked) == 50 and (share - expected).abs().max() <= 1, (share, expected)
    assert len(sample_for_labels(chunk["id"], classes, 10**6)) == len(chunk)  # never more than there are


def test_a_small_stratum_is_not_left_out_of_the_sample():
    ids = pd.Series(range(1000))
    strata = pd.Series(["common"] * 995 + ["rare"] * 5)
    picked = sample_for_labels(ids, strata, 20, seed=0)
    assert len(picked) == 20 and (picked >= 995).sum() == 1
