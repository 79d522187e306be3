"""Plotly figures of a MonitoringResult: performance, multivariate drift, univariate drift per feature."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from loopml.monitoring.result import MonitoringResult

__all__ = ["build_figures", "chunk_labels"]

BLUE, GREEN, RED, GREY = "#1f77b4", "#2ca02c", "#d62728", "#7f7f7f"
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=60), font=dict(size=13))


def chunk_labels(chunks: pd.DataFrame) -> list[str]:
    """Dates read better than row ranges: use the chunk start date when the data has a timestamp."""
    labels = []
    for _, row in chunks.iterrows():
        start = row.get("start")
        labels.append(pd.Timestamp(start).strftime("%Y-%m-%d") if pd.notna(start) else str(row["chunk"]))
    return labels


def build_figures(result: MonitoringResult) -> dict[str, go.Figure]:
    """name -> plotly Figure, for each view the result has data for (none when it has no chunks)."""
    chunks = result.chunks
    if chunks.empty:
        return {}
    figures = {"performance": _performance(result)}
    if chunks["reconstruction_error"].notna().any():
        figures["multivariate_drift"] = _multivariate(result)
    if not result.drift.empty:
        figures["univariate_drift"] = _univariate(result)
    if "latency_p99_ms" in chunks.columns and chunks["latency_p99_ms"].notna().any():
        figures["latency"] = _latency(result)
    if result.cost and result.cost.get("days"):
        figures["cost"] = _cost(result)
    if result.calibration and result.calibration.get("bins"):
        figures["calibration"] = _calibration(result)
    return figures


def _latency(result: MonitoringResult) -> go.Figure:
    c = result.chunks
    x = chunk_labels(c)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=c["latency_p50_ms"], mode="lines+markers", name="p50", line=dict(color=BLUE)))
    fig.add_trace(go.Scatter(x=x, y=c["latency_p99_ms"], mode="lines+markers", name="p99", line=dict(color=RED)))
    if result.latency_limit_ms is not None:
        fig.add_hline(y=result.latency_limit_ms, line=dict(color=RED, dash="dash"),
                      annotation_text=f"p99 limit {result.latency_limit_ms:g} ms", annotation_position="top left")  # fmt: skip
    fig.update_layout(title="API latency per chunk (ms)", yaxis_title="ms", height=340, **LAYOUT)
    return fig


def _cost(result: MonitoringResult) -> go.Figure:
    assert result.cost is not None
    days = pd.DataFrame(result.cost["days"])
    fig = go.Figure()
    fig.add_trace(go.Bar(x=days["day"], y=days["api_usd"], name="API (Lambda + API Gateway)", marker_color=BLUE))
    fig.add_trace(go.Bar(x=days["day"], y=days["batch_usd"], name="batch runs", marker_color=GREY))
    budget = (result.cost.get("budget") or {}).get("monthly_usd")
    if budget:
        from loopml.monitoring.cost import DAYS_PER_MONTH

        fig.add_hline(y=budget / DAYS_PER_MONTH, line=dict(color=RED, dash="dash"),
                      annotation_text=f"monthly budget / {DAYS_PER_MONTH} days", annotation_position="top left")  # fmt: skip
    fig.update_layout(title="Estimated cost per day (USD)", barmode="stack", yaxis_title="USD", height=340, **LAYOUT)
    return fig


def _calibration(result: MonitoringResult) -> go.Figure:
    assert result.calibration is not None
    bins = pd.DataFrame(result.calibration["bins"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line=dict(color=GREY, dash="dash")))
    fig.add_trace(go.Scatter(x=bins["mean_predicted"], y=bins["observed"], mode="lines+markers", name="reference",
                             text=[f"{n:,} rows" for n in bins["rows"]], line=dict(color=BLUE)))  # fmt: skip
    fig.update_layout(title=f"Reliability on the reference ({result.calibration['binned']})",
                      xaxis_title="predicted", yaxis_title="observed", height=360, **LAYOUT)  # fmt: skip
    return fig


def _performance(result: MonitoringResult) -> go.Figure:
    c = result.chunks
    x = chunk_labels(c)
    fig = go.Figure()
    if c["estimated_upper"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x, y=c["estimated_upper"], mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x, y=c["estimated_lower"], mode="lines", line=dict(width=0), fill="tonexty",
                fillcolor="rgba(31,119,180,0.15)", name="confidence band",
            )
        )  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=c["estimated"], mode="lines+markers", name="estimated", line=dict(color=BLUE)))
    if c["realized"].notna().any():
        fig.add_trace(
            go.Scatter(x=x, y=c["realized"], mode="lines+markers", name="realized", line=dict(color=GREEN, dash="dot"))
        )
    _alert_markers(fig, x, c["estimated"], c["estimated_alert"], "estimate fails threshold")
    _alert_markers(fig, x, c["realized"], c["realized_alert"], "realized fails threshold")
    fig.add_hline(
        y=result.threshold, line=dict(color=RED, dash="dash"),
        annotation_text=f"threshold {result.metric} {'≥' if result.higher_is_better else '≤'} {result.threshold:g}",
        annotation_position="top left",
    )  # fmt: skip
    fig.update_layout(title=f"Performance per chunk: {result.metric}", yaxis_title=result.metric, height=420, **LAYOUT)
    return fig


def _alert_markers(fig: go.Figure, x: list[str], y: pd.Series, alert: pd.Series, name: str) -> None:
    mask = alert.fillna(False).astype(bool).to_numpy()
    if mask.any():
        fig.add_trace(
            go.Scatter(
                x=[xi for xi, m in zip(x, mask, strict=True) if m], y=y[mask], mode="markers", name=name,
                marker=dict(color=RED, size=11, symbol="x"),
            )
        )  # fmt: skip


def _multivariate(result: MonitoringResult) -> go.Figure:
    c = result.chunks
    x = chunk_labels(c)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x, y=c["reconstruction_error"], mode="lines+markers", name="reconstruction error", line=dict(color=BLUE)
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=c["reconstruction_upper_threshold"],
            mode="lines",
            name="upper threshold",
            line=dict(color=RED, dash="dash"),
        )
    )
    if c["reconstruction_lower_threshold"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=c["reconstruction_lower_threshold"],
                mode="lines",
                name="lower threshold",
                line=dict(color=GREY, dash="dash"),
            )
        )
    _alert_markers(fig, x, c["reconstruction_error"], c["multivariate_alert"], "multivariate drift")
    fig.update_layout(title="Multivariate drift: PCA reconstruction error", height=380, **LAYOUT)
    return fig


def _univariate(result: MonitoringResult) -> go.Figure:
    """Small multiples, one panel per feature, drifting features first."""
    drift = result.drift
    labels = dict(zip(result.chunks["chunk"], chunk_labels(result.chunks), strict=True))
    features = list(dict.fromkeys([*result.drifting_features, *drift["feature"]]))
    cols = 2
    rows = math.ceil(len(features) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=features, vertical_spacing=min(0.3 / max(rows, 1), 0.08))
    for i, feature in enumerate(features):
        d = drift[drift["feature"] == feature].sort_values("chunk_index")
        x = [labels.get(k, str(k)) for k in d["chunk"]]
        r, col = i // cols + 1, i % cols + 1
        fig.add_trace(
            go.Scatter(
                x=x,
                y=d["value"],
                mode="lines+markers",
                line=dict(color=BLUE),
                showlegend=i == 0,
                name="drift effect (KS D / Cramér's V)",
            ),
            row=r,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=d["threshold"],
                mode="lines",
                line=dict(color=RED, dash="dash"),
                showlegend=i == 0,
                name="threshold",
            ),
            row=r,
            col=col,
        )
        mask = d["alert"].to_numpy(dtype=bool)
        if mask.any():
            fig.add_trace(
                go.Scatter(x=[xi for xi, m in zip(x, mask, strict=True) if m], y=d["value"][mask], mode="markers",
                           marker=dict(color=RED, size=9, symbol="x"), showlegend=False, name="drift"),
                row=r, col=col,
            )  # fmt: skip
    fig.update_layout(
        title="Univariate drift per feature: effect vs the threshold of a significant, material shift",
        height=max(260 * rows, 320) + 60,
        **{**LAYOUT, "margin": dict(l=60, r=20, t=100, b=60)},
    )
    return fig
