"""The release pipeline's commands in order, each run as the workflow files run it (a subprocess: `loopml …`,
`make smoke …`), against moto and two APIs under SAM's emulator: staging and prod, each `sam local start-api`
through podman on the built package, serving its stage's store in moto S3. moto also holds the build store and
each stage's CloudFormation stack (outputs StoreUri and ApiUrl, the API function's versions and `live` alias).

    release 1 (model.yml, a version already registered in the build store)
        loopml release check ▶ publish staging ▶ promote staging ▶ make smoke staging
        ▶ publish prod ▶ promote prod --approved-by alice ▶ make smoke prod
    release 2 (model.yml, training a candidate)
        loopml train ▶ loopml release check ▶ … staging … ▶ publish prod ▶ promote prod --approved-by bob
        ▶ a forced failure: prod's copy of the new version's model is corrupted before prod's smoke test, so the API
          refuses it and keeps serving the old one ▶ make smoke prod … ROLLBACK=model fails and rolls the model
          alias back by itself ▶ prod serves the restored version
    manual rollback (pipeline.yml, job rollback) of staging: loopml release rollback --stack … (model alias and the
        function's live alias)

Every command's shape (subcommand and option names) is checked against the workflow files first, so the test and
the YAML run the same commands. What is not run here: the SAM transform, CodeDeploy's canary, the function's real
versions (the emulator serves the built package; the `live` alias lives in moto's Lambda), GitHub's approval.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import boto3
import pytest

from tests.support import podman as _podman
from tests.support import release as _release
from tests.support.data import small_spec, write_spec
from tests.support.emulator import API_KEY, API_KEY_SHA256, removing_containers, sam_api
from tests.support.moto import BUCKET, moto_server_env, put_parquet  # noqa: F401 (moto_server_env: autouse fixture)

# moto_server_env (autouse, imported above): the moto server, and its env for this module and the commands it runs

pytestmark = pytest.mark.emulator

BUILD = f"s3://{BUCKET}/release-emulator-build"
STAGES = {"staging": "s3://loopml-emu-staging/loopml", "prod": "s3://loopml-emu-prod/loopml"}
STACKS = {stage: f"loopml-emu-{stage}" for stage in STAGES}
WAIT = "10"  # the workflows wait 120 s for a warm API's model TTL; here the TTL is 1 s
# the commands of the workflows this test runs, by shape (command and option names, not values)
WORKFLOW_SHAPES = _release.workflow_shapes("model.yml", "pipeline.yml")


def _as_in_workflow(command: list[str]) -> None:
    found = _release.shape(shlex.join(command))
    assert found in WORKFLOW_SHAPES, f"{found} is not a step of model.yml/pipeline.yml: {sorted(WORKFLOW_SHAPES)}"


def loopml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One pipeline step, `loopml …` in its own process as the workflow's `.venv/bin/loopml …`; must succeed."""
    _as_in_workflow(["loopml", *args])
    proc = subprocess.run([sys.executable, "-m", "loopml.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "LOOPML_USER": "github-actions", **(env or {})}, timeout=900)
    assert proc.returncode == 0, f"loopml {shlex.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def make_smoke(url: str, *extra: str, step: bool = True) -> subprocess.CompletedProcess[str]:
    """`make smoke …`; ``step``: one of the workflows' steps (not a check this test adds)."""
    if step:
        _as_in_workflow(["make", "smoke", f"URL={url}", *extra])
    return _release.make_smoke(url, *extra, key=API_KEY)


def _template(built: Path, work: Path, endpoint: str) -> Path:
    """The built template with one change: the API function's environment names moto (AWS_ENDPOINT_URL, which
    the deployed function does not have; `sam local --env-vars` sets only variables the template declares).
    Written beside the original so that its relative code paths still resolve."""
    from cfnlint.decode import decode_str

    template, errors = decode_str((built / "template.yaml").read_text())
    assert not errors, errors
    template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] = endpoint
    path = built / f"template.{work.name}.json"
    path.write_text(json.dumps(template))
    return path


@pytest.fixture(scope="module")
def apis(built_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """staging's and prod's APIs under `sam local start-api`, each serving its stage's store in moto."""
    s3 = boto3.client("s3")
    for uri in STAGES.values():
        s3.create_bucket(Bucket=uri.split("/")[2])
    work = tmp_path_factory.mktemp("release-emulator")
    # unwound in reverse: the APIs stop, then their leftover containers go, then the bridge and the service
    with _podman.podman_service(work) as podman, _podman.moto_on_bridge() as endpoint, ExitStack() as stack:
        template = _template(built_package, work, endpoint)
        stack.callback(template.unlink, missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}  # the SAM CLI calls no AWS endpoint
        env.update(podman, SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        stack.enter_context(removing_containers(env, built_package / "ApiFunction"))
        urls = {}
        for stage, store in STAGES.items():  # one after the other: the machine is small
            (work / stage).mkdir()
            function_env = {"LOOPML_STORE": store, "LOOPML_ROOT_PATH": "", "LOOPML_MODEL_TTL_SECONDS": "1",
                            "LOOPML_LOG_FLUSH_SECONDS": "0"}
            urls[stage] = stack.enter_context(sam_api(template, work / stage, env, function_env,
                                                      {"ApiKeySha256": API_KEY_SHA256}))
        yield urls


@pytest.fixture(scope="module")
def project(tmp_path_factory, car_loan_full) -> str:
    """project.yaml for `loopml train`: the car loan data in S3, one cheap candidate, no latency budget (timings
    must not decide whether a gate passes in a test)."""
    train = car_loan_full.train.sample(3000, random_state=2).sort_values("timestamp").reset_index(drop=True)
    data = {"train": put_parquet(boto3.client("s3"), "release-emulator/train.parquet", train)}
    spec = small_spec(data, candidates=[{"family": "linear", "n_iter": 1}], constraints={"max_model_mb": 50})
    return write_spec(tmp_path_factory.mktemp("release-emulator-project") / "project.yaml", spec)


def test_the_pipeline_against_the_emulator_rolls_back_a_failed_release_by_itself(apis, project, linear_trained,
                                                                                 tmp_path) -> None:
    from loopml.registry.registry import CHAMPION, Registry
    from loopml.release.records import releases
    from loopml.storage import from_uri

    cfn, lam = boto3.client("cloudformation"), boto3.client("lambda")
    functions = {stage: _release.deploy_stack(cfn, lam, STACKS[stage], STAGES[stage], apis[stage]) for stage in STAGES}
    # staging's function had a code deploy since: version 2 is live (the manual rollback at the end moves it back)
    assert _release.code_deploy(lam, functions["staging"]) == "2"

    def candidate(version: str) -> int:
        """model.yml's candidate job: the gates, and the version for the next jobs through $GITHUB_OUTPUT."""
        output = tmp_path / f"github-output-{version}"
        loopml("release", "check", "--version", version, "--store", BUILD, env={"GITHUB_OUTPUT": str(output)})
        return int(dict(line.split("=", 1) for line in output.read_text().split())["version"])

    def release(version: int, approver: str, before_prod_smoke=None) -> subprocess.CompletedProcess[str]:
        """model.yml's staging and prod jobs; returns prod's smoke test."""
        for stage, who in (("staging", "github-actions"), ("prod", approver)):
            stack, v = STACKS[stage], str(version)
            loopml("release", "publish", "--version", v, "--from", BUILD, "--stack", stack)
            loopml("release", "promote", "--env", stage, "--version", v, "--stack", stack, "--approved-by", who,
                   "--why", "model release")
            if stage == "prod" and before_prod_smoke is not None:
                before_prod_smoke()
            smoke = make_smoke(apis[stage], f"VERSION={v}", f"WAIT={WAIT}", f"STACK={stack}", "ROLLBACK=model")
            if stage == "staging":
                assert smoke.returncode == 0 and "smoke: OK" in smoke.stdout, smoke.stdout + smoke.stderr
        return smoke

    # release 1: a version registered in the build store beforehand (fitted in process by the real core functions)
    first = linear_trained.register(from_uri(BUILD), promote=False)
    assert candidate(str(first)) == first
    smoke = release(first, "alice")
    assert smoke.returncode == 0 and f"version {first}" in smoke.stdout, smoke.stdout + smoke.stderr

    # release 2: TrainFlow trains the candidate
    out = loopml("train", "--spec", project, "--store", BUILD).stdout
    second = candidate("latest")
    assert second == first + 1 and f"registered version {second}" in out, out
    prod = from_uri(STAGES["prod"])

    def corrupt() -> None:
        """The forced failure: what prod would serve is damaged after the gates passed."""
        for info in Registry(prod).get(second).record.artifacts.values():
            prod.put(info.key, b"corrupted")

    failed = release(second, "bob", before_prod_smoke=corrupt)
    assert failed.returncode != 0, failed.stdout
    assert f"smoke failed: rolling back {STACKS['prod']}" in failed.stderr, failed.stderr
    assert f"model: champion {second} -> {first}" in failed.stdout and "function: not moved" in failed.stdout, \
        failed.stdout

    # afterwards: prod's store, ledger and release records agree; the function was left alone (a model release)
    reg = Registry(prod)
    assert reg.alias(CHAMPION) == first and set(reg.versions()) == {first, second}
    moves = [(e["action"], e["from"], e["to"], e["who"]) for e in reg.ledger(CHAMPION)]
    assert moves == [("promote", None, first, "alice"), ("promote", first, second, "bob"),
                     ("rollback", second, first, "github-actions")]
    assert "approved by bob" in reg.ledger(CHAMPION)[1]["why"]
    assert "smoke test of" in reg.ledger(CHAMPION)[2]["why"]
    records = releases(prod)
    assert [(r["action"], r["env"], r["who"]) for r in records] == [
        ("promote", "prod", "alice"), ("promote", "prod", "bob"), ("rollback", STACKS["prod"], "github-actions")]
    assert records[2]["model"] == {"from": second, "to": first} and records[2]["function"] is None
    assert lam.get_alias(FunctionName=functions["prod"], Name="live")["FunctionVersion"] == "1"
    # the emulated prod API serves the restored version again (a check, not a pipeline step)
    again = make_smoke(apis["prod"], f"VERSION={first}", f"WAIT={WAIT}", step=False)
    assert again.returncode == 0, again.stdout + again.stderr
    # staging kept the new version; its smoke tests' predictions went through the emulator into its store in moto
    staging = from_uri(STAGES["staging"])
    assert Registry(staging).alias(CHAMPION) == second
    assert staging.list("prediction-log/"), "the emulated staging API logged no prediction"

    # pipeline.yml's manual rollback job on staging: the model alias and the function's live alias
    loopml("release", "rollback", "--stack", STACKS["staging"], "--env", "staging", "--who", "carol", "--why",
           "manual rollback from the test")
    assert Registry(staging).alias(CHAMPION) == first
    assert lam.get_alias(FunctionName=functions["staging"], Name="live")["FunctionVersion"] == "1"
    last = releases(staging)[-1]
    assert (last["action"], last["who"], last["model"], last["function"]["from"], last["function"]["to"]) == \
        ("rollback", "carol", {"from": second, "to": first}, "2", "1")
    smoke = make_smoke(apis["staging"], f"VERSION={first}", f"WAIT={WAIT}", step=False)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
