#!/usr/bin/env bash
# Deploy the loopml serving stack to LocalStack and call it (the tested recipe: docs/localstack.md).
#
#   bash infra/localstack.sh start            # LocalStack's own Python runtime on 127.0.0.1:4566, no Docker
#   (or: docker compose -f localstack/docker-compose.yml up -d)
#   bash localstack/deploy.sh                 # store from ./.loopml (train first, e.g. `make demo`)
#
# The template is rendered for DeployTarget=localstack first (infra/template_variants.py render): the resources
# that target does not create (the container-image CycleFunction, the canary's CodeDeploy parts) are left out,
# so `sam build` needs no container runtime and `sam deploy` no image repository.
#
# Environment (all optional):
#   LOOPML_LOCAL_STORE  local store folder to publish (default .loopml)
#   LOOPML_PUBLISH      0 = deploy only: publish no registry, call no API (the stack's own check, CI)
#   LOCALSTACK_LAMBDA   0 = no Lambda functions (an offline LocalStack cannot create them: docs/localstack.md)
#   PARAMETERS          extra template parameters, e.g. "UsagePlanClients=shop AlertEmail=ops@example.com"
#   LOOPML_API_KEY      API key to deploy with (default: a new random one, printed once)
#   STACK_NAME          default loopml-local;   STAGE  default local
#   PREDICT_BODY        JSON file to POST to /predict (e.g. {"rows": [{...}]}); skipped when unset
#   AWS_ENDPOINT_URL    default http://localhost:4566
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=infra/lib.sh
source infra/lib.sh
ensure_sam

STACK_NAME="${STACK_NAME:-loopml-local}"
STAGE="${STAGE:-local}"
STORE_PREFIX="${STORE_PREFIX:-loopml}"
LOCAL_STORE="${LOOPML_LOCAL_STORE:-.loopml}"

# Every AWS client here (SAM CLI, boto3) goes to LocalStack, with dummy credentials.
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
# Path-style S3 addressing: <bucket>.localhost does not resolve everywhere.
AWS_CONFIG_FILE="$(mktemp)"
export AWS_CONFIG_FILE
trap 'rm -f "$AWS_CONFIG_FILE"' EXIT
printf '[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"

echo "== waiting for LocalStack at $AWS_ENDPOINT_URL"
for _ in $(seq 1 60); do
  if curl -fsS "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null 2>&1; then break; fi
  sleep 2
done
curl -fsS "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null || { echo "LocalStack is not up" >&2; exit 1; }

PUBLISH="${LOOPML_PUBLISH:-1}"
if [[ "$PUBLISH" != 0 && ! -d "$LOCAL_STORE/registry" ]]; then
  echo "no registry in $LOCAL_STORE: train and register a model first (or set LOOPML_LOCAL_STORE)" >&2
  exit 1
fi

API_KEY="${LOOPML_API_KEY:-$(new_api_key)}"
API_KEY_SHA256="$(sha256_hex "$API_KEY")"

# shellcheck disable=SC2206  # PARAMETERS is a list of NAME=VALUE words
PARAMS=("Stage=$STAGE" "DeployTarget=localstack" "StorePrefix=$STORE_PREFIX"
  "LambdaFunctions=$([[ "${LOCALSTACK_LAMBDA:-1}" == 0 ]] && echo false || echo true)" ${PARAMETERS:-})

echo "== the SAM artifact bucket (samconfig.toml [localstack] s3_bucket)"
"$SAM_PYTHON" - <<'PY'
import boto3
s3 = boto3.client("s3")
if "loopml-sam-artifacts" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket="loopml-sam-artifacts")
PY

echo "== the template for DeployTarget=localstack (${PARAMS[*]})"
RENDERED=.aws-sam/localstack/template.yaml
mkdir -p "$(dirname "$RENDERED")"
render_args=()
for p in "${PARAMS[@]}"; do render_args+=(-p "$p"); done
"$SAM_PYTHON" infra/template_variants.py render "${render_args[@]}" -o "$RENDERED"

echo "== sam build"
PYTHON="$HOST_PYTHON" "$SAM" build --config-env localstack --template-file "$RENDERED"

echo "== sam deploy (DeployTarget=localstack: all-at-once, no CodeDeploy)"
"$SAM" deploy --config-env localstack --stack-name "$STACK_NAME" \
  --no-confirm-changeset --no-fail-on-empty-changeset \
  --parameter-overrides "${PARAMS[@]}" "ApiKeySha256=$API_KEY_SHA256"

if [[ "$PUBLISH" == 0 ]]; then
  echo "Deployed stack $STACK_NAME to LocalStack (LOOPML_PUBLISH=0: no registry published, no API called)."
  exit 0
fi

STORE_URI="$(stack_output "$STACK_NAME" StoreUri)"
TOPIC_ARN="$(stack_output "$STACK_NAME" AlertTopicArn)"

echo "== publishing $LOCAL_STORE to $STORE_URI (missing versions only; remote aliases and ledger untouched)"
publish_registry "$LOCAL_STORE" "$STORE_URI"

if [[ "${LOCALSTACK_LAMBDA:-1}" == 0 ]]; then
  echo "Deployed without functions (LOCALSTACK_LAMBDA=0): no API to call. LOOPML_STORE=$STORE_URI, alerts $TOPIC_ARN"
  exit 0
fi
API_ID="$(stack_output "$STACK_NAME" ApiId)"
API_URL="$AWS_ENDPOINT_URL/restapis/$API_ID/$STAGE/_user_request_"

echo "== calling $API_URL"
# The first call starts the Lambda container (image pull on a fresh machine): allow time.
curl -fsS --retry 10 --retry-all-errors --retry-delay 3 --max-time 120 "$API_URL/health"; echo
curl -fsS --max-time 60 -H "x-api-key: $API_KEY" "$API_URL/model"; echo
if [[ -n "${PREDICT_BODY:-}" ]]; then
  curl -fsS --max-time 60 -H "x-api-key: $API_KEY" -H "content-type: application/json" \
    --data-binary "@$PREDICT_BODY" "$API_URL/predict"; echo
fi

cat <<EOF

Deployed to LocalStack.
  API           $API_URL   (also http://$API_ID.execute-api.localhost.localstack.cloud:4566/$STAGE)
  API key       $API_KEY   (header x-api-key; only its SHA-256 is stored)
  LOOPML_STORE  $STORE_URI
  Alert topic   $TOPIC_ARN
The API re-reads the champion alias every LOOPML_MODEL_TTL_SECONDS (60 s): a model published after the
first call shows up within a minute.
EOF
