#!/usr/bin/env bash
# Containers on a machine with podman but no Docker engine and no image registry (see README, "Containers").
# Every subcommand is idempotent: it skips what already exists, so CI and developers run it freely.
#
#   bash infra/containers.sh <command>...        (several commands run in order, e.g. `setup base lambda-image`)
#
#   setup            install podman, runc and debootstrap (apt) when missing; write $CONTAINERS_CONF (runc, no
#                    default ulimits: podman's default runtime crun fails on setrlimit on these machines)
#   base             localhost/debian:trixie (Python 3.13) from debootstrap, when it does not exist
#   lambda-image     public.ecr.aws/lambda/python:3.13-x86_64: a stand-in for AWS's Lambda base image (awslambdaric
#                    + boto3 from cp313 wheels downloaded on the host, /var/runtime/bootstrap, /lambda-entrypoint.sh,
#                    aws-lambda-rie from the SAM CLI package), when it does not exist
#   all              setup + base + lambda-image
#   service-start [-v HOST:CTR[:OPTS]]...
#                    a podman system service on $LOOPML_PODMAN_SOCK for `sam local` (DOCKER_HOST); -v adds a volume to
#                    every container it starts (SAM mounts only the code: a folder store needs this)
#   service-stop     stop the service this script started (by its pid file)
#   env              print the exports for a shell: eval "$(bash infra/containers.sh env)"
#
# Environment: LOOPML_TOOLS_DIR (default /opt/loopml-tools; state lives in its containers/ folder),
#   DEBIAN_MIRROR (default: the apt mirror this machine uses), FORCE=1 rebuilds the images.
# With a normal Docker engine and registry access none of this is needed: pull python:3.13-slim and AWS's image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

STATE="$LOOPML_TOOLS_DIR/containers"
export CONTAINERS_CONF="$STATE/containers.conf"
SERVICE_CONF="$STATE/service.conf"
SOCK="${LOOPML_PODMAN_SOCK:-$STATE/podman.sock}"
SERVICE_PID="$STATE/service.pid"
SERVICE_LOG="$STATE/service.log"
BASE_IMAGE="localhost/debian:trixie"
LAMBDA_IMAGE="public.ecr.aws/lambda/python:3.13-x86_64"
PIP_VERSION="26.3"  # the Makefile's pip

T0=$SECONDS
say() { printf '== containers: %s (%ss)\n' "$*" "$((SECONDS - T0))" >&2; }
die() { printf 'containers.sh: %s\n' "$*" >&2; exit 2; }

image_exists() { podman image exists "$1" 2>/dev/null; }

conf_text() {
  cat <<'EOF'
# written by infra/containers.sh
[containers]
default_ulimits = []
EOF
  if [[ $# -gt 0 ]]; then
    printf 'volumes = ['
    local first=1 v
    for v in "$@"; do
      [[ $first -eq 1 ]] || printf ', '
      printf '"%s"' "$v"
      first=0
    done
    printf ']\n'
  fi
  printf '[engine]\nruntime = "runc"\n'
}

cmd_setup() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || missing+=(runc)
  command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
  if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "need root to install ${missing[*]} (apt-get install -y ${missing[*]})"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  mkdir -p "$STATE"
  conf_text >"$CONTAINERS_CONF.tmp" && mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
  podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null || die "podman does not work with $CONTAINERS_CONF"
  say "setup done: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}')"
}

# base and lambda-image need a working podman: set it up first on a fresh machine
ensure_setup() {
  if [[ ! -f "$CONTAINERS_CONF" ]] || ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    cmd_setup
  fi
}

debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local m=""
  m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n "$m" ]] || m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

cmd_base() {
  ensure_setup
  if image_exists "$BASE_IMAGE" && [[ -z "${FORCE:-}" ]]; then
    say "$BASE_IMAGE exists"
    return
  fi
  local rootfs mirror
  rootfs=$(mktemp -d /var/tmp/loopml-rootfs.XXXXXX)
  mirror=$(debian_mirror)
  say "debootstrap trixie from $mirror (takes ~3 min)"
  if ! debootstrap --variant=minbase --include=python3,ca-certificates trixie "$rootfs" "$mirror" \
      >"$STATE/debootstrap.log" 2>&1; then
    tail -20 "$STATE/debootstrap.log" >&2
    rm -rf "$rootfs"
    die "debootstrap failed (log: $STATE/debootstrap.log)"
  fi
  # no apt lists or caches in the image
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "$BASE_IMAGE built: $(podman run --rm "$BASE_IMAGE" python3 --version), $(podman image inspect "$BASE_IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
}

