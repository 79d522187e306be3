#!/usr/bin/env bash
# Deploy loopml's scheduled cycle (CycleFlow: score ▶ monitor ▶ retrain a challenger ▶ gate, in order, on one
# schedule) to Step Functions + AWS Batch or to Argo Workflows + Kubernetes, and run single flows there.
# loopml writes no scheduler of its own: these are Metaflow's own commands, with loopml's image and parameters.
#
#   bash infra/deploy_flows.sh <command> [--branch NAME | --production]
#
#   sfn-create     CycleFlow as a Step Functions state machine on AWS Batch, with its daily @schedule (EventBridge)
#   sfn-trigger    start the deployed CycleFlow now (Step Functions)
#   sfn-json       print the Step Functions definition only (step-functions create --only-json): nothing deployed
#   argo-create    CycleFlow as an Argo WorkflowTemplate + CronWorkflow on Kubernetes
#   argo-trigger   start the deployed CycleFlow now (Argo)
#   argo-json      print the Argo WorkflowTemplate only (argo-workflows create --only-json): nothing deployed
#   train-batch    one TrainFlow run on AWS Batch        (train-k8s: on Kubernetes)
#   print          print every command above without running it
#
# Naming: the flows carry @project(name="loopml"), so every deployment is named <project>.<branch>.<Flow>:
#   (no option)       user.<you>      — a personal deployment
#   --branch NAME     test.NAME       — e.g. --branch staging; two branches (or two projects) never collide
#   --production      prod            — the production deployment (--production --branch NAME: prod.NAME)
# Retried steps (--with retry) are safe: every side effect of the cycle is keyed (see loopml/cycle.py).
#
# Environment:
#   LOOPML_IMAGE   the loopml image (Dockerfile, `make image`), pushed to a registry the cluster can pull from:
#                  required — Metaflow's default image has no loopml, and its tasks would fail on import
#   LOOPML_SPEC    project.yaml on this machine (required); uploaded with the deployment (IncludeFile), so its
#                  data URIs must be s3:// for remote tasks
#   LOOPML_STORE   s3://bucket/prefix (required; the StoreUri output of the SAM stack)
#   LOOPML_SNS_TOPIC_ARN  alert topic (optional; the AlertTopicArn output of the SAM stack)
#   PYTHON         interpreter with loopml and metaflow installed (default: python3; kubernetes too for Argo)
# Metaflow itself must be configured for the target (`metaflow configure aws` / `metaflow configure kubernetes`,
# or the METAFLOW_* variables: datastore S3 root, Batch job queue, Step Functions role, Kubernetes namespace).
# The tasks' IAM role needs the JobPolicyArn output of the SAM stack (infra/README.md, "Metaflow on AWS").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"

usage() { sed -n '2,35p' "$0" >&2; exit 2; }

CMD="${1:-}"
[[ -n "$CMD" ]] || usage
shift
case "$CMD" in
  sfn-create|sfn-trigger|sfn-json|argo-create|argo-trigger|argo-json|train-batch|train-k8s|print) ;;
  *) usage ;;
esac
PROJECT_OPTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --branch) [[ $# -ge 2 && -n "$2" ]] || { echo "--branch needs a name" >&2; exit 2; }
              PROJECT_OPTS+=(--branch "$2"); shift 2 ;;
    --production) PROJECT_OPTS+=(--production); shift ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

DRY_RUN=0
[[ "$CMD" == "print" ]] && DRY_RUN=1
SPEC="${LOOPML_SPEC:-}"
STORE="${LOOPML_STORE:-}"
IMAGE="${LOOPML_IMAGE:-}"
if [[ $DRY_RUN -eq 1 ]]; then
  SPEC="${SPEC:-<project.yaml>}" STORE="${STORE:-s3://<bucket>/<prefix>}" IMAGE="${IMAGE:-<registry>/loopml:<tag>}"
else
  missing=()
  [[ -n "$SPEC" ]] || missing+=(LOOPML_SPEC)
  [[ -n "$STORE" ]] || missing+=(LOOPML_STORE)
  [[ -n "$IMAGE" || "$CMD" == *-trigger ]] || missing+=(LOOPML_IMAGE)
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "set ${missing[*]} (see the header of $0)" >&2
    exit 2
  fi
  if [[ "$STORE" != s3://* ]]; then
    echo "LOOPML_STORE must be an s3:// URI: remote tasks cannot see a local folder" >&2
    exit 2
  fi
  if [[ "$CMD" != *-trigger && ! -f "$SPEC" ]]; then
    echo "LOOPML_SPEC: no such file: $SPEC" >&2
    exit 2
  fi
fi

# The flows as this loopml install has them (a source checkout or the wheel): the same files the image holds.
FLOWS="$(cd "$ROOT" && "$PY" -c 'import loopml.runtime.flowrun as f; print(f.FLOWS)' 2>/dev/null || echo "$ROOT/flows")"
CYCLE="$FLOWS/cycle_flow.py"
TRAIN="$FLOWS/train_flow.py"
PARAMS=(--spec "$SPEC" --store "$STORE")
# the alert topic reaches the remote tasks as an environment variable
ENV_WITH=()
if [[ -n "${LOOPML_SNS_TOPIC_ARN:-}" ]]; then
  ENV_WITH=(--with "environment:vars={\"LOOPML_SNS_TOPIC_ARN\": \"$LOOPML_SNS_TOPIC_ARN\"}")
fi
BATCH=(--with retry --with "batch:image=$IMAGE" "${ENV_WITH[@]}")
K8S=(--with retry --with "kubernetes:image=$IMAGE" "${ENV_WITH[@]}")

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

# Deployed flows take their parameter defaults at create time: the flows read LOOPML_SPEC/LOOPML_STORE for their
# defaults (the spec's text is uploaded with the deployment), so export them to the deploying process.
deploy_env() { export LOOPML_SPEC="$SPEC" LOOPML_STORE="$STORE"; }

sfn_create()   { deploy_env; run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" "${BATCH[@]}" step-functions create; }
sfn_json()     { deploy_env; run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" "${BATCH[@]}" step-functions create --only-json; }
sfn_trigger()  { run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" step-functions trigger; }
argo_create()  { deploy_env; run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" "${K8S[@]}" argo-workflows create; }
argo_json()    { deploy_env; run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" "${K8S[@]}" argo-workflows create --only-json; }
argo_trigger() { run "$PY" "$CYCLE" "${PROJECT_OPTS[@]}" argo-workflows trigger; }
train_batch()  { run "$PY" "$TRAIN" "${PROJECT_OPTS[@]}" "${BATCH[@]}" run "${PARAMS[@]}"; }
train_k8s()    { run "$PY" "$TRAIN" "${PROJECT_OPTS[@]}" "${K8S[@]}" run "${PARAMS[@]}"; }

case "$CMD" in
  sfn-create) sfn_create ;;
  sfn-trigger) sfn_trigger ;;
  sfn-json) sfn_json ;;
  argo-create) argo_create ;;
  argo-trigger) argo_trigger ;;
  argo-json) argo_json ;;
  train-batch) train_batch ;;
  train-k8s) train_k8s ;;
  print) sfn_create; sfn_trigger; argo_create; argo_trigger; train_batch; train_k8s ;;
esac
