"""Alerts: the spec's rules applied to a MonitoringResult, and their delivery to an SNS topic."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from loopml.monitoring.result import MonitoringResult, plain
from loopml.spec import ProblemSpec

__all__ = ["Alert", "AlertKind", "DATA_KINDS", "evaluate_alerts", "publish_alerts", "format_alerts"]

AlertKind = Literal[
    "estimated_below_threshold", "realized_below_threshold", "multivariate_drift", "too_many_drifting_features",
    "monitoring_failed", "missing_values", "unseen_categories", "out_of_range", "latency_above_limit",
    "cost_above_budget",
    # about the data itself: a window with nothing (or not everything) to judge is not an all-clear
    "no_data", "partly_scored", "mixed_versions",
]
DATA_KINDS = ("no_data", "partly_scored", "mixed_versions")
QUALITY_KINDS = ("missing_values", "unseen_categories", "out_of_range")
MAX_LISTED = 20  # an SNS message is read by people: list the first alerts, count the rest


@dataclass(frozen=True)
class Alert:
    """One thing a monitoring run found wrong in a chunk (or run-wide): its kind, the value and threshold."""

    kind: AlertKind
    chunk: str
    value: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (NaN as None)."""
        return {k: plain(v) for k, v in asdict(self).items()}


def evaluate_alerts(result: MonitoringResult, spec: ProblemSpec) -> list[Alert]:
    """Every alert the spec asks for, chunk by chunk in time order, then the run-wide ones.

    "below threshold" means "fails the spec's metric threshold": for error metrics (mae, rmse...)
    that is a value above it. A chunk marked ``too_small`` raises nothing: its numbers are shown,
    not trusted. A calculator that failed raises ``monitoring_failed`` whatever the chunk size.
    """
    alerts: list[Alert] = [_failed(f) for f in result.failures if f.get("chunk") is None]
    chunks = result.chunks.sort_values("chunk_index") if not result.chunks.empty else result.chunks
    quality = _quality_by_chunk(result, spec)
    failed = _failures_by_chunk(result)
    for _, row in chunks.iterrows():
        chunk = str(row["chunk"])
        alerts += [_failed(f) for f in failed.get(chunk, [])]
        if bool(row.get("too_small", False)):
            continue
        alerts += _chunk_alerts(row, chunk, spec)
        alerts += quality.get(chunk, [])
    if result.cost:
        alerts += [Alert("cost_above_budget", "all", a["value"], a["limit"], a["message"])
                   for a in result.cost.get("over_budget", [])]  # fmt: skip
    return alerts


def _chunk_alerts(row: pd.Series, chunk: str, spec: ProblemSpec) -> list[Alert]:
    alerts: list[Alert] = []
    metric = spec.metric
    for kind, column in (("estimated_below_threshold", "estimated"), ("realized_below_threshold", "realized")):
        if bool(row[f"{column}_alert"]):
            alerts.append(
                Alert(kind, chunk, float(row[column]), metric.threshold,
                      f"chunk {chunk}: {column} {metric.name} {row[column]:.4g} fails {metric}")
            )  # fmt: skip
    if spec.monitoring.alert_on_multivariate_drift and bool(row["multivariate_alert"]):
        alerts.append(_multivariate(row, chunk))
    n = int(row["n_drifting_features"]) if pd.notna(row["n_drifting_features"]) else 0
    limit = spec.monitoring.max_drifting_features
    if n > limit:
        names = ", ".join(row["drifting_features"])
        alerts.append(
            Alert("too_many_drifting_features", chunk, float(n), float(limit),
                  f"chunk {chunk}: {n} feature(s) drift (more than {limit}): {names}")
        )  # fmt: skip
    p99, limit_ms = row.get("latency_p99_ms"), spec.constraints.p99_latency_ms
    if limit_ms is not None and p99 is not None and pd.notna(p99) and float(p99) > limit_ms:
        alerts.append(
            Alert("latency_above_limit", chunk, float(p99), float(limit_ms),
                  f"chunk {chunk}: API p99 latency {float(p99):.1f} ms above constraints.p99_latency_ms={limit_ms:g}")
        )  # fmt: skip
    return alerts


