# Two commands for a fresh machine: `make run` (the whole pipeline on the default data) and
# `make test` (the suite). Everything else here is what those two are made of.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch (PyPI's Linux wheel is the multi-GB CUDA build): TORCH_INDEX is added as
# an extra index when it resolves. A GPU machine passes TORCH_INDEX= TORCH_SPEC='torch>=2.4,<2.14'.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# Optional data source for `make run` (hf:OWNER/NAME, a file or a directory); default: params.yaml.
DATA ?=
PYTEST_ARGS ?=
# `make sample`: where to fetch the 57-row real SWE-smith sample the suite reads in place.
SAMPLE_URL ?=
SAMPLE_DIR := ../shared/data/swe-smith
SAMPLE_SHA256 := 9a0c54d9469c55ca79819a41d3dd5dac604406f14105cbfd8e7067eb324811e5

export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export HF_HUB_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1
# dvc stages call `hrm`, `dvc` calls back into the venv: both must resolve to .venv/bin.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help venv run data test sample lint clean

help:
	@echo "make run    # create .venv, materialise data/, dvc repro (DATA=src overrides data.source)"
	@echo "make test   # create .venv if missing, run the suite"

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@idx=""; host=$$(echo '$(TORCH_INDEX)' | cut -d/ -f3); \
	if [ -n "$$host" ] && getent hosts "$$host" >/dev/null; then idx="--extra-index-url $(TORCH_INDEX)"; \
	elif [ -n "$$host" ]; then echo "note: $$host does not resolve; torch comes from the configured pip sources"; fi; \
	echo "$(BIN)/pip install -q --no-compile \"$(TORCH_SPEC)\" $$idx"; $(BIN)/pip install -q --no-compile "$(TORCH_SPEC)" $$idx
	$(BIN)/pip install -q --no-compile -e '.[dev]'
	@# pip byte-compiles on one core (39 s of a 62 s install here); compileall on every core
	@# (22 s on 2). Its exit status is 1 for the few files in packages that are not Python 3
	@# (pip skips those too), so it is not checked; what it compiles is what pip would have.
	$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	touch $@

venv: $(BIN)/.installed

data: venv
	$(BIN)/hrm data materialise $(if $(DATA),--source '$(DATA)')

# `hrm plots offline`: `dvc plots show` with the Vega libraries inlined (renders offline), its
# template named in .dvc/config.local; rewritten every run (seconds) so neither can go stale.
run: data
	$(BIN)/hrm plots offline
	$(BIN)/dvc repro
	$(BIN)/hrm gate summary

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# CI machines without ../shared: fetch the sample from SAMPLE_URL and check its sha256.
sample:
	@test -n "$(SAMPLE_URL)" || { echo "make sample: set SAMPLE_URL to a copy of $(SAMPLE_DIR)/sample.jsonl" >&2; exit 1; }
	mkdir -p $(SAMPLE_DIR)
	curl --fail --silent --show-error --location '$(SAMPLE_URL)' -o $(SAMPLE_DIR)/sample.jsonl.part
	echo "$(SAMPLE_SHA256)  $(SAMPLE_DIR)/sample.jsonl.part" | sha256sum --check --quiet \
	  || { rm -f $(SAMPLE_DIR)/sample.jsonl.part; echo "make sample: $(SAMPLE_URL) is not the pinned sample (sha256 differs)" >&2; exit 1; }
	mv $(SAMPLE_DIR)/sample.jsonl.part $(SAMPLE_DIR)/sample.jsonl

lint: venv
	$(BIN)/ruff check hrm components pipelines tests benchmarks

clean:
	rm -rf artifacts mlruns mlartifacts mlflow.db .pytest_cache
