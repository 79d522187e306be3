"""TrainFlow, ScoreFlow and MonitorFlow run by Metaflow against a moto S3 server.

Everything is real: Metaflow's S3 datastore, awswrangler reading the inputs from S3, the registry and
predictions written to S3, NannyML computing the monitoring.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.support import REPO
from tests.support.data import small_spec, write_spec
from tests.support.moto import BUCKET, list_keys, put_parquet

pytestmark = pytest.mark.integration

STORE_PREFIX = "store"
STORE = f"s3://{BUCKET}/{STORE_PREFIX}"
NEW_START, NEW_END = "2018-11-01", "2018-12-31"
LABELS_UNTIL = "2018-12-01"  # late labels: only November has them


@pytest.fixture(scope="module")
def project(moto_server, s3, car_loan_full, tmp_path_factory):
    """Data in S3 (train, two months of new data, labels for the first month) and a project.yaml naming it."""
    train, new, labels = car_loan_full
    train = train.sample(6000, random_state=0).sort_values("timestamp").reset_index(drop=True)
    new = new[(new.timestamp >= NEW_START) & (new.timestamp < "2019-01-01")].reset_index(drop=True)  # ISO strings
    arrived = new.loc[new.timestamp < LABELS_UNTIL, ["id"]].merge(labels, on="id")
    data = {"train": put_parquet(s3, "data/train.parquet", train),
            "new": put_parquet(s3, "data/new.parquet", new),
            "labels": put_parquet(s3, "data/labels.parquet", arrived)}
    folder = tmp_path_factory.mktemp("project")
    spec_path = write_spec(folder / "project.yaml", small_spec(data))
    return {"spec": spec_path, "folder": folder, "train": train, "new": new, "labels": arrived, "data": data}


@pytest.fixture(scope="module")
def trained(project):
    from loopml.runtime.flowrun import run_flow

    return run_flow("train_flow", show_output=False, spec=project["spec"], store=STORE)


@pytest.fixture(scope="module")
def scored(trained, project):
    from loopml.runtime.flowrun import run_flow

    return run_flow("score_flow", show_output=False, spec=project["spec"], store=STORE, start=NEW_START, end=NEW_END)


def test_train_flow_registers_a_champion_with_lineage_in_s3(trained, project, s3):
    from loopml.data import fingerprint, load_frame, validate
    from loopml.registry.registry import Registry
    from loopml.spec import load_spec
    from loopml.storage import from_uri

    assert trained.successful
    version = trained.data.version
    assert trained.data.decision["promoted"] is True

    keys = list_keys(s3, f"{STORE_PREFIX}/registry/")
    base = f"{STORE_PREFIX}/registry/versions/{version:04d}"
    assert f"{base}/version.json" in keys
    assert f"{base}/reference.parquet" in keys
    assert f"{STORE_PREFIX}/registry/aliases/champion.json" in keys
    alias = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{STORE_PREFIX}/registry/aliases/champion.json")["Body"].read())
    assert alias["version"] == version

    meta = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/version.json")["Body"].read())
    # the lineage names the very Metaflow task that registered it (TrainFlow/<run>/end/<task>)
    assert meta["lineage"]["metaflow_run"].startswith(trained.pathspec + "/end/")
    assert trained.pathspec.startswith("TrainFlow/")
    spec = load_spec(project["spec"])
    assert meta["lineage"]["spec_sha256"] == spec.fingerprint()
    # the data version is the fingerprint of exactly the rows that were read from S3
    expected = fingerprint(validate(load_frame(project["data"]["train"]), spec, source="test"))
    assert meta["data"]["fingerprint"] == expected == trained.data.data_fingerprint
    assert meta["data"]["uri"] == project["data"]["train"]
    assert meta["data"]["rows"] == len(project["train"])
    # every artifact's recorded SHA-256 matches the bytes stored in S3
    assert "model.joblib" in meta["artifacts"]
    for name, info in meta["artifacts"].items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{STORE_PREFIX}/{info['key']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == info["sha256"], name
        assert len(body) == info["bytes"]
    # and the registry API agrees (it checks the hash before handing out bytes)
    reg = Registry(from_uri(STORE))
    assert reg.resolve().number == version
    assert reg.artifact(reg.get(version), "model.joblib")
    ledger = reg.ledger()
    assert [(e["alias"], e["to"], e["action"]) for e in ledger] == [("champion", version, "promote")]


def test_metaflow_datastore_is_moto_s3(trained, s3):
    """Metaflow's own artifacts (code package, task data) went to the moto bucket, not a local folder."""
    keys = list_keys(s3, "metaflow/")
    run_id = trained.pathspec.split("/")[1]
    assert any(k.startswith(f"metaflow/TrainFlow/{run_id}/") for k in keys), keys[:20]
    assert any(k.startswith("metaflow/TrainFlow/data/") for k in keys)  # content-addressed artifacts
    # the in-process client reads artifacts back from that datastore
    assert trained.data.data_rows == 6000
    assert trained["end"].task.metadata_dict.get("ds-type") == "s3"


