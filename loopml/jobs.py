"""Stage 5 wired to the store: a monitoring run, late labels, and the challenger gate.

``loopml.monitoring`` computes; this module reads its inputs from the store and records what it
found (results, report, alerts, the retraining decision) so that every step of the loop leaves
evidence behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from loopml.data import load_frame, validate
from loopml.modeling.metrics import score
from loopml.monitoring import decide_retraining, evaluate_alerts, monitor, publish_alerts, render_report
from loopml.registry import CHALLENGER, Registry
from loopml.scoring import predict_frame, read_predictions
from loopml.serving import load_predictor
from loopml.spec import ProblemSpec
from loopml.storage import Store
from loopml.storage.layout import ALERTS, DECISIONS, FEEDBACK, MONITORING, PREDICTION_LOG, event_key, partition_dates

LATEST = f"{MONITORING}/latest.json"


def load_labels(store: Store, spec: ProblemSpec, uri: str | None = None) -> pd.DataFrame:
    """Late labels by id: the spec's labels dataset plus what arrived through the API's /feedback."""
    if not spec.id:
        return pd.DataFrame(columns=["id", "label"])
    frames = []
    uri = uri if uri is not None else spec.data.labels
    if uri:
        raw = load_frame(uri)
        missing = [c for c in (spec.id, spec.target) if c not in raw.columns]
        if missing:
            raise ValueError(f"{uri}: labels need columns {missing}")
        frames.append(pd.DataFrame({"id": raw[spec.id].astype(str), "label": raw[spec.target]}))
    for key in store.list(FEEDBACK + "/"):
        body = store.get_json(key)
        frames.append(pd.DataFrame([{"id": str(x["id"]), "label": x["label"]} for x in body["labels"]]))
    if not frames:
        return pd.DataFrame(columns=["id", "label"])
    # a later label for the same id wins: corrections are allowed
    return pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last")


def attach_labels(predictions: pd.DataFrame, labels: pd.DataFrame, spec: ProblemSpec) -> pd.DataFrame:
    if predictions.empty or not spec.id or labels.empty:
        return predictions
    out = predictions.drop(columns=[spec.target], errors="ignore")
    merged = out.merge(labels.rename(columns={"id": spec.id, "label": spec.target}), on=spec.id, how="left")
    return merged


def model_as_of(meta: dict[str, Any]) -> datetime:
    """When the model's knowledge ends: its newest training row when there is a timestamp (so that
    replaying history ages models correctly), else when it was registered."""
    as_of = (meta.get("data") or {}).get("as_of")
    moment = pd.Timestamp(as_of).to_pydatetime() if as_of else datetime.fromisoformat(meta["created_at"])
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_prediction_log(store: Store, spec: ProblemSpec, start: date | None, end: date | None) -> pd.DataFrame:
    """The API's logged predictions in the window, shaped like batch predictions so that live traffic
    is monitored with the same NannyML run (the log's id and time stand in for the spec's columns)."""
    rows = []
    for day in partition_dates(store, PREDICTION_LOG, start, end):
        for key in store.list(f"{PREDICTION_LOG}/date={day}/"):
            for line in store.get(key).splitlines():
                r = json.loads(line)
                row = {**r["features"], "y_pred": r["prediction"], "model_version": r["version"]}
                probs = r.get("probabilities") or {}
                if len(probs) == 2:
                    row["y_pred_proba"] = list(probs.values())[-1]  # keys are in class order: last = positive
                else:
                    row.update({f"y_pred_proba_{c}": p for c, p in probs.items()})
                if spec.id:
                    row[spec.id] = r["id"]
                if spec.timestamp:
                    row[spec.timestamp] = r["time"]
                rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for col in spec.categorical:  # JSON may carry true/1 where the training data had "True"/"1"
        frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    for col in spec.numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if spec.timestamp:
        frame[spec.timestamp] = pd.to_datetime(frame[spec.timestamp], utc=True).dt.tz_localize(None)
    return frame


def analysis_window(store: Store, spec: ProblemSpec, start: date | None, end: date | None,
                    labels_uri: str | None = None) -> pd.DataFrame:
    """Batch predictions and the API's logged predictions in the window, with late labels joined."""
    frames = [f for f in (read_predictions(store, start, end), read_prediction_log(store, spec, start, end)) if not f.empty]
    scored = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return attach_labels(scored, load_labels(store, spec, labels_uri), spec)


