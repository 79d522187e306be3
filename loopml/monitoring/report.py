"""render_report(): one self-contained HTML file (plotly.js inlined once; these machines may be offline)."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from loopml.monitoring.alerts import Alert, evaluate_alerts
from loopml.monitoring.figures import build_figures, chunk_labels
from loopml.monitoring.result import MonitoringResult
from loopml.spec import ProblemSpec

__all__ = ["render_report"]

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1280px;margin:0 auto;padding:24px 32px}
h1{margin:0 0 4px;font-size:26px} h2{margin:32px 0 12px;font-size:20px;border-bottom:2px solid #e3e5e8;padding-bottom:6px}
.sub{color:#666;margin:0 0 20px}
.cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:#fff;border-radius:8px;padding:14px 18px;min-width:170px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .n{font-size:28px;font-weight:600} .card .l{color:#666;font-size:13px}
.card.bad .n{color:#c0392b} .card.ok .n{color:#1e8449}
.panel{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:16px;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:5px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#fafbfc;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
td.bad{color:#c0392b;font-weight:600} .muted{color:#888}
ul.msgs li{margin:4px 0} ul.alerts li{margin:3px 0;color:#922b21}
"""


def render_report(result: MonitoringResult, spec: ProblemSpec, title: str, model_version: str,
                  alerts: list[Alert] | None = None) -> str:
    """The whole monitoring run as one HTML page: summary, performance, drift, data quality, messages.
    Pass the run's ``alerts`` when they are already evaluated; otherwise the spec's rules are applied here."""
    figures = _figures(result)
    alerts = evaluate_alerts(result, spec) if alerts is None else alerts
    sections = [
        f"<h1>{escape(title)}</h1>",
        f"<p class='sub'>{escape(spec.name)} · model version <b>{escape(model_version)}</b> · {escape(spec.task)} · "
        f"success metric <b>{escape(str(spec.metric))}</b> · {len(result.chunks)} chunk(s)</p>",
        _summary(result, alerts),
        "<h2>Performance: estimated vs realized</h2>",
        figures.get("performance", "<p class='muted'>No performance could be computed.</p>"),
        _chunk_table(result),
        "<h2>Multivariate drift</h2>",
        figures.get("multivariate_drift", "<p class='muted'>No multivariate drift could be computed.</p>"),
        "<h2>Univariate drift per feature</h2>",
        figures.get("univariate_drift", "<p class='muted'>No univariate drift could be computed.</p>"),
        "<h2>Data quality</h2>",
        _quality_table(result),
        "<h2>API latency</h2>",
        figures.get("latency", "<p class='muted'>No API traffic with measured latency in this window.</p>"),
        "<h2>Cost</h2>",
        _cost(result),
        figures.get("cost", ""),
        "<h2>Calibration of the reference</h2>",
        _calibration(result),
        figures.get("calibration", ""),
        "<h2>Messages</h2>",
        _messages(result),
    ]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>"
    )


def _figures(result: MonitoringResult) -> dict[str, str]:
    """Each figure as an HTML div; plotly.js is inlined with the first one only."""
    out: dict[str, str] = {}
    for i, (name, fig) in enumerate(build_figures(result).items()):
        html = fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
        out[name] = f"<div class='panel'>{html}</div>"
    return out


def _summary(result: MonitoringResult, alerts: list[Alert]) -> str:
    c = result.chunks
    count = lambda col: int(c[col].fillna(False).astype(bool).sum()) if not c.empty else 0  # noqa: E731
    drifting = result.drifting_features
    cards = [
        ("chunks", len(c), None),
        ("estimated below threshold", count("estimated_alert"), True),
        ("realized below threshold", count("realized_alert"), True),
        ("multivariate drift", count("multivariate_alert"), True),
        ("drifting features", len(drifting), True),
        ("failed steps", len(result.failures), True),
        ("chunks too small to judge", int(c["too_small"].fillna(False).astype(bool).sum()) if not c.empty else 0, True),
        ("messages", len(result.messages), True),
    ]
    html = ["<div class='cards'>"]
    for label, n, judged in cards:
        cls = "" if judged is None else ("bad" if n else "ok")
        html.append(f"<div class='card {cls}'><div class='n'>{n}</div><div class='l'>{escape(label)}</div></div>")
    html.append("</div>")
    if drifting:
        html.append(f"<p><b>Drifting features</b> (most chunks first): {escape(', '.join(drifting))}</p>")
    if alerts:
        items = "".join(f"<li>{escape(a.message)}</li>" for a in alerts[:30])
        more = f"<li class='muted'>… and {len(alerts) - 30} more</li>" if len(alerts) > 30 else ""
        html.append(f"<h2>Alerts ({len(alerts)})</h2><ul class='alerts'>{items}{more}</ul>")
    else:
        html.append("<h2>Alerts</h2><p>No alerts.</p>")
    return "\n".join(html)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "<span class='muted'>–</span>"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _count(value: Any, bad: bool = False) -> str:
    text = "<span class='muted'>–</span>" if pd.isna(value) else f"{int(value):,}"
    return f"<td class='bad'>{text}</td>" if bad else f"<td>{text}</td>"


def _cell(value: Any, bad: bool = False) -> str:
    return f"<td class='bad'>{_fmt(value)}</td>" if bad else f"<td>{_fmt(value)}</td>"


