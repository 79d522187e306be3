"""Metaflow card components for a training run: selection table, test metrics, importance, fairness."""

from __future__ import annotations

from typing import Any

from loopml.spec import ProblemSpec


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def importance_figure(importance: list[dict[str, float]]):
    """A bar chart of the permutation importance (the 15 features that matter most), for the training card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(importance[:15]))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    ax.barh([r["feature"] for r in rows], [r["mean"] for r in rows], xerr=[r["std"] for r in rows], color="#4C78A8")
    ax.set_xlabel("drop in the success metric when the feature is shuffled (test set)")
    ax.set_title("Permutation importance")
    fig.tight_layout()
    return fig


def training_card(selection: Any, evaluation: Any, spec: ProblemSpec) -> list[Any]:
    """TrainFlow's card: the candidates and why one was selected, the test metrics, the importance chart."""
    from metaflow.cards import Image, Markdown, Table

    cols = ["family", "valid_score", "latency_p50_ms", "latency_p99_ms", "size_mb", "served_as", "eligible", "selected"]
    table = [[_fmt(row.get(c)) for c in cols] + ["; ".join(row["excluded_because"])] for row in selection.table]
    parts: list[Any] = [
        Markdown(f"# {spec.name}: training run\nSuccess metric: **{spec.metric}**"),
        Markdown("## Candidate selection\n" + selection.reason),
        Table(table, headers=[c.replace("_", " ") for c in cols] + ["excluded because"]),
        Markdown("## Test metrics"),
        Table([[k, _fmt(v)] for k, v in evaluation.metrics.items()], headers=["metric", "value"]),
        Markdown("## Explanation"),
        Image.from_matplotlib(importance_figure(evaluation.importance)),
    ]
    if evaluation.warnings:
        parts.append(Markdown("## Warnings about the data\n" + "\n".join(f"- {w['message']}" for w in evaluation.warnings)))
    f = evaluation.fairness
    if f is not None:
        verdict = "within" if f["passes"] else "**over**"
        gap = ("no gap: fewer than two groups large enough to judge" if f["gap"] is None
               else f"{f['gap']:.4f}, {verdict} the allowed {f['max_gap']:g}")
        parts.append(Markdown(f"## Fairness across `{f['group']}`\nLargest gap in {f['metric']}: {gap}"))
        parts.append(Table([[g, v["n"], _fmt(v["value"]), v.get("note", "")] for g, v in f["per_group"].items()],
                           headers=["group", "rows", f["metric"], "note"]))
    return parts


def monitoring_card(run: Any) -> list[Any]:
    """A compact card: per-chunk estimated vs realized performance, alerts, the decision, the report."""
    from metaflow.cards import Markdown, Table

    r = run.results
    rows = [[c["chunk"], c["n_rows"], _fmt(c["estimated"]), _fmt(c["realized"]), c["n_drifting_features"],
             "yes" if c["multivariate_alert"] else "", "yes" if c["estimated_alert"] else ""] for c in r["chunks"]]
    d = run.decision
    return [
        Markdown(f"# Monitoring: model version {run.version}\nWindow {r['window']['start']} to {r['window']['end']}, "
                 f"{r['rows']} scored rows. Full report: `{run.report_url}`"),
        Table(rows, headers=["chunk", "rows", f"estimated {r['metric']}", f"realized {r['metric']}",
                             "drifting features", "multivariate drift", "estimate alert"]),
        Markdown(f"## Alerts ({len(run.alerts)})\n" + "\n".join(f"- {a['message']}" for a in run.alerts[:20])),
        Markdown(f"## Decision\nRetrain: **{d['retrain']}**\n" + "\n".join(f"- {x}" for x in d.get("reasons", []))),
        Markdown("## Messages\n" + ("\n".join(f"- {m}" for m in r["messages"]) or "none")),
    ]