cmd_lambda_image() {
  ensure_setup
  if image_exists "$LAMBDA_IMAGE" && [[ -z "${FORCE:-}" ]]; then
    say "$LAMBDA_IMAGE exists"
    return
  fi
  image_exists "$BASE_IMAGE" || cmd_base
  ensure_sam
  local ctx rie
  ctx=$(mktemp -d /var/tmp/loopml-lambda-ctx.XXXXXX)
  cp "$ROOT"/infra/lambda-runtime/{Dockerfile,bootstrap,lambda-entrypoint.sh} "$ctx/"
  rie=$("$SAM_PYTHON" -c 'import pathlib, samcli; print(pathlib.Path(samcli.__file__).parent / "local/rapid/aws-lambda-rie-x86_64")')
  [[ -f "$rie" ]] || die "aws-lambda-rie not found in the SAM CLI package ($rie)"
  install -m 0755 "$rie" "$ctx/aws-lambda-rie"
  chmod 0755 "$ctx/bootstrap" "$ctx/lambda-entrypoint.sh"
  say "downloading cp313 wheels for the runtime (awslambdaric, boto3)"
  "$HOST_PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.13 --implementation cp \
    -r "$ROOT/infra/lambda-runtime/requirements.txt" "pip==$PIP_VERSION" -d "$ctx/wheels" 2> >(grep -v "is ignored: it is neither" >&2)
  say "building $LAMBDA_IMAGE"
  podman build --quiet --network host --build-arg "BASE=$BASE_IMAGE" -t "$LAMBDA_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  say "$LAMBDA_IMAGE built: $(podman image inspect "$LAMBDA_IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
}

service_running() { [[ -f "$SERVICE_PID" ]] && kill -0 "$(cat "$SERVICE_PID")" 2>/dev/null; }

cmd_service_start() {
  ensure_setup
  local volumes=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -v|--volume) [[ $# -ge 2 ]] || die "-v needs HOST:CTR[:OPTS]"; volumes+=("$2"); shift 2 ;;
      *) die "service-start: unknown argument $1" ;;
    esac
  done
  if service_running; then
    say "podman service already running (pid $(cat "$SERVICE_PID")) on unix://$SOCK"
    return
  fi
  mkdir -p "$STATE" "$(dirname "$SOCK")"
  conf_text "${volumes[@]}" >"$SERVICE_CONF"
  rm -f "$SOCK"
  CONTAINERS_CONF="$SERVICE_CONF" nohup podman system service --time=0 "unix://$SOCK" >"$SERVICE_LOG" 2>&1 &
  echo $! >"$SERVICE_PID"
  local i
  for i in $(seq 1 100); do
    if [[ -S "$SOCK" ]] && { ! command -v curl >/dev/null || curl -fsS --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }; then
      say "podman service started (pid $(cat "$SERVICE_PID")): export DOCKER_HOST=unix://$SOCK"
      return
    fi
    service_running || break
    sleep 0.2
  done
  tail -20 "$SERVICE_LOG" >&2
  die "podman system service did not come up (log: $SERVICE_LOG)"
}

cmd_service_stop() {
  if service_running; then
    local pid
    pid=$(cat "$SERVICE_PID")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "podman service stopped (pid $pid)"
  fi
  rm -f "$SERVICE_PID" "$SOCK"
}

cmd_env() {
  printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
  printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
}

[[ $# -gt 0 ]] || { sed -n '2,24p' "$0" >&2; exit 2; }
case "$1" in
  service-start) shift; cmd_service_start "$@"; exit 0 ;;
esac
for c in "$@"; do
  case "$c" in
    setup) cmd_setup ;;
    base) cmd_base ;;
    lambda-image) cmd_lambda_image ;;
    all) cmd_setup; cmd_base; cmd_lambda_image ;;
    service-stop) cmd_service_stop ;;
    env) cmd_env ;;
    *) sed -n '2,24p' "$0" >&2; exit 2 ;;
  esac
done
