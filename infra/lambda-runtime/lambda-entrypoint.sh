#!/bin/sh
# Same contract as AWS's Lambda base images: the handler is the only argument; outside Lambda
# (no AWS_LAMBDA_RUNTIME_API) the Runtime Interface Emulator serves the invoke API on :8080.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie "$RUNTIME_ENTRYPOINT"
else
  exec "$RUNTIME_ENTRYPOINT"
fi
