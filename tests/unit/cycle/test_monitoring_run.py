"""A monitoring run recorded in the store (loopml.cycle.monitoring_run): safe to retry and re-run, and
missing data is an alert, not an all-clear."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html import escape

import pytest

from loopml.cycle.monitoring_run import run_monitoring
from loopml.cycle.status import status
from loopml.registry.registry import Registry
from loopml.scoring.batch import score_range
from loopml.storage import MemoryStore

NOW = datetime(2019, 4, 1, tzinfo=UTC)
START, END = date(2019, 1, 1), date(2019, 3, 31)


@pytest.fixture
def strict(spec):
    """A threshold no model meets: every chunk alerts and the decision is to retrain (monthly chunks of
    this small data set hold about 100 rows: judged here, so that they can alert)."""
    return spec.model_copy(update={"metric": spec.metric.model_copy(update={"threshold": 0.999}),
                                   "monitoring": spec.monitoring.model_copy(update={"chunk_period": "M",
                                                                                    "min_chunk_rows": 50})})


@pytest.fixture
def scored(trained, spec) -> MemoryStore:
    store = MemoryStore()
    trained.register(store)
    score_range(store, spec, START, END)
    return store


@pytest.fixture
def sns_queue(mock_aws_env):
    """A moto SNS topic with an SQS queue subscribed: what was published can be counted."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

        def received() -> int:
            n = 0
            while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                n += len(got)
                sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                 for i, m in enumerate(got)])
            return n

        yield {"topic": topic, "sns": sns, "received": received}


def test_a_monitoring_run_done_twice_alerts_notifies_decides_and_retrains_once(scored, strict, sns_queue):
    starts: list[date] = []

    def on_retrain(until: date) -> dict:
        starts.append(until)
        return {"engine": "test", "started": True}

    runs = [run_monitoring(scored, strict, START, END, now=NOW + timedelta(minutes=i), topic_arn=sns_queue["topic"],
                           sns_client=sns_queue["sns"], on_retrain=on_retrain) for i in range(2)]
    first, again = runs
    kinds = {(a["chunk"], a["kind"]) for a in first.alerts}
    assert len(kinds) == len(first.alerts) >= 3 and ("2019-02", "estimated_below_threshold") in kinds
    assert len(scored.list("monitoring/alerts/")) == len(first.alerts)  # one object per (chunk, kind)
    assert first.new_alerts == len(first.alerts) and again.new_alerts == 0
    assert sns_queue["received"]() == 1 and (first.notified, again.notified) == (len(first.alerts), 0)
    assert first.decision["retrain"] and again.decision["key"] == first.decision["key"]
    assert again.decision["at"] == first.decision["at"]  # the first decision stands; none is written again
    assert len(scored.list("monitoring/decisions/")) == 1
    assert starts == [END]  # the second run found the window claimed and started by the first
    assert again.decision["retraining"]["claim"]["resumed"]


def test_a_rerun_by_another_run_does_not_start_a_second_retraining(scored, strict):
    starts: list[date] = []
    for key in ("MonitorFlow/1", "MonitorFlow/2"):
        run = run_monitoring(scored, strict, START, END, now=NOW, run_key=key,
                             on_retrain=lambda until: starts.append(until) or {"started": True})
    assert starts == [END]
    assert run.decision["retraining"]["started"] is False and "already claimed by MonitorFlow/1" in run.decision[
        "retraining"]["why"]


def test_an_empty_window_is_an_alert_and_keeps_the_open_alerts_open(scored, strict):
    full = run_monitoring(scored, strict, START, END, now=NOW)
    assert full.alerts and status(scored)["open_alerts"]
    empty = run_monitoring(scored, strict, date(2019, 5, 1), date(2019, 5, 31), now=NOW + timedelta(days=1))
    assert empty.empty and [a["kind"] for a in empty.alerts] == ["no_data"]
    s = status(scored)
    assert s["last_monitoring"]["rows"] == 0
    open_kinds = {a["kind"] for a in s["open_alerts"]}
    assert "no_data" in open_kinds and len(s["open_alerts"]) == 1 + len(full.alerts)  # nothing closed by no data


def test_a_partly_scored_window_names_the_missing_dates(trained, spec):
    store = MemoryStore()
    trained.register(store)
    score_range(store, spec, date(2019, 1, 1), date(2019, 1, 10))
    score_range(store, spec, date(2019, 1, 20), date(2019, 1, 31))
    run = run_monitoring(store, spec, date(2019, 1, 1), date(2019, 1, 31), now=NOW)
    gap = [a for a in run.alerts if a["kind"] == "partly_scored"]
    assert len(gap) == 1 and "9 of 31 dates" in gap[0]["message"] and "2019-01-11" in gap[0]["message"]
    # a window reaching back before scoring began is not "partly scored"
    late = run_monitoring(store, spec, date(2018, 12, 1), date(2019, 1, 10), now=NOW)
    assert "partly_scored" not in {a["kind"] for a in late.alerts}


