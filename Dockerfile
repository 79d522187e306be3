# loopml's one image: loopml (the wheel, with its flows) and the run-time part of the lock, nothing else.
#
#   make image                        # = make wheelhouse, then podman/docker build (see the Makefile)
#
# Stages (targets):
#   runtime (default)  the Metaflow task image (--with batch:image=... / kubernetes:image=..., Step Functions and
#                      Argo deployments), `podman run IMAGE loopml ...` for any command, and the container form of
#                      the API: its default command serves the champion with uvicorn on $PORT (Cloud Run, ECS,
#                      Kubernetes)
#   lambda             the same plus the Lambda Runtime Interface Client: the scheduled job as a container-image
#                      Lambda function (template.yaml, ScheduledFunction; handler handlers.scheduled.handler)
#
# Everything is installed from ./wheelhouse and ./dist, made on the host by `make wheelhouse` (pip download of
# CPython 3.13 manylinux wheels at the lock's versions; the loopml wheel): no compiler, no pip and no package index
# in the image, and the same bytes on every machine. The only network use is apt-get for libgomp1. BASE must be a Python 3.13 image (python:3.13-slim; on
# machines that cannot pull, localhost/debian:trixie from infra/containers.sh).
ARG BASE=python:3.13-slim

# ---------------------------------------------------------------- base: the system libraries the wheels expect
FROM ${BASE} AS base
# libgomp1: OpenMP for lightgbm (its manylinux wheel does not bundle it)
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- install (discarded: pip never reaches the image)
FROM base AS install
# the locked dependencies first (a layer that changes only with the lock), loopml's own wheel after them
COPY wheelhouse/ /tmp/wheelhouse/
# pip runs from its own wheel (Debian's python3 has no pip, and the venv gets none). --ignore-requires-python: the
# wheelhouse was checked against the image's Python when it was made; only what `make wheelhouse` lists in
# IMAGE_IGNORE_REQUIRES_PYTHON (nannyml, which declares <3.13) got past that check, on purpose.
RUN set -eu; \
    pip="$(ls /tmp/wheelhouse/pip-*.whl)/pip"; \
    python3 -m venv --without-pip /opt/loopml; \
    /opt/loopml/bin/python "$pip" install --quiet --no-index --no-deps --disable-pip-version-check \
        --root-user-action=ignore --ignore-requires-python --find-links /tmp/wheelhouse \
        -r /tmp/wheelhouse/requirements.txt; \
    /opt/loopml/bin/python "$pip" install --quiet --no-index --no-deps --disable-pip-version-check \
        --root-user-action=ignore --find-links /tmp/wheelhouse --target /opt/lambda-runtime \
        -r /tmp/wheelhouse/lambda-runtime.txt; \
    rm -rf /opt/loopml/share /opt/lambda-runtime/bin; \
    # packages' own test suites (never imported; numpy.testing & co. are, and stay)
    find /opt/loopml/lib -depth -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {} +
COPY dist/ /tmp/dist/
RUN set -eu; \
    /opt/loopml/bin/python "$(ls /tmp/wheelhouse/pip-*.whl)/pip" install --quiet --no-index --no-deps \
        --disable-pip-version-check --root-user-action=ignore /tmp/dist/loopml-*.whl; \
    /opt/loopml/bin/python -c "import loopml, loopml.runtime.flowrun, handlers.scheduled, metaflow, nannyml, onnxruntime, \
awswrangler, lightgbm; print('loopml', loopml.__version__, 'flows in', loopml.runtime.flowrun.FLOWS)"

# ---------------------------------------------------------------- runtime
FROM base AS runtime
ARG UID=1000
RUN groupadd --gid "$UID" loopml && useradd --uid "$UID" --gid loopml --create-home --home-dir /home/loopml \
        --shell /bin/bash loopml
COPY --from=install /opt/loopml /opt/loopml
# METAFLOW_SKIP_INSTALL_DEPENDENCIES: a remote Metaflow task would otherwise `pip install boto3 requests` at start;
# they are here already (and there is no pip). MPLCONFIGDIR: matplotlib's cache in a writable place.
ENV PATH=/opt/loopml/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    METAFLOW_SKIP_INSTALL_DEPENDENCIES=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PORT=8080
USER loopml
WORKDIR /home/loopml
EXPOSE 8080
# the container API; Metaflow replaces the command with its own (no ENTRYPOINT, so nothing wraps it)
CMD ["sh", "-c", "exec loopml serve --host 0.0.0.0 --port \"$PORT\""]

# ---------------------------------------------------------------- lambda (the scheduled job)
FROM runtime AS lambda
# The same contract as AWS's Lambda base images: /lambda-entrypoint.sh runs /var/runtime/bootstrap (awslambdaric)
# under Lambda, or the Runtime Interface Emulator when AWS_LAMBDA_RUNTIME_API is unset (a local `podman run`).
# Lambda's file system is read-only but for /tmp: HOME and caches go there.
COPY --from=install /opt/lambda-runtime /var/runtime
COPY infra/lambda-runtime/bootstrap /var/runtime/bootstrap
COPY infra/lambda-runtime/lambda-entrypoint.sh /lambda-entrypoint.sh
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime HOME=/tmp
# root, as in AWS's Lambda base images: Lambda runs the function as its own unprivileged user whatever the image
# says, and `sam local` adds its emulator to the image with RUN steps that need root
USER root
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
CMD ["handlers.scheduled.handler"]