def test_score_flow_writes_daily_partitions_and_reruns_do_not_duplicate(scored, project, s3):
    from loopml.runtime.flowrun import run_flow
    from loopml.scoring.manifest import MANIFEST, committed, read_predictions
    from loopml.storage import from_uri

    partitions = scored.data.partitions
    new = project["new"]
    assert sum(partitions.values()) == len(new)
    days = sorted(new.timestamp.str[:10].unique())
    assert sorted(partitions) == days
    store = from_uri(STORE)
    run = scored.data.score_run
    published = committed(store)  # the manifest names one object of this run per date
    assert sorted(published) == days
    assert [p.key for p in published.values()] == [f"predictions/date={d}/{run}.parquet" for d in days]
    assert list_keys(s3, f"{STORE_PREFIX}/predictions/") == sorted(
        [f"{STORE_PREFIX}/{MANIFEST}"] + [f"{STORE_PREFIX}/{p.key}" for p in published.values()])

    first = read_predictions(store)
    assert len(first) == len(new)
    assert {"y_pred", "y_pred_proba", "model_version", "id"} <= set(first.columns)
    assert first["y_pred_proba"].between(0, 1).all()

    # score the same range again: the rows merge by id into new objects, never appended to
    again = run_flow("score_flow", show_output=False, spec=project["spec"], store=STORE, start=NEW_START, end=NEW_END)
    assert again.data.partitions == partitions
    assert {p.run_id for p in committed(store).values()} == {again.data.score_run}
    second = read_predictions(store)
    assert len(second) == len(new)
    assert second["id"].is_unique


def test_monitor_flow_writes_results_report_with_estimates_drift_and_realized(scored, project, s3):
    from loopml.runtime.flowrun import run_flow

    m = run_flow("monitor_flow", show_output=False, spec=project["spec"], store=STORE, start=NEW_START, end=NEW_END,
                 as_of="2019-01-01T00:00:00+00:00")
    run_id = m.data.run_id
    base = f"{STORE_PREFIX}/monitoring/runs/{run_id}"
    assert {f"{base}/results.json", f"{base}/report.html"} <= set(list_keys(s3, base))
    results = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/results.json")["Body"].read())
    html = s3.get_object(Bucket=BUCKET, Key=f"{base}/report.html")["Body"].read().decode()
    assert "<html" in html.lower() and "roc_auc" in html

    assert results["rows"] == len(project["new"])
    chunks = {c["chunk"]: c for c in results["chunks"]}
    assert len(chunks) == 2, list(chunks)  # monthly chunks: November and December
    nov, dec = (chunks[k] for k in sorted(chunks))
    for c in (nov, dec):
        assert c["estimated"] is not None and 0.5 < c["estimated"] <= 1.0  # CBPE, no labels needed
        assert c["n_drifting_features"] is not None
    # labels arrived for November only: realized there, not in December
    assert nov["realized"] is not None and 0.5 < nov["realized"] <= 1.0
    assert dec["realized"] is None
    assert abs(nov["realized"] - nov["estimated"]) < 0.1
    assert "drifting_features" in results
    # the decision is recorded with its evidence
    decisions = list_keys(s3, f"{STORE_PREFIX}/monitoring/decisions/")
    assert decisions
    decision = json.loads(s3.get_object(Bucket=BUCKET, Key=decisions[-1])["Body"].read())
    assert decision["run_id"] == run_id and "evidence" in decision
    assert decision["evidence"]["recent_chunks"][0]["chunk"] == dec["chunk"]
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{STORE_PREFIX}/monitoring/latest.json")["Body"].read())
    assert latest["run_id"] == run_id


