"""Every meaningful variant of template.yaml, as CloudFormation sees it after the SAM transform.

`sam validate --lint` lints the template with its default parameters only, and cfn-lint reads SAM resources
without running the transform, so a reference to a resource that only the transform creates (or that a
condition removes) slips through: `${ServerlessDeploymentApplication}` exists only when a DeploymentPreference
is enabled. This script, for each combination of the parameters that switch resources on or off:

1. runs the SAM transform with those parameter values (what `sam deploy` hands to CloudFormation);
2. resolves the conditions with the same values: resources and outputs whose condition is false are dropped,
   `Fn::If` keeps the branch taken (`AWS::NoValue` removes the key);
3. fails on any Ref, GetAtt, Sub variable or DependsOn naming a resource the variant does not create;
4. runs cfn-lint on every resolved variant (one process for all of them).

    python infra/template_variants.py [--template template.yaml] [--no-lint]     # the check (CI: .ci/sam_check.sh)
    python infra/template_variants.py render -p DeployTarget=localstack ... -o OUT  # one resolved SAM template

`render` writes the SAM template (before the transform) with the variant's conditions resolved: what
localstack/deploy.sh builds and deploys, so `sam build` never sees the container-image function the LocalStack
target does not create. Needs the SAM CLI's venv (samtranslator, cfn-lint): run it with $SAM_PYTHON (infra/lib.sh).
The resolving functions import nothing outside the standard library, so unit tests use them directly.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The parameters that switch resources on or off, and the values that make each switch go both ways.
# DeployTarget (with LambdaFunctions) also switches the CodeDeploy canary (template.yaml, mapping GradualDeployment).
AXES: dict[str, tuple[str, ...]] = {
    "DeployTarget": ("aws", "localstack"),
    "ExistingStoreBucket": ("", "an-existing-store-bucket"),
    "UsagePlanClients": ("", "shop,mobile"),
    "CycleSchedule": ("cron(30 1 * * ? *)", "off"),
    "AlertEmail": ("", "ops@example.com"),
    "LambdaFunctions": ("true", "false"),
}
# Required parameters without a default, and switches that travel with the existing bucket (a team that brings
# its bucket also tends to bring its data bucket and a concurrency reservation): every condition goes both ways.
REQUIRED = {"ApiKeySha256": "0" * 64}
WITH_EXISTING_BUCKET = {"DataBucket": "an-existing-data-bucket", "ReservedConcurrency": "5"}

PSEUDO = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
          "AWS::AccountId": "123456789012", "AWS::StackName": "loopml", "AWS::NoValue": None,
          "AWS::StackId": "stack-id", "AWS::NotificationARNs": []}
_SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")
_NO_VALUE = object()


def variants() -> Iterator[dict[str, str]]:
    """Yield the parameter values of every combination of AXES (64 variants)."""
    names = list(AXES)
    for values in itertools.product(*(AXES[n] for n in names)):
        params = dict(REQUIRED, **dict(zip(names, values, strict=True)))
        if params["ExistingStoreBucket"]:
            params.update(WITH_EXISTING_BUCKET)
        yield params


def variant_name(params: dict[str, str]) -> str:
    """A short, file-name-safe label of a variant, e.g. `localstack-newbucket-noplan-schedule-noemail-nolambda`."""
    return "-".join([
        params["DeployTarget"],
        "existingbucket" if params["ExistingStoreBucket"] else "newbucket",
        "plan" if params["UsagePlanClients"] else "noplan",
        "noschedule" if params["CycleSchedule"] == "off" else "schedule",
        "email" if params["AlertEmail"] else "noemail",
        *([] if params["LambdaFunctions"] == "true" else ["nolambda"]),
    ])


def with_defaults(template: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The variant's value of every parameter: the given ones, else the template's defaults."""
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        raw = params.get(name, spec.get("Default"))
        if spec.get("Type") == "CommaDelimitedList" and isinstance(raw, str):
            raw = raw.split(",")
        values[name] = raw
    return values


