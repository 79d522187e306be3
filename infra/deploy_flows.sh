#!/usr/bin/env bash
# Run and schedule loopml's Metaflow flows on AWS (Batch + Step Functions) or Kubernetes (+ Argo).
# loopml writes no scheduler of its own: these are Metaflow's own commands, with loopml's parameters.
#
#   bash infra/deploy_flows.sh <command>
#
#   train-batch      python flows/train_flow.py run --with batch       (one training run on AWS Batch)
#   train-k8s        python flows/train_flow.py run --with kubernetes  (one training run on Kubernetes)
#   sfn-create       TrainFlow, ScoreFlow, MonitorFlow as Step Functions state machines (the @schedule of
#                    ScoreFlow/MonitorFlow applies; MonitorFlow starts TrainFlow when it decides to retrain)
#   sfn-trigger      start ScoreFlow then MonitorFlow now, on Step Functions
#   argo-create      ScoreFlow + MonitorFlow as Argo WorkflowTemplates + CronWorkflows
#   argo-trigger     start ScoreFlow then MonitorFlow now, on Argo
#   print            print every command above without running it
#
# Environment:
#   LOOPML_SPEC    project.yaml on this machine (required); the flows take it as a Metaflow IncludeFile, so its
#                  text is uploaded with the run or deployment (its data URIs must be s3:// for remote tasks)
#   LOOPML_STORE   s3://bucket/prefix (required; the StoreUri output of the SAM stack)
#   LOOPML_IMAGE   container image with loopml's requirements (optional; else Metaflow's default image)
#   LOOPML_SNS_TOPIC_ARN  alert topic for MonitorFlow (optional; the AlertTopicArn output of the SAM stack)
#   PYTHON         interpreter with metaflow installed (default: python3)
# Metaflow itself must be configured for the target (`metaflow configure aws` / `metaflow configure kubernetes`:
# datastore S3 root, Batch job queue or Kubernetes namespace, Step Functions role or Argo namespace).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
CMD="${1:-print}"
case "$CMD" in
  train-batch|train-k8s|sfn-create|sfn-trigger|argo-create|argo-trigger|print) ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
DRY_RUN=0
[[ "$CMD" == "print" ]] && DRY_RUN=1

SPEC="${LOOPML_SPEC:-}"
STORE="${LOOPML_STORE:-}"
if [[ $DRY_RUN -eq 1 ]]; then
  SPEC="${SPEC:-<spec>}"
  STORE="${STORE:-s3://<bucket>/<prefix>}"
elif [[ -z "$SPEC" || -z "$STORE" ]]; then
  echo "set LOOPML_SPEC and LOOPML_STORE (s3://bucket/prefix)" >&2
  exit 2
fi
if [[ $DRY_RUN -eq 0 && "$STORE" != s3://* ]]; then
  echo "LOOPML_STORE must be an s3:// URI: remote tasks cannot see a local folder" >&2
  exit 2
fi

BATCH="batch"
K8S="kubernetes"
if [[ -n "${LOOPML_IMAGE:-}" ]]; then
  BATCH="batch:image=$LOOPML_IMAGE"
  K8S="kubernetes:image=$LOOPML_IMAGE"
fi
PARAMS=(--spec "$SPEC" --store "$STORE")
# MonitorFlow reads LOOPML_SNS_TOPIC_ARN in its task: hand it to the remote environment.
MONITOR_WITH=()
if [[ -n "${LOOPML_SNS_TOPIC_ARN:-}" ]]; then
  MONITOR_WITH=(--with "environment:vars={\"LOOPML_SNS_TOPIC_ARN\": \"$LOOPML_SNS_TOPIC_ARN\"}")
fi

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

train_batch() { run "$PY" flows/train_flow.py run --with retry --with "$BATCH" "${PARAMS[@]}"; }
train_k8s()   { run "$PY" flows/train_flow.py run --with retry --with "$K8S" "${PARAMS[@]}"; }

# Deployed flows take their parameter defaults at create time: the flows read LOOPML_SPEC/LOOPML_STORE
# for their defaults, so export them to the deploying process.
sfn_create() {
  # MonitorFlow starts the deployed TrainFlow (challenger mode) when its decision is to retrain
  export LOOPML_SPEC="$SPEC" LOOPML_STORE="$STORE" LOOPML_RETRAIN_ON=step-functions
  run "$PY" flows/train_flow.py --with retry --with "$BATCH" step-functions create
  run "$PY" flows/score_flow.py --with retry --with "$BATCH" step-functions create
  run "$PY" flows/monitor_flow.py --with retry --with "$BATCH" "${MONITOR_WITH[@]}" step-functions create
}
# a deployed flow already holds its spec (IncludeFile, uploaded at create time) and store: trigger as deployed
sfn_trigger() {
  run "$PY" flows/score_flow.py step-functions trigger
  run "$PY" flows/monitor_flow.py step-functions trigger
}
argo_create() {
  export LOOPML_SPEC="$SPEC" LOOPML_STORE="$STORE"
  run "$PY" flows/score_flow.py --with retry --with "$K8S" argo-workflows create
  run "$PY" flows/monitor_flow.py --with retry --with "$K8S" "${MONITOR_WITH[@]}" argo-workflows create
}
argo_trigger() {
  run "$PY" flows/score_flow.py argo-workflows trigger
  run "$PY" flows/monitor_flow.py argo-workflows trigger
}

case "$CMD" in
  train-batch) train_batch ;;
  train-k8s) train_k8s ;;
  sfn-create) sfn_create ;;
  sfn-trigger) sfn_trigger ;;
  argo-create) argo_create ;;
  argo-trigger) argo_trigger ;;
  print)
    train_batch; train_k8s; sfn_create; sfn_trigger; argo_create; argo_trigger ;;
  *)
    sed -n '2,22p' "$0" >&2
    exit 2 ;;
esac
