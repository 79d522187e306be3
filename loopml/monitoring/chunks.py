"""Chunks: how an analysis window is cut, streamed in pieces, and aligned to whole periods.

loopml cuts the analysis data itself (by the spec's ``chunk_period`` over the timestamp, or every
``chunk_size`` rows) so that a window larger than memory can arrive in pieces (date partitions) and
each chunk is measured as soon as it is complete: memory holds one chunk, never the window.

A chunk with fewer than ``monitoring.min_chunk_rows`` rows is kept in the results (people see it)
but marked ``too_small``: it never raises an alert and never counts in a retraining decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pandas as pd

from loopml.spec import ProblemSpec

__all__ = ["Chunk", "ChunkStream", "align_window", "cycle_window", "PERIOD_FREQ"]

# pandas period aliases; "W" is a week from Monday to Sunday, as NannyML's PeriodBasedChunker cuts it.
PERIOD_FREQ = {"D": "D", "W": "W-SUN", "M": "M"}


def align_window(spec: ProblemSpec, start: date, end: date) -> tuple[date, date] | None:
    """The window of whole chunk periods for a run asked to cover ``[start, end]`` (inclusive days).

    The start moves back to its period's first day (the first chunk is complete, reading a few days
    from before ``start``); the end moves back to the last day of the last period that is over by
    ``end`` (a period still running is monitored next time, when it is complete). ``None`` when no
    whole period ends by ``end``: there is nothing complete to monitor yet. Specs that chunk by row
    count, or have no timestamp, get the window unchanged.
    """
    mon = spec.monitoring
    if start > end:
        raise ValueError(f"window start {start} is after its end {end}")
    if mon.chunk_size or mon.chunk_period is None or spec.timestamp is None:
        return start, end
    freq = PERIOD_FREQ[mon.chunk_period]
    first = pd.Period(start, freq=freq).start_time.date()
    last_period = pd.Period(end, freq=freq)
    if last_period.end_time.date() > end:
        last_period -= 1
    last = last_period.end_time.date()
    return (first, last) if last >= first else None


def cycle_window(spec: ProblemSpec, start: date, end: date) -> tuple[date, date]:
    """The window a scheduled cycle monitors when asked for ``[start, end]``: :func:`align_window`'s whole
    periods, so no chunk is cut short by where the window happens to begin or end. When no whole period
    ends by ``end`` (the window lies inside one running period), the running period from its first day:
    its one chunk is judged only once it holds ``min_chunk_rows``, as any chunk."""
    aligned = align_window(spec, start, end)
    if aligned is not None:
        return aligned
    # align_window gives None only when start and end share one running period: start at its first day
    return pd.Period(start, freq=PERIOD_FREQ[spec.monitoring.chunk_period or "D"]).start_time.date(), end


@dataclass
class Chunk:
    """One analysis chunk: its key (period or row range), position, time span, rows, and whether it is
    below ``min_chunk_rows`` (shown, but it raises no alert and decides nothing)."""

    key: str
    index: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    data: pd.DataFrame
    too_small: bool


class ChunkStream:
    """Feed it prepared pieces in time order; it yields each chunk once the chunk is complete.

    By period: a period is complete when a piece starts after it (pieces are date partitions, so a
    period's rows may span several). Rows that arrive for a period already measured are left out
    and counted (``late_rows``). By size: every ``size`` rows in arrival order.
    """

    def __init__(self, spec: ProblemSpec, timestamp: str | None, size: int | None) -> None:
        mon = spec.monitoring
        self.min_rows = mon.min_chunk_rows
        self.timestamp = timestamp
        self.freq = PERIOD_FREQ[mon.chunk_period] if (mon.chunk_period and timestamp and not size) else None
        self.size = size
        self._open: dict[pd.Period, list[pd.DataFrame]] = {}
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self._offset = 0
        self._index = 0
        self._done: pd.Period | None = None
        self.late_rows = 0

    @property
    def by_period(self) -> bool:
        """True when chunks are calendar periods, False when they are row counts."""
        return self.freq is not None

    def feed(self, piece: pd.DataFrame) -> Iterator[Chunk]:
        """Take the next piece; yield the chunks it completes."""
        if piece.empty:
            return
        if self.by_period:
            yield from self._feed_period(piece)
        else:
            yield from self._feed_size(piece)

    def finish(self) -> Iterator[Chunk]:
        """No more pieces: yield what is still open (the last periods, or the last rows)."""
        if self.by_period:
            for period in sorted(self._open):
                yield self._period_chunk(period, self._open.pop(period))
        elif self._pending_rows:
            yield self._size_chunk(pd.concat(self._pending, ignore_index=True))
            self._pending, self._pending_rows = [], 0

    # --- by period --------------------------------------------------------------------------------

    def _feed_period(self, piece: pd.DataFrame) -> Iterator[Chunk]:
        assert self.timestamp is not None and self.freq is not None
        periods = piece[self.timestamp].dt.to_period(self.freq)
        if self._done is not None:
            late = periods <= self._done
            if late.any():
                self.late_rows += int(late.sum())
                piece, periods = piece[~late], periods[~late]
                if piece.empty:
                    return
        for period, rows in piece.groupby(periods, sort=True):
            self._open.setdefault(period, []).append(rows)
        # every period before this piece's first one is complete
        first = periods.min()
        for period in sorted(p for p in self._open if p < first):
            yield self._period_chunk(period, self._open.pop(period))

    def _period_chunk(self, period: pd.Period, frames: list[pd.DataFrame]) -> Chunk:
        data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        assert self.timestamp is not None
        data = data.sort_values(self.timestamp, kind="stable").reset_index(drop=True)
        self._done = period if self._done is None else max(self._done, period)
        return self._chunk(str(period), period.start_time, period.end_time, data)

    # --- by size ----------------------------------------------------------------------------------

    def _feed_size(self, piece: pd.DataFrame) -> Iterator[Chunk]:
        assert self.size is not None
        self._pending.append(piece)
        self._pending_rows += len(piece)
        if self._pending_rows < self.size:
            return
        # one concatenation per piece, cut into views: concatenating the rest again after every chunk copied
        # the piece ~chunks/2 times, and each chunk kept its own copy alive while the piece's chunks are measured
        rows = pd.concat(self._pending, ignore_index=True) if len(self._pending) > 1 else self._pending[0]
        rows = rows.reset_index(drop=True)
        full = len(rows) // self.size * self.size
        rest = rows.iloc[full:].copy()  # a copy: the remainder must not keep this piece alive until the next one
        self._pending, self._pending_rows = ([rest.reset_index(drop=True)] if len(rest) else []), len(rest)
        for start in range(0, full, self.size):
            yield self._size_chunk(rows.iloc[start : start + self.size].reset_index(drop=True))

    def _size_chunk(self, data: pd.DataFrame) -> Chunk:
        key = f"[{self._offset}:{self._offset + len(data) - 1}]"
        self._offset += len(data)
        start = end = None
        if self.timestamp is not None and self.timestamp in data.columns and len(data):
            start, end = data[self.timestamp].min(), data[self.timestamp].max()
        return self._chunk(key, start, end, data)

    def _chunk(self, key: str, start: pd.Timestamp | None, end: pd.Timestamp | None, data: pd.DataFrame) -> Chunk:
        chunk = Chunk(key, self._index, start, end, data, too_small=len(data) < self.min_rows)
        self._index += 1
        return chunk
