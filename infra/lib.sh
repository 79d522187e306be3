# shellcheck shell=bash
# Helpers shared by .ci/sam_check.sh, infra/deploy_aws.sh and localstack/deploy.sh (source, don't run).

SAM_CLI_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
LOOPML_TOOLS_DIR="${LOOPML_TOOLS_DIR:-/opt/loopml-tools}"
SAM_VENV="$LOOPML_TOOLS_DIR/sam-venv"
SAM="$SAM_VENV/bin/sam"
# shellcheck disable=SC2034  # used by the scripts that source this file
SAM_PYTHON="$SAM_VENV/bin/python"
HOST_PYTHON="${PYTHON:-python3}"
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1

# The SAM CLI in its own venv: it pins its own boto3/pydantic, which must not meet the project's.
ensure_sam() {
  if "$SAM" --version 2>/dev/null | grep -q "$SAM_CLI_VERSION"; then
    return 0
  fi
  echo "== installing aws-sam-cli $SAM_CLI_VERSION + cfn-lint $CFN_LINT_VERSION into $SAM_VENV" >&2
  mkdir -p "$LOOPML_TOOLS_DIR"
  "$HOST_PYTHON" -m venv "$SAM_VENV"
  "$SAM_VENV/bin/pip" install --disable-pip-version-check --quiet \
    "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
}

# Print one CloudFormation output of a deployed stack: stack_output STACK KEY
stack_output() {
  "$SAM" list stack-outputs --stack-name "$1" --output json \
    | "$HOST_PYTHON" -c 'import json, sys; print({o["OutputKey"]: o["OutputValue"] for o in json.load(sys.stdin)}[sys.argv[1]])' "$2"
}

# Hex SHA-256 of a string, as the API compares it (LOOPML_API_KEY_SHA256).
sha256_hex() {
  printf '%s' "$1" | "$HOST_PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

new_api_key() {
  "$HOST_PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))'
}

# Publish a local store's registry to a remote store: `loopml publish` copies only the versions missing
# there and never writes its aliases or ledger. Only when the remote has no champion yet (a first
# deploy) is the local champion promoted there, through `loopml promote`, so it has a ledger entry;
# after that the remote champion moves only by `loopml promote/rollback --store <remote>`.
# Needs loopml importable by $HOST_PYTHON (the project's venv).
publish_registry() {
  local from="$1" to="$2" champion_of remote local_champion
  champion_of='import sys; from loopml.registry.registry import Registry; from loopml.storage import from_uri; print(Registry(from_uri(sys.argv[1])).alias() or "")'
  "$HOST_PYTHON" -m loopml.cli.main publish --store "$from" --to "$to"
  remote="$("$HOST_PYTHON" -c "$champion_of" "$to")"
  local_champion="$("$HOST_PYTHON" -c "$champion_of" "$from")"
  if [[ -z "$remote" && -n "$local_champion" ]]; then
    "$HOST_PYTHON" -m loopml.cli.main promote "$local_champion" --store "$to" --why "first deploy: the local champion of $from"
  elif [[ -n "$remote" ]]; then
    echo "remote champion stays version $remote (move it with: loopml promote N --store $to --why ...)"
  fi
}
