"""Import the Lambda package in isolation and send it API Gateway events, without Docker or Python 3.13.

The real package holds CPython 3.13 wheels, which this machine's Python cannot load. So this builds a
twin with the *same* Makefile target, the same requirements and the same stripping, only with wheels
for the host's Python, adds what the Lambda runtime provides (boto3), and then, in a fresh interpreter
that sees nothing else (``python -I -S``: no site-packages, no user site, no PYTHON* variables):

* imports ``handlers.api`` (which catches a module the package lacks, e.g. pandas on the serving path,
  or a test folder that the strip step removed but something imports);
* calls ``handler`` with REST API (v1) events for GET /health and GET /openapi.json against an empty
  local store, and prints the answers. A 500 or an exception fails the check.

    python infra/smoke_package.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PROVIDED = ["boto3==1.43.117"]  # the Lambda Python runtime ships boto3; match the project pin

DRIVER = r"""
import sys
sys.path[:0] = sys.argv[1:]  # the twin package, then what the runtime provides; nothing else
import handlers.api as api
loaded = sorted({m.split(".")[0] for m in sys.modules})
heavy = [m for m in ("pandas", "sklearn", "awswrangler", "nannyml", "metaflow", "joblib") if m in loaded]

class Ctx:
    function_name = "ApiFunction"; memory_limit_in_mb = 1024; aws_request_id = "smoke"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:ApiFunction:live"
    def get_remaining_time_in_millis(self): return 29000

def event(method, path):
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"accept": "application/json", "host": "smoke.local"},
        "multiValueHeaders": {"accept": ["application/json"], "host": ["smoke.local"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": "/smoke" + path,
                           "stage": "smoke", "requestId": "smoke", "identity": {"sourceIp": "127.0.0.1"}},
    }

failed = False
for method, path in (("GET", "/health"), ("GET", "/openapi.json")):
    out = api.handler(event(method, path), Ctx())
    status = out.get("statusCode")
    body = out.get("body") or ""
    print(f"smoke: {method} {path} -> {status} {body[:160]!r}")
    failed |= not isinstance(status, int) or status == 500
print("smoke: heavy modules imported on the serving path:", heavy or "none")
sys.exit(1 if failed or heavy else 0)
"""


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the twin here and keep it (default: a temp folder)")
    args = parser.parse_args(argv)

    if not (ROOT / "handlers" / "api.py").exists():
        print("smoke: handlers/api.py does not exist yet: skipped")
        return 0
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loopml-smoke-"))
    pkg, runtime, store = work / "pkg", work / "runtime", work / "store"
    for d in (pkg, runtime):
        shutil.rmtree(d, ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        env = dict(os.environ, ARTIFACTS_DIR=str(pkg))
        run(["make", "--no-print-directory", "-C", str(ROOT), "build-ApiFunction",
             f"PYTHON={sys.executable}", f"LAMBDA_PYTHON_VERSION={host}", "LAMBDA_PYC=no"], env=env, stdout=subprocess.DEVNULL)
        run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-conflicts",
             "--root-user-action=ignore", "--quiet", "--no-compile",
             "-t", str(runtime), *RUNTIME_PROVIDED])
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LOOPML_", "AWS_"))}
        clean.update(LOOPML_STORE=str(store), LOOPML_API_KEY_SHA256="0" * 64, AWS_DEFAULT_REGION="us-east-1",
                     LOOPML_OBSERVABILITY="json")  # as the template sets it: powertools must import from the package
        # -I -S: no site-packages, no user site, no PYTHON* variables, no cwd on sys.path.
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", DRIVER, str(pkg), str(runtime)],
                              env=clean, cwd=work)
        print("smoke:", "OK" if proc.returncode == 0 else "FAIL")
        return proc.returncode
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
