"""Shared by the two release-pipeline tests (tests/integration/test_release_pipeline.py: the API in process;
tests/emulator/test_release_emulator.py: the API under SAM's emulator): a stage's stack in moto, the pipeline's
steps run as the workflows run them, and the commands the workflow files contain.

A stage's stack is plain CloudFormation in moto: moto has no SAM transform, and runs Lambda code only in Docker.
It holds what `loopml release` reads from a deployed stack: the API function (with published versions and the
``live`` alias, made through Lambda's API as SAM's AutoPublishAlias would) and the outputs StoreUri and ApiUrl.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile

import yaml

from tests.support import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def stack_template(store: str, url: str) -> str:
    """A stage's stack as CloudFormation JSON: the API function (version 1), outputs StoreUri and ApiUrl."""
    return json.dumps({
        "Resources": {
            "ApiFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
            "ApiFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.13", "Handler": "handlers.api.handler",
                "Role": {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]},
                "Code": {"ZipFile": "def handler(event, context):\n    return 1\n"}}},
            "ApiFunctionVersion1": {"Type": "AWS::Lambda::Version",
                                    "Properties": {"FunctionName": {"Ref": "ApiFunction"}}},
        },
        "Outputs": {"FunctionName": {"Value": {"Ref": "ApiFunction"}}, "StoreUri": {"Value": store},
                    "ApiUrl": {"Value": url}},
    })


def deploy_stack(cfn, lam, name: str, store: str, url: str) -> str:
    """The code pipeline's first deploy of a stage: function version 1 behind ``live``; the function's name."""
    cfn.create_stack(StackName=name, TemplateBody=stack_template(store, url), Capabilities=["CAPABILITY_IAM"])
    outputs = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    function = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "FunctionName")
    lam.create_alias(FunctionName=function, Name="live", FunctionVersion="1")
    return function


def code_deploy(lam, function: str) -> str:
    """A code deploy as SAM's AutoPublishAlias makes it: new code, a published version, ``live`` moved to it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handlers/api.py", "def handler(event, context):\n    return 2\n")
    lam.update_function_code(FunctionName=function, ZipFile=buf.getvalue())
    version = lam.publish_version(FunctionName=function)["Version"]
    lam.update_alias(FunctionName=function, Name="live", FunctionVersion=version)
    return version


def make_smoke(url: str, *extra: str, key: str) -> subprocess.CompletedProcess[str]:
    """`make smoke URL=… …` as the workflows run it (LOOPML_API_KEY and LOOPML_USER from the job's env)."""
    env = {**os.environ, "LOOPML_API_KEY": key, "LOOPML_USER": "github-actions",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "smoke", f"URL={url}",
                           f"LOOPML={sys.executable} -m loopml.cli.main", *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def shape(command: str) -> tuple[str, ...] | None:
    """What a command line runs, without its values: ``loopml <subcommand...> --option...`` or
    ``make <target> NAME=...``, options sorted; None for any other command."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        if word == "make" or word.endswith("/make"):
            target = [w for w in words[i + 1:] if not w.startswith("-") and "=" not in w][:1]
            return ("make", *target, *sorted(w.split("=", 1)[0] for w in words[i + 1:] if "=" in w))
        if word == "loopml" or word.endswith("/loopml"):
            rest, sub = words[i + 1:], []
            for w in rest:
                if w.startswith("-"):
                    break
                sub.append(w)
            return ("loopml", *sub, *sorted({w.split("=", 1)[0] for w in rest if w.startswith("--")}))
    return None


def workflow_shapes(*files: str) -> set[tuple[str, ...]]:
    """The shapes of every `loopml …` and `make …` step in the given workflow files."""
    shapes: set[tuple[str, ...]] = set()
    for name in files:
        doc = yaml.safe_load((WORKFLOWS / name).read_text())
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                run = step.get("run", "")
                if re.search(r"(^|[\s/])(loopml|make)\s", run) and (found := shape(run)):
                    shapes.add(found)
    return shapes
