"""Replay the scheduled loop over a date range: score, monitor, and retrain when the decision says so.

On AWS the same cycle is ScoreFlow and MonitorFlow on their ``@schedule`` (Step Functions or Argo);
here each cycle runs the very same flows through Metaflow, so a day-by-day replay is the real thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from loopml.flowrun import run_flow
from loopml.jobs import retraining_data
from loopml.spec import ProblemSpec
from loopml.storage import from_uri


def replay(spec: ProblemSpec, spec_path: str, store_uri: str, start: date, end: date, every_days: int = 7,
           window_days: int = 28, retrain: bool = True, show_output: bool = False) -> Iterator[str]:
    if every_days < 1 or window_days < 1:
        raise ValueError("--every and --window must be at least 1 day")
    store = from_uri(store_uri)
    day = start
    while day <= end:
        last = min(day + timedelta(days=every_days - 1), end)
        first_window = max(start, last - timedelta(days=window_days - 1))
        as_of = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
        s = run_flow("score_flow", show_output, spec=spec_path, store=store_uri, start=day, end=last)
        m = run_flow("monitor_flow", show_output, spec=spec_path, store=store_uri, start=first_window, end=last,
                     as_of=as_of.isoformat())
        d = m.data.decision
        yield (f"{day}..{last}: scored {sum(s.data.partitions.values())} rows with v{s.data.version}; "
               f"monitoring {m.data.run_id}: {len(m.data.alerts)} alert(s); retrain: {d['retrain']}"
               + (f" ({'; '.join(d['reasons'])})" if d["reasons"] else ""))
        if d["retrain"] and retrain:
            data_uri = retraining_data(store, spec, until=last)
            t = run_flow("train_flow", show_output, spec=spec_path, store=store_uri, mode="challenger", data=data_uri,
                         until=as_of.replace(tzinfo=None).isoformat())
            outcome = t.data.challenge  # TrainFlow in challenger mode applies the gate itself
            yield (f"  retrained v{t.data.version} on {data_uri}: "
                   f"{'promoted' if outcome['promoted'] else 'kept as challenger'}: {outcome['why']}")
        day = last + timedelta(days=1)