def _chunk_table(result: MonitoringResult) -> str:
    c = result.chunks
    if c.empty:
        return ""
    head = [
        "chunk",
        "rows",
        "labelled",
        "estimated",
        "realized",
        "est. − real.",
        "reconstruction error",
        "drifting features",
    ]
    rows = []
    for label, (_, r) in zip(chunk_labels(c), c.iterrows(), strict=True):
        rows.append(
            "<tr>"
            + _cell(label + (" (too small)" if bool(r.get("too_small", False)) else "")) + _count(r["n_rows"])
            + _count(r["n_labelled"])
            + _cell(r["estimated"], bool(r["estimated_alert"])) + _cell(r["realized"], bool(r["realized_alert"]))
            + _cell(r["estimation_error"]) + _cell(r["reconstruction_error"], bool(r["multivariate_alert"]))
            + f"<td style='text-align:left'>{escape(', '.join(r['drifting_features'])) or '–'}</td>"
            + "</tr>"
        )  # fmt: skip
    ths = "".join(f"<th>{escape(h)}</th>" for h in head[:-1]) + f"<th style='text-align:left'>{head[-1]}</th>"
    return f"<div class='panel'><table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _quality_table(result: MonitoringResult) -> str:
    """One row per feature over all chunks: the per-chunk detail is in MonitoringResult.quality."""
    q = result.quality
    if q.empty:
        return "<p class='muted'>No data quality results.</p>"
    agg = q.groupby("feature", sort=False).agg(
        rows=("n_rows", "sum"),
        missing=("missing", "sum"),
        max_missing_rate=("missing_rate", "max"),
        unseen=("unseen", lambda s: s.sum(min_count=1)),
        out_of_range=("out_of_range", lambda s: s.sum(min_count=1)),
        chunks_alerting=("alert", "sum"),
    )
    head = [
        "feature",
        "rows",
        "missing",
        "max missing rate / chunk",
        "unseen values",
        "out of range",
        "chunks with alert",
    ]
    rows = []
    for feature, r in agg.iterrows():
        rows.append(
            "<tr>" + _cell(feature) + _count(r["rows"])
            + _count(r["missing"], r["missing"] > 0) + _cell(float(r["max_missing_rate"]), r["max_missing_rate"] > 0)
            + _count(r["unseen"], r["unseen"] > 0) + _count(r["out_of_range"], r["out_of_range"] > 0)
            + _count(r["chunks_alerting"], r["chunks_alerting"] > 0) + "</tr>"
        )  # fmt: skip
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<div class='panel'><table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _messages(result: MonitoringResult) -> str:
    if not result.messages:
        return "<p class='muted'>None: every step ran on complete data.</p>"
    return "<ul class='msgs'>" + "".join(f"<li>{escape(m)}</li>" for m in result.messages) + "</ul>"


def _cost(result: MonitoringResult) -> str:
    cost = result.cost
    if not cost:
        return "<p class='muted'>No cost estimate.</p>"
    money = lambda v, d=4: "–" if v is None else f"${v:,.{d}f}"  # noqa: E731
    rows = [
        ("API predictions in the window", f"{cost['api_predictions']:,}"),
        ("API cost per 1,000 predictions", money(cost["api_usd_per_1000"], 5)),
        ("cost per day (API + batch runs)", money(cost["usd_per_day"])),
        ("projected monthly cost", money(cost["projected_monthly_usd"], 2)),
        ("this monitoring run", money(cost["monitoring_run_usd"], 6)),
        ("budget", escape(", ".join(f"{k} ${v:g}" for k, v in (cost.get("budget") or {}).items() if v is not None)) or "none set"),
    ]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    over = "".join(f"<li>{escape(o['message'])}</li>" for o in cost.get("over_budget", []))
    source = sorted(set(cost["source"].values()))
    note = (f"<p class='muted'>Lambda {cost['lambda_memory_mb']} MB; prices: {escape('; '.join(source))} "
            f"(override in monitoring.cost.prices or LOOPML_PRICES).</p>")  # fmt: skip
    return (f"<div class='panel'><table><tbody>{body}</tbody></table></div>"
            + (f"<ul class='alerts'>{over}</ul>" if over else "") + note)  # fmt: skip


def _calibration(result: MonitoringResult) -> str:
    return _at_training(result.training) + _on_reference(result.calibration)


def _on_reference(cal: dict[str, Any] | None) -> str:
    if not cal:
        return "<p class='muted'>No calibration diagnostics (regression, or no probabilities).</p>"
    return (f"<p>On the reference ({cal['rows']:,} held-out rows the served model never trained on): "
            f"Brier score <b>{cal['brier']:.4f}</b>, expected calibration error <b>{cal['ece']:.4f}</b> "
            f"({escape(cal['binned'])}). CBPE's estimates are only as good as this calibration.</p>")  # fmt: skip


def _at_training(training: dict[str, Any] | None) -> str:
    """What training stored with the served version: its calibration and its warnings about the reference."""
    if not training:
        return ""
    version = escape(str(training["version"]))
    if not training.get("stored"):
        return f"<p class='muted'>Version {version} was registered without calibration diagnostics (before they were stored).</p>"
    cal = training.get("calibration")
    text = (f"<p>Stored with version {version} at training: Brier score <b>{cal['brier']:.4f}</b>, expected "
            f"calibration error <b>{cal['ece']:.4f}</b> over {cal['rows']:,} reference rows.</p>" if cal
            else f"<p class='muted'>Stored with version {version} at training: no probabilities to calibrate.</p>")  # fmt: skip
    warned = "".join(f"<li>{escape(w['message'])}</li>" for w in training.get("warnings") or [])
    return text + (f"<ul class='alerts'>{warned}</ul>" if warned else "")
