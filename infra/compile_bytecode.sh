#!/usr/bin/env bash
# Compile a built Lambda package to bytecode for the runtime's Python (default 3.13), in place.
#
#   bash infra/compile_bytecode.sh PKG_DIR [PYTHON_VERSION]
#
# Lambda's /var/task is read-only, so a package without .pyc files compiles every module from source
# on every cold start (measured: 1.5-2.4 s of init without, 0.7 s with; bench/bench_serving.py).
# The .pyc files must come from the same minor version as the runtime; this host's Python is older,
# so the script looks for a python3.13 in this order:
#   $LOOPML_PYC_PYTHON; `python3.13` on PATH (if it runs); pyenv's 3.13.*; the podman images of
#   infra/containers.sh (localhost/debian:trixie ships 3.13, as does the Lambda stand-in).
# Hash-based, unchecked .pyc (PEP 552): the zip's file times do not matter, and Python never tries to
# rewrite them. Without any 3.13 it warns and leaves the package as it is, unless LOOPML_REQUIRE_PYC=1.
set -euo pipefail

PKG="${1:?usage: compile_bytecode.sh PKG_DIR [PYTHON_VERSION]}"
VER="${2:-3.13}"
ARGS=(-m compileall -q -j 0 --invalidation-mode unchecked-hash -x '/(tests?|testing)/')

runs() { "$@" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$VER'.split('.')))" >/dev/null 2>&1; }

candidates=()
[[ -n "${LOOPML_PYC_PYTHON:-}" ]] && candidates+=("$LOOPML_PYC_PYTHON")
command -v "python$VER" >/dev/null 2>&1 && candidates+=("$(command -v "python$VER")")
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$VER".*/bin/python"$VER"; do [[ -x "$p" ]] && candidates+=("$p"); done

for py in "${candidates[@]}"; do
  if runs "$py"; then
    echo "compile_bytecode: $py ($("$py" --version 2>&1)) -> $PKG"
    "$py" "${ARGS[@]}" "$PKG"
    exit 0
  fi
done

if command -v podman >/dev/null 2>&1; then
  export CONTAINERS_CONF="${CONTAINERS_CONF:-${LOOPML_TOOLS_DIR:-/opt/loopml-tools}/containers/containers.conf}"
  for image in localhost/debian:trixie public.ecr.aws/lambda/python:"$VER"-x86_64; do
    if podman image exists "$image" 2>/dev/null; then
      echo "compile_bytecode: python3 in $image -> $PKG"
      podman run --rm --network none --entrypoint python3 -v "$(cd "$PKG" && pwd)":/pkg "$image" "${ARGS[@]}" /pkg
      exit 0
    fi
  done
fi

msg="compile_bytecode: no Python $VER here (set LOOPML_PYC_PYTHON, or run bash infra/containers.sh base): the package ships without bytecode and every cold start compiles from source"
if [[ "${LOOPML_REQUIRE_PYC:-0}" == 1 ]]; then echo "$msg" >&2; exit 2; fi
echo "WARNING: $msg" >&2
