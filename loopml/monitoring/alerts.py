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
    # about the data itself: a window with nothing (or not everything) to judge is not an all-clear
    "no_data", "partly_scored", "mixed_versions",
]
DATA_KINDS = ("no_data", "partly_scored", "mixed_versions")
MAX_LISTED = 20  # an SNS message is read by people: list the first alerts, count the rest


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    chunk: str
    value: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {k: plain(v) for k, v in asdict(self).items()}


def evaluate_alerts(result: MonitoringResult, spec: ProblemSpec) -> list[Alert]:
    """Every alert the spec asks for, chunk by chunk in time order.

    "below threshold" means "fails the spec's metric threshold": for error metrics (mae, rmse...)
    that is a value above it.
    """
    alerts: list[Alert] = []
    chunks = result.chunks.sort_values("chunk_index") if not result.chunks.empty else result.chunks
    metric = spec.metric
    for _, row in chunks.iterrows():
        chunk = str(row["chunk"])
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
                      f"chunk {chunk}: {n} features drift (more than {limit}): {names}")
            )  # fmt: skip
    return alerts


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
