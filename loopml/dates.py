"""Dates as every entry point takes them: ``YYYY-MM-DD`` parsed with the field named in the error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: expected a date like 2019-01-31, got {value!r}") from None


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)
