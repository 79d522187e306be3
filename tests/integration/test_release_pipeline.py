"""The pipeline's commands in the order the workflows run them (.github/workflows/model.yml, pipeline.yml),
against a moto server: S3 stores for build, staging and prod; a CloudFormation stack per stage holding
the API function, whose published versions and ``live`` alias are moto's Lambda.

    train ▶ gate ▶ publish to staging ▶ promote staging ▶ smoke staging ▶ (approval) publish to prod ▶
    promote prod --approved-by ▶ smoke prod ▶ a code deploy (function version 2) ▶ a second model release ▶
    a forced failure (the served artifact is corrupted, a fresh API instance cannot load it) ▶ `make smoke`
    fails and rolls back the model alias AND the function's live alias ▶ smoke passes on what was restored.

The smoke steps hit the real FastAPI app over HTTP (uvicorn on a loopback port, one per stage) reading
its stage's store in moto; ``make smoke`` runs as the workflow runs it, in a subprocess.

What moto cannot do, so what is NOT exercised here: the SAM transform (the stacks are plain
CloudFormation), ``AWS::Lambda::Alias`` as a stack resource (the alias is made through Lambda's API, as
SAM's AutoPublishAlias would), invoking the function (moto runs Lambda code only in Docker; the API runs
under uvicorn instead), and CodeDeploy's canary (``StopDeployment`` is missing from moto; the canary's
alarm rollback belongs to CodeDeploy and is configured in template.yaml).
"""

from __future__ import annotations

import io
import subprocess
import zipfile

import boto3
import pytest

from tests.support import release as _release
from tests.support.api import ApiThread
from tests.support.cli import run_main as loopml
from tests.support.data import small_spec, write_spec
from tests.support.moto import put_parquet

pytestmark = pytest.mark.integration

BUILD = "s3://loopml-it/release-build"
STAGES = {"staging": "s3://loopml-staging/loopml", "prod": "s3://loopml-prod/loopml"}
KEY = "release-test-key"


