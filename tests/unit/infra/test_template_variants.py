"""infra/template_variants.py: conditions resolved per variant, and references to what a variant does not create.

The full check (SAM transform + cfn-lint on every variant of template.yaml) runs in .ci/sam_check.sh with the SAM
CLI's venv; the last test here runs it without cfn-lint when that venv exists.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import REPO as ROOT

SAM_PYTHON = Path(os.environ.get("LOOPML_TOOLS_DIR", "/opt/loopml-tools")) / "sam-venv" / "bin" / "python"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("template_variants", ROOT / "infra" / "template_variants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look the module up by name
    spec.loader.exec_module(module)
    return module


tv = _load()

# a small template in the shape of template.yaml's switches (as yaml_parse reads the short tags)
CLIENTS = {"Fn::Sub": ["${L},,,,,", {"L": {"Fn::Join": [",", {"Ref": "Clients"}]}}]}
TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Target": {"Type": "String", "Default": "aws"},
        "Bucket": {"Type": "String", "Default": ""},
        "Clients": {"Type": "CommaDelimitedList", "Default": ""},
    },
    "Mappings": {"Canary": {"aws": {"On": "true"}, "localstack": {"On": "false"}}},
    "Conditions": {
        "IsAws": {"Fn::Equals": [{"Ref": "Target"}, "aws"]},
        "Canary": {"Fn::Equals": [{"Fn::FindInMap": ["Canary", {"Ref": "Target"}, "On"]}, "true"]},
        "NewBucket": {"Fn::Equals": [{"Ref": "Bucket"}, ""]},
        "AwsAndNewBucket": {"Fn::And": [{"Condition": "IsAws"}, {"Condition": "NewBucket"}]},
        "HasClient2": {"Fn::Not": [{"Fn::Equals": [{"Fn::Select": [1, {"Fn::Split": [",", CLIENTS]}]}, ""]}]},
    },
    "Resources": {
        "Store": {"Type": "AWS::S3::Bucket", "Condition": "NewBucket"},
        "Hook": {"Type": "AWS::Lambda::Function", "Condition": "Canary",
                 "Properties": {"Role": {"Fn::Sub": "arn:${AWS::Partition}:codedeploy:::${Application}/*"}}},
        "Api": {"Type": "AWS::Lambda::Function", "Properties": {
            "Env": {"BUCKET": {"Fn::If": ["NewBucket", {"Ref": "Store"}, {"Ref": "Bucket"}]},
                    "RESERVED": {"Fn::If": ["IsAws", 5, {"Ref": "AWS::NoValue"}]}},
            "Layers": [{"Fn::If": ["IsAws", "layer", {"Ref": "AWS::NoValue"}]}, "always"]}},
    },
    "Outputs": {"HookName": {"Condition": "Canary", "Value": {"Ref": "Hook"}}},
}


def test_variants_cover_every_switch_both_ways() -> None:
    variants = list(tv.variants())
    assert len(variants) == 2 ** len(tv.AXES) == 64
    assert len({tv.variant_name(v) for v in variants}) == 64
    for name, values in tv.AXES.items():
        assert {v[name] for v in variants} == set(values)
    # the switches that travel with an existing bucket go both ways too
    assert {v.get("DataBucket", "") for v in variants} == {"", tv.WITH_EXISTING_BUCKET["DataBucket"]}


@pytest.mark.parametrize(("clients", "expected"), [("", False), ("shop", False), ("shop,mobile", True)])
def test_conditions_evaluate_lists_subs_and_selects(clients: str, expected: bool) -> None:
    values = tv.with_defaults(TEMPLATE, {"Clients": clients})
    assert tv.condition("HasClient2", TEMPLATE, values, {}) is expected


def test_resolve_keeps_what_the_variant_creates() -> None:
    aws = tv.resolve(TEMPLATE, {"Target": "aws"})
    assert set(aws["Resources"]) == {"Store", "Hook", "Api"}
    assert aws["Resources"]["Api"]["Properties"] == {"Env": {"BUCKET": {"Ref": "Store"}, "RESERVED": 5},
                                                     "Layers": ["layer", "always"]}
    assert "Conditions" not in aws and "Condition" not in aws["Resources"]["Hook"]
    assert aws["Parameters"]["Target"]["Default"] == "aws"

    local = tv.resolve(TEMPLATE, {"Target": "localstack", "Bucket": "mine"})
    assert set(local["Resources"]) == {"Api"}
    assert local["Resources"]["Api"]["Properties"] == {"Env": {"BUCKET": {"Ref": "Bucket"}}, "Layers": ["always"]}
    assert local["Outputs"] == {}
    assert local["Parameters"]["Bucket"]["Default"] == "mine"


def test_dangling_references_name_what_is_missing() -> None:
    aws = tv.resolve(TEMPLATE, {"Target": "aws"})
    # the Sub names a resource nobody creates: the ServerlessDeploymentApplication mistake
    assert tv.dangling_references(aws) == ["Resources.Hook.Properties.Role.Fn::Sub: ${Application}"]
    aws["Resources"]["Application"] = {"Type": "AWS::CodeDeploy::Application"}
    assert tv.dangling_references(aws) == []

    broken = {"Parameters": {"P": {}}, "Resources": {
        "A": {"Type": "T", "DependsOn": ["B", "Gone"], "Properties": {
            "Ref": {"Ref": "Missing"}, "Param": {"Ref": "P"}, "Pseudo": {"Ref": "AWS::Region"},
            "Att": {"Fn::GetAtt": ["Nope", "Arn"]}, "Att2": {"Fn::GetAtt": "B.Arn"},
            "Sub": {"Fn::Sub": ["${X}-${B.Arn}-${AWS::AccountId}-${Absent}-${!Literal}", {"X": {"Ref": "Y"}}]}}},
        "B": {"Type": "T"}}}
    assert sorted(tv.dangling_references(broken)) == sorted([
        "Resources.A.DependsOn: Gone", "Resources.A.Properties.Ref.Ref: Missing",
        "Resources.A.Properties.Att.Fn::GetAtt: Nope", "Resources.A.Properties.Sub.Fn::Sub: ${Absent}",
        "Resources.A.Properties.Sub.Fn::Sub.X.Ref: Y"])


def test_inline_parameters_replaces_refs_to_given_parameters_only() -> None:
    node = {"A": {"Ref": "Clients"}, "B": [{"Ref": "Other"}], "C": {"Fn::Sub": "${Clients}"}}
    assert tv.inline_parameters(node, {"Clients": ["a", "b"]}) == {
        "A": ["a", "b"], "B": [{"Ref": "Other"}], "C": {"Fn::Sub": "${Clients}"}}


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="the SAM CLI venv (infra/lib.sh ensure_sam) is not installed")
def test_every_variant_of_template_yaml_transforms_without_dangling_references() -> None:
    done = subprocess.run([str(SAM_PYTHON), "infra/template_variants.py", "--no-lint"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "64 checked, 0 failed" in done.stdout
