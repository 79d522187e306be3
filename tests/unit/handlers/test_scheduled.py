"""The scheduled job's entry point (handlers/scheduled.py): which day an EventBridge event is for, where the
spec comes from, and a misconfigured job failing with one line that names the setting. The whole cycle through
this handler runs in tests/container (sam local invoke of the container image, against a moto server)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import boto3
import pytest
import yaml

from handlers import scheduled

# what `sam local generate-event cloudwatch scheduled-event` prints, with the time of a real schedule
EVENT = {"id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c", "detail-type": "Scheduled Event", "source": "aws.events",
         "account": "123456789012", "time": "2026-11-26T01:30:00Z", "region": "us-east-1",
         "resources": ["arn:aws:events:us-east-1:123456789012:rule/ExampleRule"], "detail": {}}


def test_the_cycle_is_for_the_last_complete_day_before_the_event() -> None:
    when = scheduled.event_time(EVENT)
    assert when == datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert scheduled.cycle_day(when) == date(2026, 11, 25)
    # a retried invocation carries the same event, hence the same day, whatever the clock says
    assert scheduled.cycle_day(scheduled.event_time(dict(EVENT))) == date(2026, 11, 25)


@pytest.mark.parametrize("event", [{}, {"time": 5}, {"time": "yesterday"}, [], None])
def test_an_event_without_a_time_is_refused_with_one_line(event) -> None:
    with pytest.raises(scheduled.BadEvent) as err:
        scheduled.event_time(event)
    assert "\n" not in str(err.value) and "time" in str(err.value)


def test_a_misconfigured_job_names_the_missing_setting_and_runs_nothing(monkeypatch) -> None:
    monkeypatch.delenv("LOOPML_SPEC", raising=False)
    monkeypatch.setenv("LOOPML_STORE", "s3://bucket/prefix")
    monkeypatch.setattr(scheduled, "_settings", None)
    with pytest.raises(RuntimeError, match="LOOPML_SPEC") as err:
        scheduled.handler(EVENT, None)
    assert "\n" not in str(err.value)


def test_a_spec_on_s3_resolves_relative_data_paths_against_its_own_folder(s3_bucket, spec_raw) -> None:
    raw = {**spec_raw, "data": {"train": "data/train.parquet", "new": "s3://other/new/{date}.parquet",
                                "labels": "/abs/labels.parquet"}}
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="store/project.yaml", Body=yaml.safe_dump(raw).encode())
    spec = scheduled.load_spec_uri(f"s3://{s3_bucket}/store/project.yaml")
    assert spec.data.train == f"s3://{s3_bucket}/store/data/train.parquet"
    assert spec.data.new == "s3://other/new/{date}.parquet"  # absolute URIs and paths stay as written
    assert spec.data.labels == "/abs/labels.parquet"
    assert spec.name == spec_raw["name"]
