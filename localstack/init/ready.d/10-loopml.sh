#!/usr/bin/env bash
# LocalStack ready hook: what `sam deploy --config-env localstack` expects before it runs.
# Runs inside the LocalStack container, where `awslocal` talks to this LocalStack.
set -euo pipefail

SAM_ARTIFACT_BUCKET="${SAM_ARTIFACT_BUCKET:-loopml-sam-artifacts}"  # samconfig.toml [localstack] s3_bucket

if ! awslocal s3api head-bucket --bucket "$SAM_ARTIFACT_BUCKET" >/dev/null 2>&1; then
  awslocal s3 mb "s3://$SAM_ARTIFACT_BUCKET"
fi
echo "loopml: SAM artifact bucket s3://$SAM_ARTIFACT_BUCKET ready"
