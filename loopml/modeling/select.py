"""Pick the winner the way the spec says: eligible under the latency and size budgets, then best on
the metric; with an interpretability preference, an interpretable model within 1% of the best wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopml.modeling.candidates import INTERPRETABLE
from loopml.spec import ProblemSpec

INTERPRETABILITY_SLACK = 0.01


@dataclass
class Selection:
    """The chosen candidate (index into the summaries), the table every candidate was judged in, and why."""

    winner: int
    table: list[dict[str, Any]]
    reason: str


def select(summaries: list[dict[str, Any]], spec: ProblemSpec) -> Selection:
    """The best candidate on the validation metric among those within the spec's latency and size budgets
    (a more interpretable one wins a near tie when the spec prefers interpretability)."""
    c = spec.constraints
    sign = 1 if spec.metric.higher_is_better else -1
    table = []
    for s in summaries:
        excluded = []
        if c.p99_latency_ms is not None and s["latency_p99_ms"] > c.p99_latency_ms:
            excluded.append(f"p99 {s['latency_p99_ms']:.3f} ms over the {c.p99_latency_ms:g} ms budget")
        if c.max_model_mb is not None and s["size_mb"] > c.max_model_mb:
            excluded.append(f"size {s['size_mb']:.2f} MB over the {c.max_model_mb:g} MB cap")
        table.append({**{k: v for k, v in s.items() if k != "trials"}, "eligible": not excluded, "excluded_because": excluded})
    eligible = [i for i, row in enumerate(table) if row["eligible"]]
    if not eligible:
        raise ValueError("no candidate meets the spec's constraints: " + "; ".join(
            f"{row['family']}: {', '.join(row['excluded_because'])}" for row in table))
    best = max(eligible, key=lambda i: sign * table[i]["valid_score"])
    reason = f"{table[best]['family']} has the best validation {spec.metric.name} ({table[best]['valid_score']:.4f}) among eligible candidates"
    if c.interpretability == "prefer" and not INTERPRETABLE.get(table[best]["family"], False):
        readable = [i for i in eligible if INTERPRETABLE.get(table[i]["family"], False)]
        if readable:
            alt = max(readable, key=lambda i: sign * table[i]["valid_score"])
            gap = abs(table[best]["valid_score"] - table[alt]["valid_score"])
            if gap <= INTERPRETABILITY_SLACK * max(abs(table[best]["valid_score"]), 1e-9):
                reason = (f"{table[alt]['family']} is interpretable and within {INTERPRETABILITY_SLACK:.0%} of "
                          f"{table[best]['family']} on validation {spec.metric.name}; the spec prefers interpretability")
                best = alt
    skipped = [f"{row['family']} ({', '.join(row['excluded_because'])})" for row in table if not row["eligible"]]
    if skipped:
        reason += "; not eligible: " + "; ".join(skipped)
    for i, row in enumerate(table):
        row["selected"] = i == best
    return Selection(best, table, reason)