def make_smoke(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _release.make_smoke(url, *extra, key=KEY)


@pytest.fixture(scope="module")
def project(moto_server, s3, car_loan_full, tmp_path_factory):
    train, _, _ = car_loan_full
    train = train.sample(6000, random_state=1).sort_values("timestamp").reset_index(drop=True)
    data = {"train": put_parquet(s3, "release/train.parquet", train)}
    # no latency budget: timings must not decide whether a gate passes in a test
    spec = small_spec(data, constraints={"max_model_mb": 50})
    return write_spec(tmp_path_factory.mktemp("release") / "project.yaml", spec)


def test_the_pipeline_in_order_ends_with_a_rollback_of_model_and_function(project, trained, moto_server, monkeypatch):
    from loopml.registry.registry import CHAMPION, Registry
    from loopml.release.records import releases
    from loopml.storage import from_uri

    monkeypatch.setenv("LOOPML_MODEL_TTL_SECONDS", "0.2")  # the APIs re-read the alias almost at once
    s3, cfn, lam = (boto3.client(s) for s in ("s3", "cloudformation", "lambda"))
    for uri in STAGES.values():
        s3.create_bucket(Bucket=uri.split("/")[2])
    apis = {stage: ApiThread(uri, KEY).__enter__() for stage, uri in STAGES.items()}
    try:
        # the code pipeline deployed both stacks once: function version 1 behind `live`
        functions = {}
        for stage, uri in STAGES.items():
            cfn.create_stack(StackName=f"loopml-{stage}", TemplateBody=_release.stack_template(uri, apis[stage].url),
                             Capabilities=["CAPABILITY_IAM"])
            fn = next(o["OutputValue"] for o in cfn.describe_stacks(StackName=f"loopml-{stage}")["Stacks"][0]["Outputs"]
                      if o["OutputKey"] == "FunctionName")
            lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
            functions[stage] = fn

        def release(approver: str, candidate: int | None = None) -> int:
            """model.yml: candidate (train, or a registered version) ▶ staging ▶ (approval) prod."""
            if candidate is None:
                assert loopml("train", "--spec", project, "--store", BUILD) == 0
            assert loopml("release", "check", "--version", str(candidate or "latest"), "--store", BUILD) == 0
            version = candidate or Registry(from_uri(BUILD)).versions()[-1]
            for stage, who in (("staging", "github-actions"), ("prod", approver)):
                stack = f"loopml-{stage}"
                assert loopml("release", "publish", "--version", str(version), "--from", BUILD, "--stack", stack) == 0
                assert loopml("release", "promote", "--env", stage, "--version", str(version), "--stack", stack,
                              "--approved-by", who, "--why", "model release") == 0
                smoke = make_smoke(apis[stage].url, f"VERSION={version}", "WAIT=20", f"STACK={stack}", "ROLLBACK=model")
                assert smoke.returncode == 0, smoke.stdout + smoke.stderr
                assert "smoke: OK" in smoke.stdout
            return version

        # the first release takes a candidate already registered in the build store (fitted in process,
        # registered by the real register_version); the second trains one with TrainFlow
        first = release("alice", candidate=trained.register(from_uri(BUILD), promote=False))
        # pipeline.yml: a code deploy to prod publishes function version 2 behind `live`
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("handlers/api.py", "def handler(event, context):\n    return 2\n")
        lam.update_function_code(FunctionName=functions["prod"], ZipFile=buf.getvalue())
        assert lam.publish_version(FunctionName=functions["prod"])["Version"] == "2"
        lam.update_alias(FunctionName=functions["prod"], Name="live", FunctionVersion="2")
        second = release("bob")
        assert second == first + 1

        # a forced failure: prod's served artifact is corrupted; a fresh API instance cannot load it
        prod = from_uri(STAGES["prod"])
        for info in Registry(prod).get(second).record.artifacts.values():
            prod.put(info.key, b"corrupted")
        apis["prod"].__exit__(None, None, None)
        apis["prod"] = ApiThread(STAGES["prod"], KEY).__enter__()
        failed = make_smoke(apis["prod"].url, "STACK=loopml-prod")
        assert failed.returncode != 0, failed.stdout
        assert "smoke failed: rolling back loopml-prod" in failed.stderr
        assert f"model: champion {second} -> {first}" in failed.stdout
        assert f"function: {functions['prod']}:live version 2 -> 1" in failed.stdout

        # afterwards: the store, the ledger, the release record and the function alias all agree
        reg = Registry(prod)
        assert reg.alias(CHAMPION) == first
        assert lam.get_alias(FunctionName=functions["prod"], Name="live")["FunctionVersion"] == "1"
        moves = [(e["action"], e["from"], e["to"], e["who"]) for e in reg.ledger(CHAMPION)]
        assert moves == [("promote", None, first, "alice"), ("promote", first, second, "bob"),
                         ("rollback", second, first, "github-actions")]
        assert "approved by bob" in reg.ledger(CHAMPION)[1]["why"]
        records = releases(prod)
        assert [(r["action"], r["env"], r["who"]) for r in records] == [
            ("promote", "prod", "alice"), ("promote", "prod", "bob"), ("rollback", "loopml-prod", "github-actions")]
        assert records[1]["function"]["to"] == "2"  # live when bob's model went out
        assert records[2]["model"] == {"from": second, "to": first}
        assert (records[2]["function"]["from"], records[2]["function"]["to"]) == ("2", "1")
        assert "smoke test" in records[2]["why"]
        assert set(reg.versions()) == {first, second}  # published, never deleted
        # staging was not touched by prod's rollback
        assert Registry(from_uri(STAGES["staging"])).alias(CHAMPION) == second
        # and prod serves the restored champion
        again = make_smoke(apis["prod"].url, f"VERSION={first}", "WAIT=20")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        for api in apis.values():
            api.__exit__(None, None, None)