def test_bad_spec_fails_before_the_flow_with_the_field_named_and_changes_nothing(trained, project, s3, moto_server):
    import yaml

    bad = yaml.safe_load(open(project["spec"]))
    bad["features"][2]["type"] = "numerical"  # a typo: numeric
    bad["metric"]["treshold"] = bad["metric"].pop("threshold")
    bad_path = write_spec(project["folder"] / "bad.yaml", bad)
    before = list_keys(s3, "")
    proc = subprocess.run([sys.executable, "-m", "loopml.cli.main", "train", "--spec", bad_path, "--store", STORE],
                          capture_output=True, text=True, cwd=REPO, env={**moto_server["env"], **_base_env()}, timeout=120)
    assert proc.returncode != 0
    assert "features[2].type" in proc.stderr
    assert "metric.treshold" in proc.stderr or "metric.threshold" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list_keys(s3, "") == before  # nothing written: no registry entry, no Metaflow run


def test_bad_data_through_the_flow_fails_and_registers_nothing(trained, project, s3):
    """A valid spec whose training data breaks the schema: TrainFlow fails in its first step."""
    from loopml.runtime.flowrun import FlowFailed, run_flow

    broken = project["train"].copy()
    broken["car_value"] = "a lot"
    uri = put_parquet(s3, "data/broken.parquet", broken)
    before = list_keys(s3, f"{STORE_PREFIX}/")
    with pytest.raises(FlowFailed) as err:
        run_flow("train_flow", show_output=False, spec=project["spec"], store=STORE, data=uri)
    assert "car_value" in str(err.value)
    assert list_keys(s3, f"{STORE_PREFIX}/") == before


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def test_same_file_same_fingerprint_local_or_s3(project, s3, tmp_path):
    from loopml.data import fingerprint, load_frame, validate
    from loopml.spec import load_spec

    spec = load_spec(project["spec"])
    local = tmp_path / "train.parquet"
    local.write_bytes(s3.get_object(Bucket=BUCKET, Key="data/train.parquet")["Body"].read())
    from_s3 = fingerprint(validate(load_frame(project["data"]["train"]), spec, source="s3"))
    from_disk = fingerprint(validate(load_frame(str(local)), spec, source="disk"))
    assert from_s3 == from_disk


def test_experiments_are_queryable_through_metaflow(trained):
    """`loopml runs` reads Metaflow's own metadata: the run, its data fingerprint, parameters, metrics."""
    from loopml.cycle.status import compare, training_runs
    from loopml.storage import from_uri

    runs = {r["run"]: r for r in training_runs(limit=50)}
    row = runs[trained.pathspec]
    assert row["successful"] and row["version"] == trained.data.version
    assert row["fingerprint"] == trained.data.data_fingerprint and len(row["fingerprint"]) == 64
    assert row["params"] == trained.data.params and row["metrics"]["roc_auc"] == trained.data.metrics["roc_auc"]
    side_by_side = {k: (a, b) for k, a, b in compare(from_uri(STORE), trained.data.version, trained.data.version)}
    assert side_by_side["metaflow_run"][0].startswith(trained.pathspec)