@dataclass
class MonitoringRun:
    run_id: str
    version: int
    results: dict[str, Any]
    alerts: list[dict[str, Any]]
    decision: dict[str, Any]
    report_key: str
    report_url: str


def run_monitoring(store: Store, spec: ProblemSpec, start: date | None, end: date | None, *,
                   now: datetime | None = None, topic_arn: str | None = None, sns_client: Any = None,
                   labels_uri: str | None = None,
                   on_retrain: Callable[[date], dict[str, Any]] | None = None) -> MonitoringRun:
    """One monitoring run over [start, end]. ``on_retrain(end)`` starts retraining when the decision says
    so (e.g. :func:`start_step_functions_retraining`); what it returns is kept in the decision record."""
    now = now or datetime.now(UTC)
    registry = Registry(store)
    champion = registry.resolve()
    reference = registry.reference(champion)
    analysis = analysis_window(store, spec, start, end, labels_uri)
    if not analysis.empty and "model_version" in analysis.columns:
        # only rows the champion scored: a rollback or promotion mid-window would mix models
        analysis = analysis[analysis["model_version"] == champion.number].reset_index(drop=True)
    classes = champion.meta["schema"].get("classes")
    result = monitor(reference, analysis, spec, classes)
    if analysis.empty:
        result.messages.insert(0, f"no predictions by version {champion.number} between {start} and {end}")
    alerts = evaluate_alerts(result, spec)
    created = model_as_of(champion.meta)
    decision = decide_retraining(result.chunks, spec, created, now)

    run_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    base = f"{MONITORING}/runs/{run_id}"
    window = {"start": str(start) if start else None, "end": str(end) if end else None}
    alert_dicts = [{**a.to_dict(), "run_id": run_id, "version": champion.number, "at": now.isoformat()} for a in alerts]
    # the run's alerts also travel in its results, so `status` reads one object, not the whole alert log
    results = {"run_id": run_id, "at": now.isoformat(), "version": champion.number, "window": window,
               "rows": len(analysis), **result.to_dict(), "alerts": alert_dicts}
    html = render_report(result, spec, f"{spec.name}: monitoring {window['start']} to {window['end']}",
                         str(champion.number), alerts)
    store.put(f"{base}/report.html", html.encode())
    store.put_json(f"{base}/results.json", results)
    for a in alert_dicts:
        store.put_new_json(event_key(ALERTS, now), a)
    if alerts and topic_arn:
        if sns_client is None:
            import boto3

            sns_client = boto3.client("sns")
        publish_alerts(alerts, topic_arn, sns_client, model=f"{spec.name} v{champion.number}")
    decision_record = {**decision.to_dict(), "run_id": run_id, "version": champion.number, "at": now.isoformat(),
                       "window": window}
    if decision.retrain and on_retrain is not None:
        decision_record["retraining"] = on_retrain(end or now.date())
    store.put_new_json(event_key(DECISIONS, now), decision_record)
    store.put_json(LATEST, {"run_id": run_id, "at": now.isoformat()})
    return MonitoringRun(run_id, champion.number, results, alert_dicts, decision_record,
                         f"{base}/report.html", store.url(f"{base}/report.html"))


def labelled_window(store: Store, spec: ProblemSpec, start: date | None, end: date | None) -> pd.DataFrame:
    """Scored rows in the window whose labels have arrived: features and the true target."""
    data = attach_labels(read_predictions(store, start, end), load_labels(store, spec), spec)
    if data.empty or spec.target not in data.columns:
        return pd.DataFrame()
    return data[data[spec.target].notna()].reset_index(drop=True)


def retraining_data(store: Store, spec: ProblemSpec, until: date) -> str:
    """The newer window to retrain on: the original training data plus every labelled scored row up to
    ``until``. Written to the store as a Parquet input, so the run's data stays traceable."""
    base = validate(load_frame(spec.data.train), spec, source=spec.data.train)
    recent = labelled_window(store, spec, None, until)
    if not recent.empty:
        recent = validate(recent[[c for c in base.columns if c in recent.columns]], spec, source="labelled predictions")
        if spec.id:
            base[spec.id] = base[spec.id].astype(str)
    combined = pd.concat([base, recent], ignore_index=True) if not recent.empty else base
    key = f"inputs/retrain-until-{until.isoformat()}.parquet"
    store.write_parquet(key, combined)
    return store.url(key)


