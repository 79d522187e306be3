"""Dates and times as every entry point takes them (the API, the CLI, the flows, the scheduled job).

A date is ``YYYY-MM-DD``, a moment an ISO time; a bad one is refused with the field named in the error, so
the CLI says ``--start`` where the API says ``start``. Moments are UTC: a naive one is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def parse_date(value: str, field: str) -> date:
    """``value`` as a date, or a ValueError naming ``field`` and showing the expected form."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: expected a date like 2019-01-31, got {value!r}") from None


def as_date(value: date | str, field: str) -> date:
    """A date given either as a date or as text (parsed by :func:`parse_date`)."""
    return value if isinstance(value, date) else parse_date(value, field)


def date_range(start: date | str, end: date | str | None, start_field: str = "start",
               end_field: str = "end") -> tuple[date, date]:
    """The inclusive range [start, end]; ``end`` defaults to ``start`` and may not come before it."""
    first = as_date(start, start_field)
    last = as_date(end, end_field) if end else first
    if last < first:
        raise ValueError(f"{end_field} {last} is before {start_field} {first}")
    return first, last


def yesterday() -> date:
    """The last complete day, in UTC."""
    return datetime.now(UTC).date() - timedelta(days=1)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive moment is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_as_of(value: datetime | str | None, field: str = "as_of") -> datetime | None:
    """A run's "now" when history is replayed (``--as-of``): None when not given, else a UTC moment."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} {value!r} is not an ISO time, e.g. 2019-03-01 or 2019-03-01T00:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of_or_now(value: datetime | str | None) -> datetime:
    """The run's clock: the given ``as_of`` (see :func:`parse_as_of`), else now in UTC."""
    return parse_as_of(value) or datetime.now(UTC)
