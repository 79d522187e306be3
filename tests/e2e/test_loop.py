"""The whole loop, against a moto S3/SNS/SQS server, with real Metaflow flows and real NannyML:

train v1 ▶ replay the schedule over six weeks of new data (score + monitor every two weeks) ▶ drift
arrives in the last weeks ▶ NannyML's estimate falls ▶ alerts (stored and published to SNS) ▶ the
decision says retrain, with evidence ▶ a challenger is trained and promoted or rejected by the gates
▶ the ledger and the decisions log tell the story in order.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from tests.support.data import small_spec, write_spec
from tests.support.moto import BUCKET, put_parquet

pytestmark = pytest.mark.e2e

PREFIX = "e2e-store"
STORE = f"s3://{BUCKET}/{PREFIX}"
START, DRIFT_FROM, END = date(2018, 11, 1), date(2018, 11, 26), date(2018, 12, 12)
LABELS_UNTIL = "2018-12-06"  # late labels: the last days have none yet
THRESHOLD = 0.9


def drifted_new_data(new: pd.DataFrame, labels: pd.DataFrame, original_proba: pd.Series, seed: int = 0):
    """Clean new data until DRIFT_FROM; then a covariate shift into the region where a model is unsure.

    The drifted days are resampled from rows whose probability (from NannyML's own reference model,
    shipped with the data) lies between 0.25 and 0.75: the feature mix moves to where the classes
    overlap, so CBPE's estimated ROC AUC falls without looking at labels. A share of their labels is
    also flipped (the relation changes), so the realized metric falls too.
    """
    rng = np.random.default_rng(seed)
    clean = new[(new.timestamp >= str(START)) & (new.timestamp < str(DRIFT_FROM))]
    unsure = new[original_proba.between(0.25, 0.75) & ~new.id.isin(clean.id)]
    days = pd.date_range(DRIFT_FROM, END, freq="D")
    per_day = int(len(clean) / (DRIFT_FROM - START).days)
    drifted = unsure.sample(per_day * len(days), random_state=seed).reset_index(drop=True)
    offsets = pd.to_timedelta(rng.uniform(0, 86_399, len(drifted)), unit="s")
    stamps = np.repeat(days.values, per_day) + offsets
    drifted["timestamp"] = pd.Series(stamps).dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    drifted = drifted.sort_values("timestamp")
    out = pd.concat([clean, drifted], ignore_index=True)
    lab = out[["id"]].merge(labels, on="id")
    flip = lab.id.isin(drifted.id) & (rng.random(len(lab)) < 0.2)
    lab.loc[flip, "repaid"] = 1.0 - lab.loc[flip, "repaid"]
    arrived = lab[lab.id.isin(out.loc[out.timestamp < LABELS_UNTIL, "id"])]
    return out, arrived


@pytest.fixture(scope="module")
def sns_queue(moto_server):
    """An SNS topic for alerts with an SQS queue subscribed, so a published alert can be received."""
    import boto3

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="loopml-alerts")["TopicArn"]
    url = sqs.create_queue(QueueName="loopml-alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return {"topic": topic, "queue_url": url, "sqs": sqs}


def test_the_loop_detects_drift_alerts_decides_and_retrains(moto_server, s3, car_loan_full, sns_queue, tmp_path,
                                                           monkeypatch):
    import nannyml

    from loopml.cycle.replay import replay
    from loopml.cycle.status import status
    from loopml.registry.registry import Registry
    from loopml.runtime.flowrun import run_flow
    from loopml.storage import from_uri

    train, new, labels = car_loan_full
    _, analysis, _ = nannyml.load_synthetic_car_loan_dataset()
    new_drifted, arrived = drifted_new_data(new, labels, analysis["y_pred_proba"])
    train = train.sample(6000, random_state=1).sort_values("timestamp").reset_index(drop=True)
    data = {"train": put_parquet(s3, "e2e/train.parquet", train),
            "new": put_parquet(s3, "e2e/new.parquet", new_drifted),
            "labels": put_parquet(s3, "e2e/labels.parquet", arrived)}
    # min_improvement 1.0 cannot be met (ROC AUC gains less than 1): the challenger's verdict is known in
    # advance, so the test checks that verdict, not whichever one the data happened to give
    spec_path = write_spec(tmp_path / "project.yaml", small_spec(
        data, threshold=THRESHOLD, monitoring={"chunk_period": "W", "max_drifting_features": 2},
        retraining={"max_age_days": 365, "consecutive_chunks": 2, "min_improvement": 1.0}))
    store = from_uri(STORE)
    registry = Registry(store)

    # 1. v1 is trained and becomes the champion
    v1 = run_flow("train_flow", show_output=False, spec=spec_path, store=STORE)
    assert v1.data.decision["promoted"], v1.data.decision
    assert registry.resolve().number == v1.data.version

    # 2. the schedule, replayed: one CycleFlow run every 14 days; alerts go to SNS (the flow reads the env)
    monkeypatch.setenv("LOOPML_SNS_TOPIC_ARN", sns_queue["topic"])
    lines = list(replay(spec_path, STORE, START, END, every_days=14, window_days=28))
    print("\n".join(lines))
    cycles = [ln for ln in lines if not ln.startswith("  ")]
    assert len(cycles) == 3, lines

    # 3. the monitoring runs saw the estimate fall once the drift arrived
    runs = [store.get_json(k) for k in store.list("monitoring/runs/") if k.endswith("results.json")]
    runs.sort(key=lambda r: r["at"])
    assert len(runs) == 3
    first, last = runs[0], runs[-1]
    clean_estimates = [c["estimated"] for c in first["chunks"] if c["n_rows"] >= 100]
    drifted_chunks = [c for c in last["chunks"] if _chunk_start(c) >= DRIFT_FROM]
    assert clean_estimates and drifted_chunks, (first["chunks"], last["chunks"])
    assert min(clean_estimates) >= THRESHOLD, clean_estimates
    for c in drifted_chunks:
        assert c["estimated"] < THRESHOLD, c  # CBPE, from probabilities alone
        assert c["estimated"] < min(clean_estimates) - 0.05
    assert last["drifting_features"], "the covariate shift shows as univariate drift"

    # 4. alerts were raised and stored, for the drifted chunks
    alerts = [store.get_json(k) for k in store.list("monitoring/alerts/")]
    performance = {"estimated_below_threshold", "realized_below_threshold"}
    assert not [a for a in alerts if a["run_id"] == first["run_id"] and a["kind"] in performance], "none before drift"
    last_alerts = [a for a in alerts if a["run_id"] == last["run_id"]]
    assert performance & {a["kind"] for a in last_alerts}, last_alerts
    # ... and published to SNS: the subscribed queue received the summary
    messages = _receive(sns_queue)
    assert messages, "no alert message reached the SNS topic's subscriber"
    body = json.loads(messages[0]["Body"])
    assert body["TopicArn"] == sns_queue["topic"]
    assert body["Subject"].startswith("loopml: ") and "car_loan" in body["Subject"]
    assert "fails roc_auc >= 0.9" in body["Message"]

    # 5. the decisions log: no retraining while the model was fine, then retrain with evidence
    decisions = [store.get_json(k) for k in store.list("monitoring/decisions/")]
    assert [d["run_id"] for d in decisions] == [r["run_id"] for r in runs]  # one per run, in time order
    assert decisions[0]["retrain"] is False
    final = decisions[-1]
    assert final["retrain"] is True
    assert any("consecutive_chunks=2" in r for r in final["reasons"]), final["reasons"]
    evidence = final["evidence"]
    assert evidence["consecutive_failing"] >= 2 and evidence["threshold"] == THRESHOLD
    assert all(c["fails"] for c in evidence["recent_chunks"][:2])
    assert evidence["age_days"] < evidence["max_age_days"]  # performance, not age, triggered it

    # 6. a challenger was trained by the cycle's retrain step on the newer window, then judged
    versions = registry.versions()
    assert versions == [v1.data.version, v1.data.version + 1]
    v2 = registry.get(versions[-1])
    assert v2.meta["lineage"]["metaflow_run"].startswith("CycleFlow/") and "/retrain/" in v2.meta["lineage"]["metaflow_run"]
    assert v2.meta["data"]["uri"].startswith(f"{STORE}/inputs/retrain-until-{END}")
    assert v2.meta["data"]["rows"] > len(train)  # the original data plus the labelled recent rows
    assert v2.meta["data"]["fingerprint"] != registry.get(v1.data.version).meta["data"]["fingerprint"]
    retrain_line = next(ln for ln in lines if ln.startswith("  retrained"))

    # 7. the ledger tells the story in order: v1 promoted, then the challenger kept aside, and why: it cannot
    # beat the champion by more than min_improvement (or, if it fails its own gates, that comes first)
    ledger = registry.ledger()
    assert [(e["alias"], e["to"]) for e in ledger][0] == ("champion", v1.data.version)
    verdict = ledger[-1]
    assert len(ledger) == 2
    assert (verdict["alias"], verdict["action"], verdict["to"]) == ("challenger", "challenger", v2.number)
    assert "kept as challenger" in retrain_line
    if v2.meta["gates"]["passes"]:
        assert "does not beat champion" in verdict["why"] and "by more than 1" in verdict["why"], verdict["why"]
    else:
        assert verdict["why"].startswith("challenger fails its own gates: "), verdict["why"]
    assert registry.resolve().number == v1.data.version
    assert ledger[0]["when"] <= verdict["when"]

    # 8. status shows the end state a person would look at
    s = status(store)
    assert s["last_decision"]["run_id"] == final["run_id"]
    assert s["open_alerts"] and all(a["run_id"] == last["run_id"] for a in s["open_alerts"])


def _chunk_start(chunk: dict) -> date:
    return pd.Timestamp(chunk["start"]).date() if chunk.get("start") else date.min


def _receive(q: dict) -> list[dict]:
    out: list[dict] = []
    for _ in range(3):
        got = q["sqs"].receive_message(QueueUrl=q["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        out += got.get("Messages", [])
        if out:
            break
    return out
