#!/usr/bin/env bash
# Deployment checks that run without Docker and without a cloud account:
#   1. sam validate --lint   (SAM transform + cfn-lint on template.yaml, default parameters)
#      template variants     (every combination of the switching parameters: SAM transform, no reference to a
#                             resource the variant does not create, cfn-lint; infra/template_variants.py)
#   2. sam build             (host build via the root Makefile: Linux cp312 wheels, no container)
#   3. package size          (unzipped .aws-sam/build/ApiFunction <= 150 MiB)
#   4. package smoke         (a host-Python twin of the package, imported in isolation, answers
#                             API Gateway events for /health and /openapi.json)
# The SAM CLI lives in its own venv (it pins its own boto3); created here when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=infra/lib.sh
source infra/lib.sh
ensure_sam

# The SAM CLI needs a region for the transform and never talks to AWS here: dummy credentials,
# no telemetry, and no AWS_PROFILE/endpoint that could point it anywhere.
unset AWS_PROFILE AWS_ENDPOINT_URL
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# The Makefile's pip must be the host's Python (3.11), not the SAM venv's; make sure `python3` is it.
export PYTHON="$HOST_PYTHON"

echo "== sam --version: $("$SAM" --version)"

echo "== sam validate --lint"
"$SAM" validate --lint --template-file template.yaml

echo "== template variants (SAM transform + references + cfn-lint, each combination of the switches)"
"$SAM_PYTHON" infra/template_variants.py --template template.yaml

echo "== sam build ApiFunction (the zip; CycleFunction is a container image: make image / sam build with Docker)"
"$SAM" build ApiFunction --template-file template.yaml

echo "== package size"
"$HOST_PYTHON" infra/check_package_size.py .aws-sam/build/ApiFunction --limit-mb 150

echo "== package smoke (host-Python twin of the Lambda package)"
"$HOST_PYTHON" infra/smoke_package.py

echo "sam_check: OK"
