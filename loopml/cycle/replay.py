"""Replay the scheduled cycle over a date range: one CycleFlow run per cycle, in order.

On AWS the same CycleFlow runs on its one ``@schedule`` (Step Functions or Argo), or the scheduled
Lambda calls :func:`loopml.cycle.cycle.run_cycle`; here each cycle of the replay is a real CycleFlow run
through Metaflow, with the replayed day's end as the cycle's clock (``--as-of``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from loopml.cycle.cycle import describe, replay_as_of
from loopml.runtime.flowrun import run_flow


def cycle_days(start: date, end: date, every_days: int) -> list[tuple[date, date]]:
    """(first, last) scored dates of each cycle: ``every_days`` at a time, the last one cut at ``end``."""
    if every_days < 1:
        raise ValueError("--every must be at least 1 day")
    out, day = [], start
    while day <= end:
        last = min(day + timedelta(days=every_days - 1), end)
        out.append((day, last))
        day = last + timedelta(days=1)
    return out


def replay(spec_path: str, store_uri: str, start: date, end: date, every_days: int = 7, window_days: int = 28,
           retrain: bool = True, show_output: bool = False) -> Iterator[str]:
    """Run the cycle for each (first, last) of :func:`cycle_days` and yield what it did, line by line."""
    if window_days < 1:
        raise ValueError("--window must be at least 1 day")
    for first, last in cycle_days(start, end, every_days):
        run = run_flow("cycle_flow", show_output, spec=spec_path, store=store_uri, day=last,
                       days=(last - first).days + 1, window=window_days, as_of=replay_as_of(last).isoformat(),
                       retrain_on="cycle" if retrain else "no")
        yield from describe(run.data.summary)
