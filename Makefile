# loopml — root Makefile.
#
# build-ApiFunction is called by `sam build` (template.yaml: ApiFunction has CodeUri: . and
# Metadata.BuildMethod: makefile, so SAM looks for this file at the repo root and sets ARTIFACTS_DIR).
# It needs no Docker and no Python 3.12: the host's pip (3.11) fetches Linux CPython 3.12 wheels.
#
# Quick start (README): `make demo` and `make test`. Both set up .venv from the lock first.

PYTHON ?= python3
LAMBDA_PYTHON_VERSION ?= 3.12
LAMBDA_PLATFORMS ?= manylinux_2_28_x86_64 manylinux2014_x86_64
LAMBDA_REQUIREMENTS ?= handlers/requirements.txt

VENV ?= .venv
VPY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint build-ApiFunction

# the lock is complete, so pip resolves nothing (--no-deps): fast and the same on every machine
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
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
# server), e2e. pytest runs last so that its summary closes the output.
test: setup
	bash .ci/sam_check.sh
	$(VPY) -m pytest -q

test-fast: setup
	$(VPY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check loopml handlers flows tests bench infra

build-ApiFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (run via 'sam build')" >&2; exit 2; }
	@test -f handlers/api.py || { echo "handlers/api.py is missing" >&2; exit 2; }
	# 1. third-party packages: binary wheels for Lambda (Linux x86_64, CPython 3.12) only.
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