def test_a_window_scored_by_two_versions_is_an_alert_not_a_silent_subset(trained, linear_trained, spec):
    store = MemoryStore()
    trained.register(store)
    score_range(store, spec, date(2019, 1, 1), date(2019, 1, 20))
    v2 = linear_trained.register(store, promote=False)
    Registry(store).promote(v2, why="test")
    part = score_range(store, spec, date(2019, 1, 21), date(2019, 1, 31))
    run = run_monitoring(store, spec, date(2019, 1, 1), date(2019, 1, 31), now=NOW)
    mixed = [a for a in run.alerts if a["kind"] == "mixed_versions"]
    assert len(mixed) == 1 and "v1:" in mixed[0]["message"] and f"v{v2}'s {part.rows} of" in mixed[0]["message"]
    assert run.results["rows"] == part.rows and run.results["coverage"]["rows_by_version"]["1"] > 0


def test_model_age_counts_from_registration_not_its_newest_training_row(trained, spec):
    """Labels lag: the newest training row is months old at birth. Registered 'now', the model is young."""
    from loopml.modeling.register import register_version

    aging = spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"max_age_days": 30})})
    store = MemoryStore()
    register_version(Registry(store), aging, trained.data, trained.winner, trained.selection, trained.evaluation,
                     trained.classes, "test", as_of=NOW)
    score_range(store, aging, START, END)
    young = run_monitoring(store, aging, START, END, now=NOW + timedelta(days=10)).decision
    assert young["evidence"]["age_days"] == pytest.approx(10) and not any("old" in r for r in young["reasons"])
    old = run_monitoring(store, aging, START, date(2019, 3, 30), now=NOW + timedelta(days=40)).decision
    assert any("older than max_age_days=30" in r for r in old["reasons"])


def test_status_prints_an_empty_window_and_the_alerts_it_kept_open(trained, spec, strict, tmp_path, capsys):
    from loopml.cli.main import main
    from loopml.storage import from_uri

    store = from_uri(str(tmp_path / "store"))
    trained.register(store)
    score_range(store, spec, START, END)
    full = run_monitoring(store, strict, START, END, now=NOW)
    run_monitoring(store, strict, date(2019, 5, 1), date(2019, 5, 31), now=NOW + timedelta(days=1))
    capsys.readouterr()
    assert main(["status", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "window 2019-05-01..2019-05-31: EMPTY: no predictions" in out
    assert f"open alerts: {len(full.alerts) + 1}" in out and "no predictions at all" in out


# --- calibration stored with the version at training, shown by monitoring (issue 10 §1) ----------------


def test_training_stores_the_reference_calibration_with_the_version_and_the_report_shows_it(scored, spec):
    meta = Registry(scored).resolve().meta
    cal = meta["calibration"]
    assert cal["rows"] == meta["data"]["test_rows"] and 0 <= cal["ece"] <= 1 and cal["bins"]
    assert Registry(scored).resolve().record.calibration == cal  # typed in the version record too

    warned = [w for w in meta["warnings"] if w["kind"] in ("small_reference", "poorly_calibrated")]
    run = run_monitoring(scored, spec, START, END, now=NOW)
    assert run.results["training"] == {"version": 1, "calibration": cal, "warnings": warned, "stored": True}
    html = scored.get(run.report_key).decode()
    assert f"Stored with version 1 at training: Brier score <b>{cal['brier']:.4f}</b>" in html
    # training warned about the calibration exactly when its ECE is poor; the report repeats what it said
    assert ("poorly_calibrated" in {w["kind"] for w in warned}) == (cal["ece"] > 0.05)
    assert all(escape(w["message"]) in html for w in warned)


def test_a_reference_too_small_for_reliable_estimates_is_said_at_training(trained, spec):
    from loopml.modeling.evaluate import evaluate

    # the test split (about 600 rows here) cannot hold 10 chunks of 500 rows
    wants_more = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"min_chunk_rows": 500})})
    ev = evaluate(trained.winner, trained.splits, wants_more, trained.classes)
    small = [w for w in ev.warnings if w["kind"] == "small_reference"]
    assert len(small) == 1 and f"has {len(trained.splits.test)} rows" in small[0]["message"]
    assert ev.calibration is not None and ev.calibration["rows"] == len(trained.splits.test)

    store = MemoryStore()
    trained.register(store, spec=wants_more, evaluation=ev)
    stored = Registry(store).resolve().meta
    assert stored["calibration"] == ev.calibration and small[0] in stored["warnings"]