def evaluate(node: Any, template: dict[str, Any], values: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """The value of a parameter-level expression (what CloudFormation computes before creating anything).

    Handles what conditions and names are made of: Ref (parameters and pseudo parameters), Fn::Equals/Not/And/Or,
    Condition, Fn::FindInMap, Fn::Join, Fn::Select, Fn::Split and Fn::Sub with its variable map.
    """
    def ev(n: Any) -> Any:
        return evaluate(n, template, values, conditions)

    if not isinstance(node, dict) or len(node) != 1:
        return [ev(n) for n in node] if isinstance(node, list) else node
    (fn, arg), = node.items()
    if fn == "Ref":
        return values[arg] if arg in values else PSEUDO[arg]
    if fn == "Condition":
        return condition(arg, template, values, conditions)
    if fn == "Fn::Equals":
        left, right = ev(arg[0]), ev(arg[1])
        return str(left) == str(right)
    if fn == "Fn::Not":
        return not ev(arg[0])
    if fn == "Fn::And":
        return all(ev(a) for a in arg)
    if fn == "Fn::Or":
        return any(ev(a) for a in arg)
    if fn == "Fn::FindInMap":
        name, key, attr = (ev(a) for a in arg)
        return template["Mappings"][name][key][attr]
    if fn == "Fn::Join":
        return ev(arg[0]).join(str(v) for v in ev(arg[1]))
    if fn == "Fn::Select":
        return ev(arg[1])[int(ev(arg[0]))]
    if fn == "Fn::Split":
        return ev(arg[1]).split(ev(arg[0]))
    if fn == "Fn::Sub":
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], {k: ev(v) for k, v in arg[1].items()})
        return _SUB_VAR.sub(lambda m: str(local[m[1]] if m[1] in local else ev({"Ref": m[1]})), text)
    return node


def condition(name: str, template: dict[str, Any], values: dict[str, Any], conditions: dict[str, bool]) -> bool:
    """The value of a named condition (memoized in `conditions`)."""
    if name not in conditions:
        conditions[name] = bool(evaluate(template["Conditions"][name], template, values, conditions))
    return conditions[name]


