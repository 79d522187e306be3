# loopml — root Makefile.
#
# build-ApiFunction is called by `sam build` (template.yaml: ApiFunction has CodeUri: . and
# Metadata.BuildMethod: makefile, so SAM looks for this file at the repo root and sets ARTIFACTS_DIR).
# It needs no Docker: the host's pip (3.11) fetches Linux CPython 3.13 wheels, and a Python 3.13 (found by
# infra/compile_bytecode.sh: on PATH, pyenv, or the podman image of infra/containers.sh) compiles the bytecode.
#
# Quick start (README): `make demo` and `make test`. Both set up .venv from the lock first.

SHELL := /bin/bash
PYTHON ?= python3
LAMBDA_PYTHON_VERSION ?= 3.13
# no = ship sources only (the smoke twin, built for the host's Python, compiles nothing)
LAMBDA_PYC ?= yes
LAMBDA_PLATFORMS ?= manylinux_2_28_x86_64 manylinux2014_x86_64
LAMBDA_REQUIREMENTS ?= handlers/requirements.txt

VENV ?= .venv
VPY := $(VENV)/bin/python

# The one image (Dockerfile): built from ./wheelhouse, which `make wheelhouse` fills on the host with CPython
# $(IMAGE_PYTHON_VERSION) manylinux wheels at the lock's versions (the run-time part of the lock only) and the loopml
# wheel. CONTAINER=docker works the same; `make image-podman` is the recipe for machines with podman and no
# registry (this one, CI): it builds the base image from debootstrap first (infra/containers.sh).
CONTAINER ?= podman
IMAGE ?= localhost/loopml:latest
IMAGE_LAMBDA ?= localhost/loopml:lambda
IMAGE_BASE ?= python:3.13-slim
IMAGE_PYTHON_VERSION ?= 3.13
# pip --platform matches tags exactly (no expansion to older manylinux levels): list the levels wheels use
IMAGE_PLATFORMS ?= $(foreach v,5 12 17 24 26 27 28 31 34,manylinux_2_$(v)_x86_64) manylinux2014_x86_64 manylinux1_x86_64
# Packages whose Requires-Python excludes the image's Python but that work on it: nannyml 0.13.1 (the latest)
# declares <3.13; the container tests run NannyML (CBPE, drift) inside the 3.13 image. See requirements-py313.txt.
IMAGE_IGNORE_REQUIRES_PYTHON ?= nannyml
IMAGE_PIP_DOWNLOAD = $(VPY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	$(foreach p,$(IMAGE_PLATFORMS),--platform $(p)) --python-version $(IMAGE_PYTHON_VERSION) --implementation cp -d wheelhouse
# Declared dependencies that loopml never imports, left out of the image: kaleido (nannyml's, for exporting
# plots as PNG; loopml writes HTML reports) is 226 MB of a headless Chromium.
IMAGE_EXCLUDE ?= kaleido
# this machine's pip config lists local indexes that do not exist: pip warns once per package
PIP_NOISE = is ignored: it is neither
CONTAINERS_CONF_HERE ?= $(or $(LOOPML_TOOLS_DIR),/opt/loopml-tools)/containers/containers.conf

.PHONY: setup demo test test-fast lint lint-pipelines smoke build-ApiFunction wheelhouse image image-podman

# the lock is complete, so pip resolves nothing (--no-deps): fast and the same on every machine
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: setup
	rm -rf demo-output
	$(VENV)/bin/loopml demo --workdir demo-output

# the deployment checks that run without Docker (sam validate --lint, sam build, package size,
# package smoke test), then the whole suite: unit, integration (Metaflow flows against a moto S3
# server), e2e. pytest runs last so that its summary closes the output, after the 25 slowest tests (CI's
# .ci/run calls this target: a test that grows slow shows there).
test: setup
	bash .ci/sam_check.sh
	$(MAKE) lint-pipelines
	$(VPY) -m pytest -q --durations=25

test-fast: setup
	$(VPY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check loopml handlers flows tests bench infra

.PHONY: template-variants test-localstack
# every combination of the template's switching parameters: SAM transform, references, cfn-lint (also in `make test`)
template-variants:
	source infra/lib.sh && ensure_sam && "$$SAM_PYTHON" infra/template_variants.py

# the stack deployed to LocalStack's Python runtime on 127.0.0.1 and checked (tests/deploy; CI runs it in `make test`)
test-localstack: setup
	bash infra/localstack.sh install
	LOOPML_LOCALSTACK=1 $(VPY) -m pytest -q tests/deploy

# reads the lock's metadata from $(VPY)'s venv; WHEELHOUSE_DEPS= VPY=<python> uses another venv that has the lock
WHEELHOUSE_DEPS ?= setup
wheelhouse: $(WHEELHOUSE_DEPS)
	rm -rf wheelhouse && mkdir -p wheelhouse
	$(VPY) infra/image_requirements.py --python $(IMAGE_PYTHON_VERSION) --add requirements-py313.txt \
		$(foreach p,$(IMAGE_EXCLUDE),--exclude $(p)) > wheelhouse/requirements.txt
	grep -E '^(awslambdaric|simplejson|snapshot-restore-py)==' infra/lambda-runtime/requirements.txt > wheelhouse/lambda-runtime.txt
	grep -v -E '^($(IMAGE_IGNORE_REQUIRES_PYTHON))==' wheelhouse/requirements.txt > wheelhouse/strict.txt
	$(IMAGE_PIP_DOWNLOAD) -r wheelhouse/strict.txt -r wheelhouse/lambda-runtime.txt pip==26.3 2> >(grep -v "$(PIP_NOISE)" >&2)
	$(IMAGE_PIP_DOWNLOAD) --ignore-requires-python $$(grep -E '^($(IMAGE_IGNORE_REQUIRES_PYTHON))==' wheelhouse/requirements.txt) \
		2> >(grep -v "$(PIP_NOISE)" >&2)
	rm wheelhouse/strict.txt
	rm -rf dist && $(VPY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w dist .
	rm -rf build
	@echo "wheelhouse: $$(ls wheelhouse/*.whl | wc -l) wheels, $$(du -sh wheelhouse | cut -f1); dist: $$(ls dist)"

image: wheelhouse
	$(CONTAINER) build --network host --build-arg BASE=$(IMAGE_BASE) --target runtime -t $(IMAGE) .
	$(CONTAINER) build --network host --build-arg BASE=$(IMAGE_BASE) --target lambda -t $(IMAGE_LAMBDA) .
	@echo "image $(IMAGE): $$($(CONTAINER) image inspect $(IMAGE) --format '{{.Size}}' | awk '{printf "%.0f MB", $$1/1e6}')"
	@echo "image $(IMAGE_LAMBDA): $$($(CONTAINER) image inspect $(IMAGE_LAMBDA) --format '{{.Size}}' | awk '{printf "%.0f MB", $$1/1e6}')"

image-podman:
	bash infra/containers.sh setup base
	CONTAINERS_CONF=$(CONTAINERS_CONF_HERE) $(MAKE) image CONTAINER=podman IMAGE_BASE=localhost/debian:trixie

# The CI/CD files: actionlint on the GitHub workflows (expressions, contexts, action inputs, runner labels,
# deprecated actions), .gitlab-ci.yml against GitLab's CI schema (vendored in check-jsonschema: no network)
lint-pipelines: setup
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml

# A real prediction through a deployed API (its schema from GET /model); the key from KEY or
# $$LOOPML_API_KEY. VERSION: fail unless the API serves it (WAIT: seconds to wait for the API's TTL).
# On failure, with STACK=<name>, `loopml release rollback` rolls back the stack's model alias and its
# function's live alias (ROLLBACK=model or function: only that one), and the target still fails.
#   make smoke URL=https://…/prod [KEY=…] [VERSION=N [WAIT=120]] [STACK=loopml-prod [ROLLBACK=all|model|function]]
LOOPML ?= $(VENV)/bin/loopml
ROLLBACK ?= all
smoke:
	@test -n "$(URL)" || { echo "usage: make smoke URL=<api base url> [KEY=…] [VERSION=N [WAIT=s]] [STACK=name [ROLLBACK=all|model|function]]" >&2; exit 2; }
	@$(LOOPML) release smoke --url "$(URL)" $(if $(KEY),--key "$(KEY)") $(if $(VERSION),--expect-version $(VERSION)) \
		$(if $(WAIT),--wait $(WAIT)) || { \
		status=$$?; \
		$(if $(STACK),echo "smoke failed: rolling back $(STACK)" >&2; \
		$(LOOPML) release rollback --stack "$(STACK)" $(if $(filter model,$(ROLLBACK)),--model-only) \
			$(if $(filter function,$(ROLLBACK)),--function-only) \
			--why "smoke test of $(URL) failed" || true;) \
		exit $$status; }

build-ApiFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run via 'sam build')" >&2; exit 2; }
	@test -f handlers/api.py || { echo "handlers/api.py is missing" >&2; exit 2; }
	# 1. third-party packages: binary wheels for Lambda (Linux x86_64, CPython 3.13) only.
	#    pip's --platform does not expand manylinux_2_28 to older tags, hence the second platform.
	$(PYTHON) -m pip install --disable-pip-version-check --no-warn-conflicts --root-user-action=ignore --no-compile --quiet \
		$(foreach p,$(LAMBDA_PLATFORMS),--platform $(p)) \
		--python-version $(LAMBDA_PYTHON_VERSION) --implementation cp --only-binary=:all: \
		-r $(LAMBDA_REQUIREMENTS) -t "$(ARTIFACTS_DIR)"
	# 2. our code: loopml/ and handlers/, *.py only (no tests, no caches).
	find loopml handlers -type f -name '*.py' \
		-not -path '*/__pycache__/*' -not -path '*/tests/*' -not -name 'test_*.py' -not -name 'conftest.py' \
		| tar -cf - -T - | tar -xf - -C "$(ARTIFACTS_DIR)"
	# 3. strip what the runtime never loads (numpy/_typing IS loaded at import: keep it).
	rm -rf "$(ARTIFACTS_DIR)/bin"
	find "$(ARTIFACTS_DIR)" -type d \( -name __pycache__ -o -name tests -o -name testing_data \) -prune -exec rm -rf {} +
	find "$(ARTIFACTS_DIR)" -type f \( -name '*.pyi' -o -name '*.pyc' \) -delete
	rm -rf "$(ARTIFACTS_DIR)/onnxruntime/transformers" "$(ARTIFACTS_DIR)/onnxruntime/quantization" \
		"$(ARTIFACTS_DIR)/onnxruntime/tools" "$(ARTIFACTS_DIR)/onnxruntime/datasets" \
		"$(ARTIFACTS_DIR)/numpy/f2py" "$(ARTIFACTS_DIR)/numpy/_core/include" \
		"$(ARTIFACTS_DIR)/numpy/_pyinstaller"
	#    powertools: the API uses its logger and EMF metrics only (they import utilities/typing and
	#    utilities/jmespath_utils); the event handler and the other utilities are 6 MB of the 150 MB budget
	rm -rf "$(ARTIFACTS_DIR)/aws_lambda_powertools/event_handler"
	find "$(ARTIFACTS_DIR)/aws_lambda_powertools/utilities" -mindepth 1 -maxdepth 1 \
		-not -name __init__.py -not -name jmespath_utils -not -name typing -exec rm -rf {} +
	# 4. bytecode for the runtime's Python: /var/task is read-only, so without it every cold start
	#    compiles every module from source.
	@if [ "$(LAMBDA_PYC)" = yes ]; then bash infra/compile_bytecode.sh "$(ARTIFACTS_DIR)" $(LAMBDA_PYTHON_VERSION); fi
