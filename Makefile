# Argosy: `make run` runs the whole local pipeline, `make test` runs the tests.
# Both create or update .venv from uv.lock by themselves; `make help` lists every target.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export PATH := $(BIN):$(PATH)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	@echo "installing the locked environment into $(VENV) from uv.lock (the first time: a few minutes)"
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON) --quiet
	@echo "$(VENV) is ready: 'source $(VENV)/bin/activate' puts argosy and dvc on PATH"
	touch $@


.PHONY: help venv run demo data data-pin test lint format ci lock check-lock clean grpc-stubs \
	bench bench-pipeline bench-monitoring serve bench-serve workflows check-codegen \
	pin-images bench-scale schemas web-assets screenshots validate-manifests

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV)/.synced ## Create or update .venv from uv.lock

run: venv ## Run the whole local pipeline (data, validate, prepare, train, evaluate, gate) and summarise
	$(BIN)/argosy ensure-data
	$(BIN)/dvc repro
	$(BIN)/argosy summary

demo: venv ## Run the whole loop locally (train, staging, serve, drift, retrain, gate); prints a summary
	$(BIN)/argosy demo $(if $(DEMO_DIR),--workdir $(DEMO_DIR))

data: venv ## Make data/ what data.dvc pins when missing: dvc pull (your files) or the example's seed
	$(BIN)/argosy ensure-data

data-pin: venv ## Regenerate data/ from params.yaml `simulate:` and pin it anew in data.dvc
	rm -rf data
	$(BIN)/argosy simulate
	$(BIN)/dvc add data

# Test files run in parallel, each whole on one worker (its module fixtures are built once).
PYTEST_WORKERS ?= 2

test: venv ## Run the test suite (PYTEST_WORKERS=2 processes; the 20 slowest tests are listed)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

lint: venv ## Ruff lint and format check
	$(BIN)/ruff check src tests workflows bench
	$(BIN)/ruff format --check src tests workflows bench

format: venv ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests workflows bench
	$(BIN)/ruff format src tests workflows bench

ci: lint test check-lock check-codegen validate-manifests ## Everything hosted CI runs: lint, tests, lock, codegen and manifest checks

lock: $(UV) ## Re-resolve uv.lock from pyproject.toml
	$(UV) lock --python $(PYTHON)

check-lock: $(UV) ## Fail when uv.lock is out of date with pyproject.toml
	$(UV) lock --check --python $(PYTHON)

clean: ## Remove pipeline outputs (keeps data/, the venv and MLflow)
	rm -rf artifacts models reports


# The generated modules are committed; a test regenerates them and compares.
grpc-stubs: venv ## Regenerate the V2 gRPC Python modules from src/argosy/serving/proto/grpc_predict_v2.proto
	$(BIN)/python -m argosy.serving.proto.generate


# `make bench` runs every benchmark listed here; add yours to the prerequisites.
bench: bench-pipeline bench-monitoring ## Run the benchmarks (pipeline, monitoring); results in docs/benchmarks.md

bench-pipeline: venv ## Pipeline per-stage wall time and peak RSS at 100k and 1M rows, where validation time goes (~5 min)
	$(BIN)/python bench/pipeline/bench.py

bench-scale: venv ## Pipeline at 1M, 5M, 10M, 20M rows, engine local and dask: time, memory, PR-AUC, plot (~70 min)
	$(BIN)/python bench/scale/bench.py

bench-monitoring: venv ## Drift on 200k and 1M logged rows vs a numpy/scipy floor, sampling-error sweep (~2 min)
	$(BIN)/python bench/monitoring/bench.py --out bench/monitoring/results.json

serve: venv ## Serve models/ over the Open Inference Protocol: REST on 127.0.0.1:8080, gRPC on 8081
	$(BIN)/python -m argosy.serving --model-dir models --host 127.0.0.1 --port 8080 --grpc-port 8081

# Results are recorded in docs/benchmarks.md with the command that produced them.
bench-serve: venv ## Benchmark Argosy's server vs MLServer, mlflow serve, KServe (~15 min)
	$(BIN)/python bench/serve/bench.py

workflows: venv ## Regenerate workflows/generated/ from workflows/*.py, dvc.yaml, params.yaml and contract.yaml
	$(BIN)/argosy workflows generate

check-codegen: workflows ## Fail when workflows/generated/ differs from what the Hera modules produce
	git diff --exit-code -- workflows/generated
	@test -z "$$(git status --porcelain --untracked-files=all -- workflows/generated)" || \
		{ echo "untracked files in workflows/generated:"; git status --short -- workflows/generated; exit 1; }

# Usage: make pin-images SERVE_DIGEST=sha256:... PIPELINE_DIGEST=sha256:... (what images.yaml runs)
pin-images: venv ## Record pushed image digests (serve: manifests/base, pipeline: params.yaml) and regenerate
	$(BIN)/argosy pin-images $(if $(SERVE_DIGEST),--serve $(SERVE_DIGEST)) $(if $(PIPELINE_DIGEST),--pipeline $(PIPELINE_DIGEST))
	$(MAKE) workflows


# The strict schemas of the custom resources the project renders are vendored in
# schemas/crds-catalog (see its PROVENANCE.md). The pinned catalog commit and the list of files
# live in src/argosy/k8s.py (CRDS_CATALOG_COMMIT, VENDORED_SCHEMAS); validation never needs this.
# Source: $ARGOSY_SCHEMA_SOURCE, else ../shared/schemas/crds-catalog, else a download of the pin.
schemas: venv ## Rewrite the vendored CRD schemas (schemas/crds-catalog) from the pinned catalog
	$(BIN)/python -m argosy.k8s vendor

# Data Docs and DVC plots load their scripts and styles from src/argosy/web (versions and
# hashes in src/argosy/web/assets.lock.json; a test checks them), never from a CDN.
web-assets: venv ## Re-fetch the vendored web assets with npm (pinned, integrity-checked) and rewrite .dvc/plots-offline.html
	$(BIN)/python -m argosy.webassets vendor
	$(BIN)/python -m argosy.webassets template .

# Offline headless-Chromium screenshots of the reports, from a fresh demo run (or DEMO_DIR's).
screenshots: venv ## Run the demo and photograph Data Docs, drift report, DVC plots, gate.md (needs chromium)
	$(BIN)/python docs/screenshots/capture.py --out docs/screenshots $(if $(DEMO_DIR),--demo-dir $(DEMO_DIR))

validate-manifests: venv ## Render overlays, platform, argocd/ and the workflows; validate strictly offline
	$(BIN)/python -m argosy.k8s manifests/overlays/staging manifests/overlays/production manifests/platform argocd workflows/generated