def _failed(failure: dict[str, Any]) -> Alert:
    where = failure.get("chunk") or "all"
    return Alert("monitoring_failed", str(where), None, None,
                 f"{'chunk ' + str(where) + ': ' if failure.get('chunk') else ''}{failure['step']} failed: {failure['error']}")  # fmt: skip


def _failures_by_chunk(result: MonitoringResult) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in result.failures:
        if f.get("chunk") is not None:
            out.setdefault(str(f["chunk"]), []).append(f)
    return out


QUALITY_RULES = {  # kind -> (rate column, spec field, what it means)
    "missing_values": ("missing_rate", "max_missing_rate_increase", "missing-value rate"),
    "unseen_categories": ("unseen_rate", "max_unseen_rate", "share of unseen categories"),
    "out_of_range": ("out_of_range_rate", "max_out_of_range_rate", "share of values outside the reference range"),
}


def _quality_by_chunk(result: MonitoringResult, spec: ProblemSpec) -> dict[str, list[Alert]]:
    """One alert per chunk and problem kind, naming the features (a chunk with 7 bad features is one alert)."""
    q = result.quality
    out: dict[str, list[Alert]] = {}
    if q.empty or "problems" not in q.columns:
        return out
    for chunk, rows in q.groupby("chunk", sort=False):
        for kind in QUALITY_KINDS:
            bad = rows[rows["problems"].map(lambda p, k=kind: isinstance(p, list) and k in p)]
            if bad.empty:
                continue
            rate_col, field, what = QUALITY_RULES[kind]
            worst = bad.loc[bad[rate_col].astype(float).idxmax()]
            limit = float(getattr(spec.monitoring.quality, field))
            if kind == "missing_values":  # the rule is relative to the reference's own missing rate
                limit += float(worst["reference_missing_rate"])
            names = ", ".join(f"{r['feature']} {float(r[rate_col]):.1%}" for _, r in bad.iterrows())
            out.setdefault(str(chunk), []).append(
                Alert(kind, str(chunk), float(worst[rate_col]), limit,
                      f"chunk {chunk}: {what} above monitoring.quality.{field}: {names}")
            )
    return out


def _multivariate(row: pd.Series, chunk: str) -> Alert:
    value, upper = row["reconstruction_error"], row["reconstruction_upper_threshold"]
    return Alert(
        "multivariate_drift", chunk, plain(value), plain(upper),
        f"chunk {chunk}: multivariate drift, reconstruction error {value:.4g} outside the reference range (upper {upper:.4g})",
    )  # fmt: skip


def format_alerts(alerts: list[Alert], model: str = "model") -> tuple[str, str]:
    """(subject, body) of the notification: short enough for an email or a chat message."""
    kinds = sorted({a.kind for a in alerts})
    subject = f"loopml: {len(alerts)} alert(s) for {model}"[:100]  # SNS subjects are at most 100 characters
    lines = [f"{len(alerts)} monitoring alert(s) for {model} ({', '.join(kinds)}):"]
    lines += [f"- {a.message}" for a in alerts[:MAX_LISTED]]
    if len(alerts) > MAX_LISTED:
        lines.append(f"... and {len(alerts) - MAX_LISTED} more (see the monitoring report)")
    return subject, "\n".join(lines)


def publish_alerts(alerts: list[Alert], topic_arn: str, sns_client: Any, model: str = "model") -> str | None:
    """Publish one message summarising the alerts; returns its MessageId, or None when there is nothing to say."""
    if not alerts:
        return None
    subject, body = format_alerts(alerts, model)
    response = sns_client.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    return str(response["MessageId"])
