"""Dates as every entry point takes them (loopml.dates): the field named in each error, UTC moments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from loopml.dates import as_of_or_now, date_range, parse_as_of, utc


def test_a_range_defaults_its_end_and_names_the_fields_it_refuses() -> None:
    assert date_range("2019-01-02", None) == (date(2019, 1, 2), date(2019, 1, 2))
    assert date_range(date(2019, 1, 2), "2019-01-05") == (date(2019, 1, 2), date(2019, 1, 5))
    with pytest.raises(ValueError, match="--end 2019-01-01 is before --start 2019-01-02"):
        date_range("2019-01-02", "2019-01-01", "--start", "--end")
    with pytest.raises(ValueError, match="^start: expected a date like 2019-01-31, got 'soon'$"):
        date_range("soon", None)


def test_as_of_is_a_utc_moment_or_none() -> None:
    assert parse_as_of(None) is None and parse_as_of("") is None
    assert parse_as_of("2019-03-01") == datetime(2019, 3, 1, tzinfo=UTC)
    east = timezone(timedelta(hours=2))
    assert parse_as_of("2019-03-01T02:00:00+02:00") == datetime(2019, 3, 1, 2, tzinfo=east)
    assert parse_as_of(datetime(2019, 3, 1)) == datetime(2019, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="--as-of 'yesterday' is not an ISO time"):
        parse_as_of("yesterday", "--as-of")
    assert as_of_or_now("2019-03-01") == datetime(2019, 3, 1, tzinfo=UTC)
    assert abs(as_of_or_now(None) - datetime.now(UTC)) < timedelta(minutes=1)


def test_utc_takes_naive_moments_as_utc_and_converts_the_others() -> None:
    assert utc(datetime(2019, 3, 1)) == datetime(2019, 3, 1, tzinfo=UTC)
    moved = utc(datetime(2019, 3, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert moved.tzinfo is UTC and moved == datetime(2019, 3, 1, tzinfo=UTC)