def challenge(store: Store, spec: ProblemSpec, challenger: int, start: date | None, end: date | None) -> dict[str, Any]:
    """Score champion and challenger on the same recent labelled rows; promote the challenger only if it
    passes its own gates and beats the champion on the spec's metric. The ledger records why."""
    registry = Registry(store)
    chall = registry.get(challenger)
    if registry.alias() is None:  # nothing to beat: the gates alone decide
        passes = chall.meta.get("gates", {}).get("passes", False)
        why = "no champion yet; the challenger passes its gates" if passes else "no champion, and the challenger fails its gates"
        if passes:
            registry.promote(challenger, why=why)
        return {"champion": None, "challenger": challenger, "rows": 0, "promoted": passes, "why": why}
    champ = registry.resolve()
    data = labelled_window(store, spec, start, end)
    held_out = (chall.meta.get("data") or {}).get("test_from")
    if spec.timestamp and held_out and not data.empty:
        # only rows the challenger never trained on: its training window includes recent labelled rows
        data = data[data[spec.timestamp] >= pd.Timestamp(held_out)].reset_index(drop=True)
    outcome: dict[str, Any] = {"champion": champ.number, "challenger": challenger, "rows": len(data),
                               "metric": spec.metric.name, "compared_from": held_out}
    if len(data) < 50:
        outcome.update(promoted=False, why=f"only {len(data)} labelled recent rows: too few to compare")
    else:
        for role, version in (("champion_score", champ), ("challenger_score", chall)):
            predictor = load_predictor(registry, version)
            pred, proba = predict_frame(predictor, data, spec)
            classes = list(predictor.schema.classes) if predictor.schema.classes else None
            outcome[role] = score(spec.metric.name, data[spec.target].to_numpy(), pred, proba, classes)
        gain = outcome["challenger_score"] - outcome["champion_score"]
        gain = gain if spec.metric.higher_is_better else -gain
        outcome["gain"] = gain
        better = gain > spec.retraining.min_improvement
        gates = chall.meta.get("gates", {})
        if not gates.get("passes", False):
            outcome.update(promoted=False, why="challenger fails its own gates: " + "; ".join(gates.get("reasons", [])))
        elif not better:
            outcome.update(promoted=False, why=(f"challenger {spec.metric.name} {outcome['challenger_score']:.4f} does not beat "
                                                f"champion {outcome['champion_score']:.4f} by more than {spec.retraining.min_improvement:g} "
                                                f"on {len(data)} recent labelled rows it did not train on"))
        else:
            outcome.update(promoted=True, why=(f"challenger {spec.metric.name} {outcome['challenger_score']:.4f} beats champion "
                                               f"{outcome['champion_score']:.4f} on {len(data)} recent labelled rows it did not train on, and passes its gates"))
    if outcome["promoted"]:
        registry.promote(challenger, why=outcome["why"])
    else:
        registry.set_alias(CHALLENGER, challenger, why=outcome["why"], action="challenger")
    return outcome


def start_step_functions_retraining(store: Store, spec: ProblemSpec, until: date, *, sfn_client: Any = None,
                                    state_machine: str = "TrainFlow") -> dict[str, Any]:
    """On AWS: write the newer window's data to the store and start the deployed TrainFlow (Step
    Functions) as a challenger run on it, the way ``step-functions trigger`` does. TrainFlow then
    registers the challenger and applies the gate itself."""
    data_uri = retraining_data(store, spec, until)
    if sfn_client is None:
        import boto3

        sfn_client = boto3.client("stepfunctions")
    machines = (m for page in sfn_client.get_paginator("list_state_machines").paginate() for m in page["stateMachines"])
    arn = next((m["stateMachineArn"] for m in machines if m["name"] == state_machine), None)
    if arn is None:
        return {"engine": "step-functions", "started": False, "data": data_uri,
                "why": f"no state machine named {state_machine}: deploy it with `flows/train_flow.py step-functions create`"}
    params = {"mode": "challenger", "data": data_uri, "until": f"{until.isoformat()}T23:59:59"}
    execution = sfn_client.start_execution(stateMachineArn=arn, input=json.dumps({"Parameters": json.dumps(params)}))
    return {"engine": "step-functions", "started": True, "execution": execution["executionArn"], "data": data_uri,
            "parameters": params}
