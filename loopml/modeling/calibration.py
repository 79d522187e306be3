"""Calibration diagnostics of a classifier on its reference (held-out) data, and whether that reference
can carry monitoring's estimates.

CBPE estimates performance from predicted probabilities: it is only as good as those probabilities'
calibration on data like the reference (NannyML recalibrates them with an isotonic fit on the reference
when that helps, so a well-sized reference matters twice). Training calls
:func:`training_diagnostics` on the test split (the reference) and stores the result with the version;
monitoring recomputes the same diagnostics from the reference it reads and shows them in the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.spec import ProblemSpec

__all__ = ["calibration_diagnostics", "reference_warnings", "training_diagnostics", "MIN_REFERENCE_CHUNKS",
           "REFERENCE_WARNINGS"]

MIN_REFERENCE_CHUNKS = 10  # a reference should hold this many chunks of monitoring.min_chunk_rows
POOR_ECE = 0.05  # expected calibration error above this: CBPE's estimates are at risk
REFERENCE_WARNINGS = ("small_reference", "poorly_calibrated")  # the kinds reference_warnings() gives


def calibration_diagnostics(y_true: Any, proba: Any, classes: list | None, bins: int = 10) -> dict[str, Any] | None:
    """Brier score, expected calibration error (ECE) and reliability bins.

    Binary: the positive class (``classes[-1]``) probability against the outcome. Multiclass: the
    top-label confidence against whether the top label was right, and the multiclass Brier score.
    ``None`` for regression (no probabilities) or when there is nothing to measure.
    """
    if proba is None or not classes:
        return None
    y = np.asarray(y_true, dtype=object)
    p = np.asarray(proba, dtype="float64")
    keep = np.array([v is not None and v == v for v in y]) & ~np.isnan(p).any(axis=1 if p.ndim == 2 else 0)
    y, p = y[keep], p[keep]
    if not len(y):
        return None
    if len(classes) == 2:
        positive = p[:, -1] if p.ndim == 2 else p
        outcome = np.array([v == classes[-1] for v in y], dtype="float64")
        brier = float(np.mean((positive - outcome) ** 2))
        confidence, correct, kind = positive, outcome, "positive class probability"
    else:
        onehot = np.array([[v == c for c in classes] for v in y], dtype="float64")
        brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
        top = p.argmax(axis=1)
        confidence = p[np.arange(len(p)), top]
        correct = onehot[np.arange(len(p)), top]
        kind = "top-label confidence"
    table, ece = _reliability(confidence, correct, bins)
    return {"rows": int(len(y)), "brier": brier, "ece": ece, "ece_noise_p99": _ece_noise(confidence, bins),
            "binned": kind, "bins": table}  # fmt: skip


def _ece_noise(confidence: np.ndarray, bins: int, draws: int = 1000) -> float:
    """The 99th percentile of the ECE a perfectly calibrated model would show on this many rows. A few
    hundred rows give an ECE of several hundredths by chance alone, so an ECE below this says nothing.

    Each bin's hits are drawn as Binomial(rows in the bin, their mean probability): the same mean as
    drawing every row with its own probability and a variance at least as large (so the noise is never
    understated), in draws x bins numbers instead of draws x rows."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = np.bincount(which, minlength=bins).astype("float64")
    used = rows > 0
    rows, mean = rows[used], (np.bincount(which, weights=confidence, minlength=bins)[used] / rows[used])
    rng = np.random.default_rng(0)  # the same reference always gets the same verdict
    hits = rng.binomial(rows.astype("int64"), mean, size=(draws, len(rows)))
    ece = (np.abs(hits / rows - mean) * rows).sum(axis=1) / rows.sum()
    return float(np.percentile(ece, 99))


def _reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[list[dict[str, float]], float]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        if not n:
            continue
        predicted, observed = float(confidence[m].mean()), float(correct[m].mean())
        ece += n / len(confidence) * abs(predicted - observed)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "rows": n,
                      "mean_predicted": predicted, "observed": observed})  # fmt: skip
    return table, float(ece)


def reference_warnings(spec: ProblemSpec, reference_rows: int, calibration: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Training-time warnings, in the shape of the other training warnings ({kind, column, message})."""
    out = []
    mon = spec.monitoring
    needed = MIN_REFERENCE_CHUNKS * mon.min_chunk_rows
    if reference_rows < needed:
        out.append({"kind": "small_reference", "column": None, "message": (
            f"the reference (held-out test split) has {reference_rows} rows, fewer than {MIN_REFERENCE_CHUNKS} chunks "
            f"x min_chunk_rows {mon.min_chunk_rows} = {needed}: monitoring's estimates and thresholds will be "
            f"unreliable; train on more data or lower monitoring.min_chunk_rows")})  # fmt: skip
    # poor beyond what the reference's size explains: a calibrated model's ECE on few rows is not zero
    limit = max(POOR_ECE, calibration.get("ece_noise_p99", 0.0)) if calibration else POOR_ECE
    if calibration and calibration["ece"] > limit:
        out.append({"kind": "poorly_calibrated", "column": None, "message": (
            f"predicted probabilities are poorly calibrated on the reference (expected calibration error "
            f"{calibration['ece']:.3f} > {limit:.3f}, Brier {calibration['brier']:.3f}): CBPE recalibrates them on the "
            f"reference, so its estimates rest on the reference's size ({reference_rows} rows)")})  # fmt: skip
    return out


def training_diagnostics(
    spec: ProblemSpec, y_true: Any, proba: Any, classes: list | None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What training stores with the version: (calibration diagnostics, reference warnings)."""
    calibration = calibration_diagnostics(y_true, proba, classes) if spec.is_classifier else None
    return calibration, reference_warnings(spec, len(y_true), calibration)
