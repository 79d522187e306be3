"""The one image, run: the cycle inside it on Metaflow, its container API, and the scheduled job through
`sam local invoke`.

All against a moto S3/SNS server on the host. The image is built from this tree first (`make image-podman`: a
Debian trixie base from debootstrap, the host-made wheelhouse), so a broken Dockerfile, a wheel without its flows
or a dependency missing on Python 3.13 fails here.

1. In the image (`podman run --network host localhost/loopml:latest loopml ...`): TrainFlow registers v1 (promoted
   by hand: the spec's threshold is set above what the data allows, so that monitoring alerts), then one cycle of
   CycleFlow (`loopml run-schedule`) scores a week, monitors it with NannyML, decides to retrain and trains a
   challenger that the gate keeps as challenger. The store is then read from the host.
2. The container form of the API: the image's default command serves the champion over HTTP.
3. The scheduled job (`localhost/loopml:lambda`, the template's CycleFunction) invoked by `sam local invoke` with
   SAM's EventBridge scheduled event (`sam local generate-event cloudwatch scheduled-event`) through podman: the
   handler scores the next day, monitors the week ending on it and records its decision; invoked again with the
   same event (a Lambda retry) it changes nothing. SAM runs the function on podman's bridge network, so it reaches
   moto through a second listener on the bridge's gateway (tests/support/podman.py).

Skipped only when podman cannot be set up on this machine (not root, no apt); `.ci/run` sets it up and sets
LOOPML_REQUIRE_CONTAINERS=1, so in CI a machine without podman fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from loopml.runtime.net import free_port
from tests.support import REPO
from tests.support import podman as _podman
from tests.support.data import small_spec
from tests.support.moto import BUCKET, client, list_keys, put_parquet
from tests.support.podman import CONTAINERS_CONF, SAM

pytestmark = pytest.mark.container

IMAGE = "localhost/loopml:latest"
IMAGE_LAMBDA = "localhost/loopml:lambda"
PREFIX = "container-store"
STORE = f"s3://{BUCKET}/{PREFIX}"
FIRST, LAST = date(2018, 11, 1), date(2018, 11, 7)  # the week the in-image cycle scores and monitors
NEXT = LAST + timedelta(days=1)  # the day the scheduled job scores


def _sh(cmd: list[str], timeout: float = 1800, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env or {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}, **kw)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """podman set up (infra/containers.sh) and the two images built from this tree; their sizes."""
    required = os.environ.get("LOOPML_REQUIRE_CONTAINERS") == "1"
    setup = _sh(["bash", "infra/containers.sh", "setup", "base", "lambda-image"])
    if setup.returncode != 0:
        why = (setup.stderr.strip().splitlines() or ["?"])[-1]
        if required:
            pytest.fail(f"podman could not be set up: {why}")
        pytest.skip(f"podman cannot be set up on this machine ({why}); `bash infra/containers.sh all` sets it up")
    started = time.monotonic()
    build = _ok(_sh(["make", "--no-print-directory", "image-podman", f"VPY={sys.executable}", "WHEELHOUSE_DEPS="]))
    sizes = dict(line.removeprefix("image ").rsplit(": ", 1) for line in build.stdout.splitlines()
                 if line.startswith("image "))
    print(f"\nimage build: {time.monotonic() - started:.0f} s; sizes: {sizes}")
    return sizes


def _podman_run(moto_env: dict[str, str], args: list[str], project: Path, image: str = IMAGE) -> tuple[str, float]:
    env = {k: v for k, v in moto_env.items() if k != "METAFLOW_DATASTORE_SYSROOT_LOCAL"}
    env.update(METAFLOW_DATASTORE_SYSROOT_LOCAL="/home/loopml", LOOPML_STORE=STORE)
    cmd = ["podman", "run", "--rm", "--network", "host", "-v", f"{project}:/project:ro"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    started = time.monotonic()
    proc = _ok(_sh([*cmd, image, *args]))
    return proc.stdout, time.monotonic() - started


@pytest.fixture(scope="module")
def project(moto_server, s3, car_loan_full, tmp_path_factory) -> dict:
    """Data in S3 (a training sample, two weeks of new data, labels for the first week) and project.yaml."""
    train, new, labels = car_loan_full
    train = train.sample(3000, random_state=0).sort_values("timestamp").reset_index(drop=True)
    new = new[(new.timestamp >= str(FIRST)) & (new.timestamp < str(NEXT + timedelta(days=1)))].reset_index(drop=True)
    arrived = new.loc[new.timestamp < str(NEXT), ["id"]].merge(labels, on="id")
    data = {"train": put_parquet(s3, "container/train.parquet", train),
            "new": put_parquet(s3, "container/new.parquet", new),
            "labels": put_parquet(s3, "container/labels.parquet", arrived)}
    # a threshold no model reaches on this data: v1 is promoted by hand, and monitoring alerts on every chunk
    spec = small_spec(data, threshold=0.995, candidates=[{"family": "linear", "n_iter": 1}], constraints={},
                      retraining={"max_age_days": 365, "consecutive_chunks": 1})
    folder = tmp_path_factory.mktemp("container-project")
    (folder / "project.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    folder.chmod(0o755)  # mounted read-only into the image, whose user is not root
    (folder / "project.yaml").chmod(0o644)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/project.yaml", Body=(folder / "project.yaml").read_bytes())
    sns = client("sns", moto_server["env"])
    topic = sns.create_topic(Name="loopml-container-alerts")["TopicArn"]
    return {"folder": folder, "spec": spec, "new": new, "topic": topic}


@pytest.fixture(scope="module")
def cycled(images, moto_server, project) -> dict:
    """v1 trained and promoted inside the image, then one cycle of CycleFlow inside the image."""
    env = moto_server["env"]
    out, took = _podman_run(env, ["loopml", "train", "--spec", "/project/project.yaml"], project["folder"])
    assert "registered version 1" in out, out
    print(f"\nTrainFlow in the image: {took:.0f} s")
    _podman_run(env, ["loopml", "promote", "1", "--force", "--why", "container test: the threshold is out of reach"],
                project["folder"])
    out, took = _podman_run(env, ["loopml", "run-schedule", "--spec", "/project/project.yaml", "--start", str(FIRST),
                                  "--end", str(LAST), "--every", "7", "--window", "7"], project["folder"])
    print(f"one cycle (CycleFlow: score 7 days, monitor, decide, retrain a challenger, gate) in the image: {took:.0f} s")
    print(out)
    return {"out": out, "seconds": took}


def test_the_cycle_runs_in_order_inside_the_image(cycled, s3, project) -> None:
    from loopml.registry.registry import Registry
    from loopml.storage import from_uri

    keys = list_keys(s3, f"{PREFIX}/")
    days = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    # score: one committed partition per day of the week
    for day in days:
        assert any("/predictions/" in k and day.isoformat() in k for k in keys), (day, keys[:50])
    # monitor: a run with results; decision: retrain, with the evidence
    assert any(k.startswith(f"{PREFIX}/monitoring/runs/") and k.endswith("results.json") for k in keys)
    decisions = [k for k in keys if k.startswith(f"{PREFIX}/monitoring/decisions/")]
    assert decisions, keys
    decision = json.loads(s3.get_object(Bucket=BUCKET, Key=decisions[-1])["Body"].read())
    assert decision["retrain"] is True and decision["reasons"], decision
    # challenger: v2 trained on the window, kept as challenger by the gate (the threshold is out of reach)
    registry = Registry(from_uri(STORE))
    assert registry.versions() == [1, 2]
    assert registry.alias("champion") == 1 and registry.alias("challenger") == 2
    assert "retrained v2" in cycled["out"] and "kept as challenger" in cycled["out"], cycled["out"]


def test_the_image_runs_as_a_non_root_user_without_build_tools(images) -> None:
    out = _ok(_sh(["podman", "run", "--rm", IMAGE, "sh", "-c",
                   "id -u; for t in pip pip3 gcc cc make apt-get; do command -v $t >/dev/null && echo has-$t; done; "
                   "ls /var/lib/apt/lists | wc -l; python -c 'import loopml.runtime.flowrun as f; print(f.FLOWS)'"])).stdout
    lines = out.split()
    assert lines[0] != "0", out
    assert not [w for w in lines if w.startswith("has-") and w != "has-apt-get"], out  # apt-get is Debian's base
    assert lines[-2] == "0" and lines[-1].startswith("/opt/loopml/lib/python3.13/site-packages/loopml/flows"), out


def test_the_image_serves_the_champion_over_http(cycled, moto_server, project) -> None:
    """The container form of the API (Cloud Run, ECS, Kubernetes): the image's default command, on $PORT."""
    import urllib.request

    port = free_port()
    env = {**moto_server["env"], "LOOPML_STORE": STORE, "PORT": str(port)}
    cmd = ["podman", "run", "-d", "--rm", "--network", "host"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    cid = _ok(_sh([*cmd, IMAGE])).stdout.strip()
    try:
        row = project["new"].drop(columns=["id", "timestamp"], errors="ignore").iloc[0]
        body = json.dumps({"row": {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                                 headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert answer["model_version"] == 1 and len(answer["predictions"]) == 1, answer
    finally:
        _sh(["podman", "rm", "-f", cid])


@pytest.fixture(scope="module")
def podman_service(images, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A podman system service of this module's own for the SAM CLI (DOCKER_HOST)."""
    with _podman.podman_service(tmp_path_factory.mktemp("podman-service")) as env:
        yield env


@pytest.fixture(scope="module")
def bridge_endpoint(images, moto_server) -> Iterator[str]:
    """moto as the function's container, on podman's bridge network, reaches it (see _podman.moto_on_bridge)."""
    with _podman.moto_on_bridge() as url:
        yield url


def _local_template(tmp: Path, env: dict[str, str]) -> Path:
    """template.yaml's CycleFunction as `sam local` runs it here: the image built above (a deploy builds it with
    `sam build` and pushes it), the template's own variables with values for the moto server."""
    from cfnlint.decode import decode_str

    template, errors = decode_str((REPO / "template.yaml").read_text())
    assert not errors, errors
    fn = template["Resources"]["CycleFunction"]
    props = {k: v for k, v in fn["Properties"].items() if k in ("PackageType", "ImageConfig", "Architectures",
                                                                    "EphemeralStorage")}
    props["Timeout"] = int(template["Parameters"][fn["Properties"]["Timeout"]["Ref"]]["Default"])
    names = set(fn["Properties"]["Environment"]["Variables"])
    assert names <= set(env), (names, env)
    # a short name: SAM takes "localhost/…" for a registry it cannot invoke from; podman resolves it locally
    props.update(ImageUri=IMAGE_LAMBDA.removeprefix("localhost/"), MemorySize=3008, Environment={"Variables": env})
    local = {"AWSTemplateFormatVersion": "2010-09-09", "Transform": "AWS::Serverless-2016-10-31",
             "Resources": {"CycleFunction": {"Type": "AWS::Serverless::Function", "Properties": props}}}
    path = tmp / "template.json"
    path.write_text(json.dumps(local))
    return path


def _invoke(sam_env: dict[str, str], template: Path, event: Path) -> tuple[dict, float]:
    started = time.monotonic()
    proc = _ok(_sh([str(SAM), "local", "invoke", "CycleFunction", "-t", str(template), "-e", str(event),
                    "--skip-pull-image"], env=sam_env))
    took = time.monotonic() - started
    body = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "errorMessage" not in body, (body, proc.stderr[-4000:])
    return body, took


def test_the_scheduled_job_runs_the_next_cycle_from_an_eventbridge_event(cycled, podman_service, bridge_endpoint,
                                                                         s3, project, tmp_path) -> None:
    """`sam local invoke CycleFunction` with SAM's own EventBridge scheduled event: the image's handler scores the
    day before the event's time, monitors the week ending on it and records a decision; the same event again (a
    Lambda retry) changes nothing in the store."""
    from loopml.registry.registry import Registry
    from loopml.storage import from_uri

    if not SAM.exists():
        _ok(_sh(["bash", "-c", "source infra/lib.sh && ensure_sam"]))
    sam_env = {**os.environ, **podman_service, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    sam_env.pop("AWS_ENDPOINT_URL", None)  # the SAM CLI itself talks to no AWS endpoint
    # a real EventBridge scheduled event, with the time its schedule fires the day after NEXT (01:30 UTC)
    event = json.loads(_ok(_sh([str(SAM), "local", "generate-event", "cloudwatch", "scheduled-event"],
                               env=sam_env)).stdout)
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events", event
    event["time"] = f"{NEXT + timedelta(days=1)}T01:30:00Z"
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    function_env = {"LOOPML_STORE": STORE, "LOOPML_SPEC": f"s3://{BUCKET}/{PREFIX}/project.yaml",
                    "LOOPML_SNS_TOPIC_ARN": project["topic"], "LOOPML_WINDOW_DAYS": "7",
                    "AWS_ENDPOINT_URL": bridge_endpoint, "NANNYML_DISABLE_USAGE_LOGGING": "1"}
    template = _local_template(tmp_path, function_env)
    store = from_uri(STORE)
    registry = Registry(store)

    summary, took = _invoke(sam_env, template, event_path)
    print(f"\nscheduled job (sam local invoke, container image, cold start): {took:.0f} s; {summary}")
    # score: the day before the event, with the champion, one committed partition
    assert summary["day"] == NEXT.isoformat()
    expected_rows = int((pd.to_datetime(project["new"]["timestamp"]).dt.date == NEXT).sum())
    assert summary["scored"]["rows"] == expected_rows > 0 and summary["scored"]["version"] == 1
    keys = list_keys(s3, f"{PREFIX}/")
    assert any("/predictions/" in k and NEXT.isoformat() in k for k in keys), keys[:50]
    # monitor: the week ending on that day (moved to whole chunk periods), a run with its results in the store
    window = summary["monitoring"]["window"]
    assert window["end"] == NEXT.isoformat() and window["start"] <= (NEXT - timedelta(days=6)).isoformat(), window
    assert summary["monitoring"]["rows"] > 0 and summary["monitoring"]["alerts"] > 0, summary["monitoring"]
    run_id = summary["monitoring"]["run_id"]
    assert any(k.startswith(f"{PREFIX}/monitoring/runs/") and run_id in k and k.endswith("results.json")
               for k in keys), (run_id, [k for k in keys if "/monitoring/runs/" in k])
    # decide: recorded with its evidence; retraining of the week that a challenger was just trained for is held back
    decision = json.loads(store.get(summary["decision"]["key"]))
    assert decision["retrain"] is True and decision["reasons"], decision
    assert summary["retraining"] is not None, summary  # the decision's retraining was claimed or refused, and why
    assert registry.alias("champion") == 1
    versions = registry.versions()

    # Lambda retries a failed asynchronous invocation with the same event: the second run changes nothing
    before = list_keys(s3, f"{PREFIX}/")
    again, _ = _invoke(sam_env, template, event_path)
    assert again["day"] == summary["day"] and again["monitoring"]["new_alerts"] == 0
    assert again["decision"]["key"] == summary["decision"]["key"]
    after = list_keys(s3, f"{PREFIX}/")
    side_effects = ("/monitoring/alerts/", "/monitoring/notified/", "/monitoring/decisions/",
                    "/monitoring/retraining/", "/registry/")
    assert [k for k in after if any(s in k for s in side_effects)] == \
        [k for k in before if any(s in k for s in side_effects)]
    assert registry.versions() == versions and registry.alias("champion") == 1
