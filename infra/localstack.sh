#!/usr/bin/env bash
# LocalStack's own Python runtime (no Docker, no auth token), listening on 127.0.0.1 only (docs/localstack.md).
#
#   bash infra/localstack.sh install            its venv ($LOOPML_TOOLS_DIR/localstack-venv, Python 3.13) from
#                                               localstack/requirements.txt; skipped when that lock is installed
#   bash infra/localstack.sh start [PORT]       start it (default port 4566), wait until it answers; pid and log in
#                                               $LOCALSTACK_STATE (default $LOOPML_TOOLS_DIR/localstack)
#   bash infra/localstack.sh stop               stop the one this script started (by its pid file)
#
# Settings, and why:
#   GATEWAY_LISTEN=[::ffff:127.0.0.1]:PORT  localstack-core binds an IPv4 listen address to every interface (its
#       twisted server passes no interface for IPv4), but an IPv6 one to that address: the IPv4-mapped loopback
#       address is a dual-stack socket that accepts 127.0.0.1 and nothing else (needs IPv6 in the kernel).
#   DNS_ADDRESS=0                          no DNS server (it would bind port 53 on every interface)
#   LOCALSTACK_CFN_ENGINE (PROVIDER_OVERRIDE_CLOUDFORMATION), default: LocalStack's v2 engine. It hangs on
#       template.yaml as written (resolving its conditions), not on the variant localstack/deploy.sh renders, and
#       unlike engine-legacy it honours DeletionPolicy: Retain (the store bucket outlives the stack).
#   FILESYSTEM_ROOT=$LOCALSTACK_STATE/fs   its state and caches stay under the state folder
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

LOCALSTACK_VENV="$LOOPML_TOOLS_DIR/localstack-venv"
LOCK="$ROOT/localstack/requirements.txt"
STATE="${LOCALSTACK_STATE:-$LOOPML_TOOLS_DIR/localstack}"
PID_FILE="$STATE/localstack.pid"
LOG_FILE="$STATE/localstack.log"
SERVICES="s3,sns,iam,sts,cloudformation,apigateway,lambda,events,logs,cloudwatch,ssm"

die() { printf 'localstack.sh: %s\n' "$*" >&2; exit 2; }

# Python 3.13: on PATH, else pyenv's newest 3.13
python313() {
  if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import venv' 2>/dev/null; then
    command -v python3.13
    return
  fi
  local root candidate
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  candidate="$(ls -d "$root"/versions/3.13* 2>/dev/null | sort -V | tail -1)"
  [[ -n "$candidate" && -x "$candidate/bin/python3.13" ]] || die "Python 3.13 not found (PATH or pyenv)"
  echo "$candidate/bin/python3.13"
}

cmd_install() {
  local marker="$LOCALSTACK_VENV/.lock-sha256" want
  want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "== localstack: $LOCALSTACK_VENV is up to date" >&2
    return
  fi
  echo "== localstack: installing localstack-core into $LOCALSTACK_VENV" >&2
  rm -rf "$LOCALSTACK_VENV"
  "$(python313)" -m venv "$LOCALSTACK_VENV"
  "$LOCALSTACK_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$LOCK" \
    2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" >"$marker"
}

running() { [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

cmd_start() {
  local port="${1:-4566}"
  [[ -e /proc/net/if_inet6 ]] || die "IPv6 is off in this kernel: the loopback-only listen address needs it"
  cmd_install
  running && die "already running (pid $(cat "$PID_FILE")); stop it first"
  mkdir -p "$STATE/fs"
  env GATEWAY_LISTEN="[::ffff:127.0.0.1]:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
    DNS_ADDRESS=0 PROVIDER_OVERRIDE_CLOUDFORMATION="${LOCALSTACK_CFN_ENGINE:-}" SERVICES="$SERVICES" \
    FILESYSTEM_ROOT="$STATE/fs" SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
    nohup "$LOCALSTACK_VENV/bin/python" -m localstack.runtime.main >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  local i
  for i in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/_localstack/health" >/dev/null 2>&1; then
      echo "== localstack: ready on 127.0.0.1:$port after $((i / 2)) s (pid $(cat "$PID_FILE"), log $LOG_FILE)" >&2
      return
    fi
    running || break
    sleep 0.5
  done
  tail -30 "$LOG_FILE" >&2
  die "LocalStack did not come up (log: $LOG_FILE)"
}

cmd_stop() {
  if running; then
    local pid
    pid="$(cat "$PID_FILE")"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "== localstack: stopped (pid $pid)" >&2
  fi
  rm -f "$PID_FILE"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
