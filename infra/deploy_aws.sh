#!/usr/bin/env bash
# Deploy the loopml stack to AWS (store, API, scheduled cycle, alert topic, jobs' IAM policy), publish the local
# registry, and call the API once. Needs Docker for the scheduled job's image (sam build of the Dockerfile).
#
#   AWS_PROFILE=... AWS_REGION=eu-west-1 bash infra/deploy_aws.sh
#
# Environment (all optional unless said):
#   LOOPML_API_KEY        API key (default: a new random one, printed once; keep it)
#   LOOPML_LOCAL_STORE    local store folder whose registry/ is published (default .loopml; skipped if absent)
#   STACK_NAME            default loopml;  STAGE  default prod;  STORE_PREFIX  default loopml
#   EXISTING_BUCKET       use this bucket as the store instead of creating one
#   ALERT_EMAIL           subscribe this address to the alert topic
#   PREDICT_BODY          JSON file to POST to /predict after the deploy
# Updates of an existing stack shift traffic 10% -> 100% over 5 minutes (CodeDeploy canary); the
# Errors or p99 Duration alarm rolls the alias back, and `sam deploy` then reports the failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=infra/lib.sh
source infra/lib.sh
ensure_sam

STACK_NAME="${STACK_NAME:-loopml}"
STAGE="${STAGE:-prod}"
STORE_PREFIX="${STORE_PREFIX:-loopml}"
LOCAL_STORE="${LOOPML_LOCAL_STORE:-.loopml}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
unset AWS_ENDPOINT_URL  # the real thing

"$SAM_PYTHON" -c 'import boto3; print("deploying as", boto3.client("sts").get_caller_identity()["Arn"])'

API_KEY="${LOOPML_API_KEY:-}"
if [[ -z "$API_KEY" ]]; then
  API_KEY="$(new_api_key)"
  echo "generated a new API key (shown once): $API_KEY"
fi
PARAMS=("Stage=$STAGE" "DeployTarget=aws" "StorePrefix=$STORE_PREFIX" "ApiKeySha256=$(sha256_hex "$API_KEY")")
[[ -n "${EXISTING_BUCKET:-}" ]] && PARAMS+=("ExistingStoreBucket=$EXISTING_BUCKET")
[[ -n "${ALERT_EMAIL:-}" ]] && PARAMS+=("AlertEmail=$ALERT_EMAIL")

echo "== sam validate --lint"
"$SAM" validate --lint
echo "== make wheelhouse (the scheduled job's image installs from it)"
make --no-print-directory wheelhouse
echo "== sam build (the API's zip on this host; the scheduled job's image with Docker)"
PYTHON="$HOST_PYTHON" "$SAM" build
"$HOST_PYTHON" infra/check_package_size.py .aws-sam/build/ApiFunction

echo "== sam deploy ($STACK_NAME, $REGION)"
"$SAM" deploy --stack-name "$STACK_NAME" --region "$REGION" \
  --resolve-s3 --resolve-image-repos --capabilities CAPABILITY_IAM \
  --no-confirm-changeset --no-fail-on-empty-changeset \
  --parameter-overrides "${PARAMS[@]}"

API_URL="$(stack_output "$STACK_NAME" ApiUrl)"
STORE_URI="$(stack_output "$STACK_NAME" StoreUri)"
echo "API: $API_URL"
echo "LOOPML_STORE=$STORE_URI"
echo "LOOPML_SNS_TOPIC_ARN=$(stack_output "$STACK_NAME" AlertTopicArn)"
echo "scheduled cycle: $(stack_output "$STACK_NAME" CycleFunctionName), reads $(stack_output "$STACK_NAME" SpecUri)"
echo "jobs' IAM policy (for a Metaflow stack's AdditionalWorkerPolicyArn): $(stack_output "$STACK_NAME" JobPolicyArn)"

if [[ -d "$LOCAL_STORE/registry" ]]; then
  echo "== publishing $LOCAL_STORE to $STORE_URI (missing versions only; remote aliases and ledger untouched)"
  publish_registry "$LOCAL_STORE" "$STORE_URI"
else
  echo "== no registry in $LOCAL_STORE: nothing published (train on AWS with infra/deploy_flows.sh)"
fi

echo "== smoke test"
curl -fsS --retry 5 --retry-all-errors --retry-delay 3 --max-time 30 "$API_URL/health"; echo
curl -fsS --max-time 30 -H "x-api-key: $API_KEY" "$API_URL/model" || echo "(no model served yet)"; echo
if [[ -n "${PREDICT_BODY:-}" ]]; then
  curl -fsS --max-time 30 -H "x-api-key: $API_KEY" -H "content-type: application/json" \
    --data-binary "@$PREDICT_BODY" "$API_URL/predict"; echo
fi
