"""The store layout documented in loopml.storage is the one loopml.storage.layout builds: every documented
pattern has a builder, and every builder's key matches its documented pattern."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, date, datetime

import pytest

import loopml.storage
from loopml.storage import layout

SAMPLES = {date: date(2024, 5, 1), datetime: datetime(2024, 5, 1, 12, 30, tzinfo=UTC), int: 7, str: "x1"}
BY_NAME = {"run_id": "2024-05-01_2024-05-28_v1", "day": "2024-05-01", "name": "model.onnx",
           "key": "registry/ledger/champion/00000003.json",
           "alert": "monitoring/alerts/2024-05-01_2024-05-28_v1/2024-05-no_data.json"}
GENERIC = {"partition_key"}  # the date-partition helper the builders below use


def _regex(pattern: str) -> re.Pattern[str]:
    """``<...>`` is one variable part of a key: anything but a slash."""
    return re.compile("".join(r"[^/]+" if part.startswith("<") else re.escape(part)
                              for part in re.split(r"(<[^>]+>)", pattern)) + "$")


def _example(name: str) -> str:
    builder = getattr(layout, name)
    if isinstance(builder, str):  # a fixed key
        return builder
    params = inspect.signature(builder, eval_str=True).parameters.values()
    return builder(*(BY_NAME.get(p.name, SAMPLES[p.annotation]) for p in params))


def test_the_documented_layout_is_the_table():
    assert layout.documented_layout() in loopml.storage.__doc__


@pytest.mark.parametrize("entry", layout.LAYOUT, ids=lambda e: e.pattern)
def test_every_documented_pattern_has_a_builder_whose_keys_match_it(entry):
    assert entry.builders
    for name in entry.builders:
        assert _regex(entry.pattern).match(_example(name)), (name, _example(name))


def test_every_key_builder_is_documented():
    named = {n for entry in layout.LAYOUT for n in entry.builders}
    builders = {n for n, f in vars(layout).items() if inspect.isfunction(f) and n.endswith("_key")} - GENERIC
    assert builders <= named, builders - named


def test_keys_read_back_are_parsed_by_the_layout():
    until = date(2024, 5, 1)
    assert layout.results_run_id(layout.monitoring_results_key("a_b_v1")) == "a_b_v1"
    assert layout.results_run_id(layout.monitoring_report_key("a_b_v1")) is None
    assert layout.claim_until(layout.retraining_claim_key(until)) == until
    assert layout.claim_until(layout.retraining_outcome_key(until)) is None
    assert layout.claim_until(layout.retraining_started_key(until)) is None
    key = layout.prediction_log_key("2024-05-01", "abcd0123", 2, 2048, 2100)
    assert key.startswith(layout.prediction_log_prefix("2024-05-01", "abcd0123", 2))
    assert layout.prediction_log_range(key) == (2048, 2100)
    assert layout.prediction_log_range(layout.prediction_log_other_key("2024-05-01")) is None
    assert layout.prediction_object_run(layout.prediction_object_key("2024-05-01", "r1")) == "r1"
    assert layout.notified_key(layout.alert_key("r", "2019-02 / x", "no_data")) == "monitoring/notified/r/2019-02-x-no_data.json"