def resolve(template: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation creates it for these parameter values: no conditions left.

    Resources and outputs whose condition is false are dropped, every `Fn::If` is replaced by the branch taken
    (a branch that is `AWS::NoValue` removes its key or list item), the Conditions section goes, and the given
    values become the parameters' defaults.
    """
    values = with_defaults(template, params)
    conditions: dict[str, bool] = {}
    for name in template.get("Conditions", {}):
        condition(name, template, values, conditions)

    def keep(section: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in section.items() if "Condition" not in v or conditions[v["Condition"]]}

    out = {k: v for k, v in copy.deepcopy(template).items() if k != "Conditions"}
    for section in ("Resources", "Outputs"):
        if section in out:
            out[section] = {k: _drop_condition(v) for k, v in keep(out[section]).items()}
    # the variant's values as defaults, so a linter that resolves parameters sees what this variant deploys
    for name, spec in out.get("Parameters", {}).items():
        if name in params:
            spec["Default"] = params[name]
    return _resolve_ifs(out, conditions)


def _drop_condition(entry: dict[str, Any]) -> dict[str, Any]:
    """A resource or output without its Condition key (resolved: it exists)."""
    return {k: v for k, v in entry.items() if k != "Condition"}


def _resolve_ifs(node: Any, conditions: dict[str, bool]) -> Any:
    if isinstance(node, list):
        items = (_resolve_ifs(n, conditions) for n in node)
        return [n for n in items if n is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        name, yes, no = node["Fn::If"]
        return _resolve_ifs(yes if conditions[name] else no, conditions)
    if node == {"Ref": "AWS::NoValue"}:
        return _NO_VALUE
    items = ((k, _resolve_ifs(v, conditions)) for k, v in node.items())
    return {k: v for k, v in items if v is not _NO_VALUE}


def inline_parameters(node: Any, params: dict[str, str]) -> Any:
    """The template with every `Ref` to a given parameter replaced by its value.

    So cfn-lint checks the values this variant deploys: left as a Ref, a switch such as ReservedConcurrency
    is checked against every value its parameter allows, including the -1 that the condition keeps out.
    """
    if isinstance(node, list):
        return [inline_parameters(n, params) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] in params:
        return params[node["Ref"]]
    return {k: inline_parameters(v, params) for k, v in node.items()}


def dangling_references(template: dict[str, Any]) -> list[str]:
    """Every Ref, GetAtt, Sub variable and DependsOn that names neither a resource nor a parameter of the template.

    Each as `<where>: <what>`, e.g. `Resources.HookRole...: ${ServerlessDeploymentApplication}`.
    """
    resources = set(template.get("Resources", {}))
    known = resources | set(template.get("Parameters", {})) | set(PSEUDO)
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, n in enumerate(node):
                walk(n, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            here = f"{where}.{key}"
            if key == "Ref" and isinstance(value, str) and value not in known:
                found.append(f"{here}: {value}")
            elif key == "Fn::GetAtt":
                target = value.split(".", 1)[0] if isinstance(value, str) else value[0]
                if target not in resources:
                    found.append(f"{here}: {target}")
            elif key == "Fn::Sub":
                text, names = (value, frozenset()) if isinstance(value, str) else (value[0], frozenset(value[1]))
                for var in _SUB_VAR.findall(text):
                    base = var.split(".", 1)[0]
                    if var not in names and var not in known and base not in resources:
                        found.append(f"{here}: ${{{var}}}")
                if not isinstance(value, str):
                    walk(value[1], here)
                continue
            walk(value, here)

    for name, resource in template.get("Resources", {}).items():
        depends = resource.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            if target not in resources:
                found.append(f"Resources.{name}.DependsOn: {target}")
        walk(resource, f"Resources.{name}")
    walk(template.get("Outputs", {}), "Outputs")
    return found


def load_sam(path: Path) -> dict[str, Any]:
    """template.yaml as a dict, CloudFormation's short tags (!Ref, !Sub, ...) read as intrinsics."""
    from samtranslator.yaml_helper import yaml_parse  # the SAM CLI's venv

    return yaml_parse(path.read_text())


def sam_transform(template: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The SAM transform of the template with these parameter values, as `sam deploy` would hand it over.

    Local code locations become placeholders first, as `sam validate` does: packaging replaces them anyway.
    """
    from samtranslator.translator.transform import transform  # the SAM CLI's venv

    class NoManagedPolicies:
        """The template names no AWS managed policy: nothing to look up, and no AWS call."""

        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(template)
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if props.get("PackageType") == "Image" and "ImageUri" not in props:
            props["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/placeholder:latest"
        elif isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = "s3://placeholder-bucket/placeholder-key"
    return transform(template, params, NoManagedPolicies())


def check(template_path: Path, lint: bool) -> int:
    """Transform, resolve and check every variant; then cfn-lint them all. Returns the number of failures."""
    import logging

    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # feature-toggle chatter, once per variant
    sam = load_sam(template_path)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="loopml-variants-") as tmp:
        files = []
        for params in variants():
            name = variant_name(params)
            try:
                resolved = resolve(sam_transform(sam, params), params)
            except Exception as err:  # the transform's own errors name the resource: report them per variant
                print(f"FAIL {name}: SAM transform: {err}")
                failures += 1
                continue
            dangling = dangling_references(resolved)
            for ref in dangling:
                print(f"FAIL {name}: reference to a resource this variant does not create: {ref}")
            failures += bool(dangling)
            if not dangling:
                print(f"ok   {name}: {len(resolved['Resources'])} resources")
            path = Path(tmp) / f"{name}.json"
            given = {k: v for k, v in with_defaults(sam, params).items() if k in params}  # lists split
            path.write_text(json.dumps(inline_parameters(resolved, given), indent=1))
            files.append(str(path))
        if lint and files:
            # one cfn-lint process for every variant
            cfn_lint = str(Path(sys.executable).parent / "cfn-lint")  # beside samtranslator, in the SAM CLI venv
            # unused parameters and mappings are what resolving leaves behind, not defects of the variant
            lint_run = subprocess.run([cfn_lint, "--format", "parseable", "--ignore-checks", "W2001", "W7001", "--", *files],
                                      capture_output=True, text=True)
            for line in lint_run.stdout.splitlines():
                print(f"FAIL cfn-lint {line.replace(tmp + '/', '')}")
            failures += lint_run.returncode != 0
            if lint_run.returncode == 0:
                print(f"ok   cfn-lint: {len(files)} resolved variants clean")
            elif not lint_run.stdout:
                print(f"FAIL cfn-lint exited {lint_run.returncode}: {lint_run.stderr[-2000:]}")
    return failures


def render(template_path: Path, params: dict[str, str], out: Path) -> None:
    """Write the SAM template with this variant's conditions resolved, its code paths absolute (see module doc)."""
    import yaml

    sam = resolve(load_sam(template_path), params)
    base = template_path.resolve().parent
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = str((base / props["CodeUri"]).resolve())
    out.write_text(yaml.safe_dump(sam, sort_keys=False, width=120))


def main(argv: list[str] | None = None) -> int:
    """Command line: the check (default) or `render`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", nargs="?", default="check", choices=["check", "render"])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--no-lint", action="store_true", help="check: skip cfn-lint")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="render: a parameter")
    parser.add_argument("-o", "--out", type=Path, help="render: where to write the resolved SAM template")
    args = parser.parse_args(argv)
    if args.command == "render":
        if not args.out:
            parser.error("render needs -o OUT")
        params = dict(REQUIRED, **dict(p.split("=", 1) for p in args.param))
        render(args.template, params, args.out)
        return 0
    failures = check(args.template, lint=not args.no_lint)
    print(f"template variants: {sum(1 for _ in variants())} checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
