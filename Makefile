# The two quickstart commands: `make run` and `make test`. Both create the environment
# from uv.lock when it is missing or out of date (needs only Python >= 3.11 on PATH).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: run test test-unit test-containers lint format benchmark base-images serving-image clean

run: $(STAMP)
	$(VENV)/bin/python run.py --stack local

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-unit: $(STAMP)
	$(VENV)/bin/python -m pytest tests/unit

# The container suite (needs a running Docker engine; see "Serving image" in the README).
test-containers: $(STAMP)
	$(VENV)/bin/python -m pytest -m containers tests/containers

# A Python 3.11 base image from Debian packages, for sites that cannot pull public images
# (needs root, debootstrap and Docker). XRAY_EXTRA_CA_CERTS: a PEM bundle to trust inside.
base-images:
	scripts/base_image.sh

# The production version's serving image (bentoml containerize); its tag is the last line.
serving-image: $(STAMP)
	$(VENV)/bin/python -m application.serving_image

# ruff (lint + format) and the import contracts of pyproject.toml (the layers).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# The pip route's pins, exported from the lock (a unit test checks they agree).
requirements.txt: uv.lock | $(UV)
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header -q -o $@

# What the cloud stacks' GPU images install (DockerSettings.requirements): the same pins
# plus TensorFlow's CUDA wheels.
requirements-gpu.txt: uv.lock | $(UV)
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header --extra gpu -q -o $@

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache
