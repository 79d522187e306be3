"""The scheduled job: an EventBridge scheduled event in, one cycle out (score ▶ monitor ▶ decide ▶ retrain ▶ gate).

Deployed as a container-image Lambda function on an EventBridge schedule (template.yaml ``ScheduledFunction``,
built from the Dockerfile's ``lambda`` stage), for data that fits one machine; CycleFlow on Step Functions or
Argo runs the same cycle when it does not; this job calls it through :func:`loopml.api.run_cycle`, as any
other caller does.

The day comes from the event, not from the clock: the cycle fired at ``time`` scores the day before it (a day
is complete once it is over), so a retried invocation of the same event is the same cycle, whose side effects
are keyed and happen once. The environment is validated on the first invocation; a bad setting or a bad event
fails with one line naming it and touches nothing.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("loopml.scheduled")
log.setLevel(logging.INFO)


class ScheduledSettings(BaseSettings):
    """The job's environment (``LOOPML_*``), set by template.yaml."""

    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore", frozen=True)

    store: str = Field(description="store root: s3://bucket/prefix (or a folder)")
    spec: str = Field(description="project.yaml: s3://bucket/key or a path in the image")
    sns_topic_arn: str | None = Field(default=None, description="alert topic; unset = alerts are only recorded")
    window_days: int = Field(default=28, ge=1, description="days each monitoring run looks back")
    score_days: int = Field(default=1, ge=1, description="days each cycle scores, ending the day before the event")
    retrain: bool = Field(default=True, description="retrain a challenger when the decision says so")


class BadEvent(ValueError):
    """The event is not a scheduled event this job can date."""


def event_time(event: Any) -> datetime:
    """The scheduled time of an EventBridge ``Scheduled Event`` (its ``time``, e.g. ``2026-11-26T00:05:00Z``)."""
    if not isinstance(event, dict) or not isinstance(event.get("time"), str):
        raise BadEvent("expected an EventBridge scheduled event with a 'time' field (ISO 8601)")
    try:
        return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent(f"event time {event['time']!r} is not an ISO 8601 time") from None


def cycle_day(when: datetime) -> date:
    """The day a cycle fired at ``when`` scores: the last complete day."""
    return when.date() - timedelta(days=1)


def read_text(uri: str) -> str:
    """A small text object: s3://bucket/key through boto3 (AWS_ENDPOINT_URL applies), or a local path."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        return body.read().decode()
    with open(uri) as f:
        return f.read()


def load_spec_uri(uri: str):
    """Read project.yaml from S3 or the image; relative data paths resolve against the spec's own folder
    (on S3 too, so a project uploads project.yaml beside its data and keeps relative paths)."""
    import yaml

    from loopml.spec import SpecError, parse_spec, spec_from_text

    text = read_text(uri)
    if not uri.startswith("s3://"):
        return spec_from_text(text, PurePosixPath(uri).parent, uri)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{uri}: not valid YAML: {err}") from None
    folder = uri.rsplit("/", 1)[0]
    data = raw.get("data") if isinstance(raw, dict) else None
    for key, value in (data or {}).items() if isinstance(data, dict) else ():
        if isinstance(value, str) and value and "://" not in value and not value.startswith("/"):
            data[key] = f"{folder}/{value}"
    return parse_spec(raw, uri)


_settings: ScheduledSettings | None = None


def settings() -> ScheduledSettings:
    """The job's settings, read from the environment on the first call (a warm container keeps them)."""
    global _settings
    if _settings is None:
        _settings = ScheduledSettings()  # type: ignore[call-arg]  # from the environment
    return _settings


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (``handlers.scheduled.handler``): run the cycle the event is for."""
    try:
        cfg = settings()
        when = event_time(event)
    except ValidationError as err:
        fields = ", ".join(f"LOOPML_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors())
        raise RuntimeError(f"scheduled job misconfigured: {fields}") from None
    from loopml.api import run_cycle

    day = cycle_day(when)
    spec = load_spec_uri(cfg.spec)
    log.info("cycle for %s (event %s, project %s, store %s)", day, event.get("id", "-"), spec.name, cfg.store)
    summary = run_cycle(spec, day, store=cfg.store, days=cfg.score_days, window_days=cfg.window_days, as_of=when,
                        retrain=cfg.retrain, topic_arn=cfg.sns_topic_arn)
    log.info("cycle done: %s", summary)
    return summary
