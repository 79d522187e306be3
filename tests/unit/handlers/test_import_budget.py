"""The ONNX serving path stays slim: a cold Lambda (a fresh interpreter importing ``handlers.api``)
answers a REST event without ever importing pandas, scikit-learn, scipy or pyarrow.

Behaviour only: no timings here (those live in bench/bench_serving.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from loopml.registry.registry import Registry
from loopml.storage import LocalStore
from tests.support import REPO as ROOT

HEAVY = ("pandas", "sklearn", "scipy", "pyarrow")
KEY = "import-budget-key"

CHILD = """
import json, sys

event = json.loads(sys.stdin.read())
import handlers.api

response = handlers.api.handler(event, None)
print(json.dumps({"status": response["statusCode"], "body": response["body"],
                  "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def rest_v1_event(row: dict) -> dict:
    """An API Gateway REST (v1 proxy) event for POST /predict."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json",
               "x-api-key": KEY, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    return {
        "resource": "/{proxy+}", "path": "/predict", "httpMethod": "POST",
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "predict"}, "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "POST", "path": "/Prod/predict",
                           "stage": "Prod", "accountId": "123456789012", "apiId": "abc123",
                           "requestId": "import-budget", "identity": {"sourceIp": "203.0.113.7"}},
        "body": json.dumps({"row": row}), "isBase64Encoded": False,
    }


def test_onnx_cold_start_imports_no_heavy_modules(tmp_path: Path, linear_trained, sample_rows) -> None:
    store = LocalStore(tmp_path / "store")
    number = linear_trained.register(store, promote=False)
    registry = Registry(store)
    assert registry.get(number).has_onnx, "precondition: the version must carry model.onnx"
    registry.set_alias("champion", number, why="import budget test")

    env = {**os.environ, "LOOPML_STORE": str(store.root), "LOOPML_ALIAS": "champion",
           "LOOPML_API_KEY_SHA256": hashlib.sha256(KEY.encode()).hexdigest(),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", CHILD.replace("HEAVY", repr(HEAVY))], input=json.dumps(rest_v1_event(sample_rows[0])),
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["status"] == 200, out["body"]
    body = json.loads(out["body"])
    assert body["served_as"] == "onnx"
    assert body["model_version"] == number
    assert out["loaded"] == [], f"the ONNX serving path imported {out['loaded']}"


# ------------------------------------------------------------------ read-only commands, structure
READ_ONLY_HEAVY = ("pandas", "numpy", "sklearn", "scipy", "pyarrow", "nannyml", "metaflow", "onnxruntime",
                   "fastapi", "pydantic_settings")
CLI_CHILD = """
import json, sys
from loopml.cli.main import main

code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def _cli_imports(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", CLI_CHILD.replace("HEAVY", repr(READ_ONLY_HEAVY)), *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_read_only_commands_import_only_what_they_use(tmp_path: Path, linear_trained) -> None:
    """`status`, `ledger` and `compare` read JSON from the store: no pandas, NumPy, scikit-learn, NannyML
    or Metaflow (what made `loopml status` slow). Judged by the modules imported, not by a clock."""
    store = LocalStore(tmp_path / "store")
    number = linear_trained.register(store, promote=True)
    for args in (["status"], ["status", "--json"], ["ledger"], ["compare", str(number), str(number)]):
        out = _cli_imports([*args, "--store", str(store.root)])
        assert out == {"code": 0, "loaded": []}, (args, out)


def test_the_core_imports_neither_handlers_nor_flows() -> None:
    """loopml/ is the core: handlers/ (the Lambda shell) and flows/ (Metaflow) depend on it, never the
    reverse. `loopml serve` names the app for uvicorn as a string instead of importing it."""
    import ast

    offenders = []
    for path in sorted((ROOT / "loopml").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in ("handlers", "flows", "flowbase")]
    assert offenders == []


def test_the_cli_runs_as_a_script_without_shadowing_the_standard_library() -> None:
    """`python loopml/cli/main.py` puts loopml/cli/ first on sys.path: no module there may shadow the stdlib
    (loopml/inspect.py did, and --help crashed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "loopml/cli/main.py", "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: loopml" in proc.stdout
    shadowing = sorted(p.stem for p in (ROOT / "loopml").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert shadowing == []
