# lucid-gateway: every target bootstraps what it needs from the project's own files.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS_BIN := $(HOME)/.cache/lucid-gateway/tools/bin
export PATH := $(CURDIR)/$(VENV)/bin:$(TOOLS_BIN):$(PATH)

.PHONY: bootstrap run test lint format
.DEFAULT_GOAL := help

help:
	@echo "make run        start the gateway locally on its defaults (wasm engine)"
	@echo "make test       bootstrap, make lint, and run the whole test suite"
	@echo "make lint       ruff: lint and format check (make format fixes both)"
	@echo "make bench      ours beside the reference (Envoy+OPA+ratelimit+Redis) and nginx auth_request"
	@echo "make bench-tail where our open-loop latency goes, layer by layer"
	@echo "make bench-cpu  the CPU one request costs each process of our chain"
	@echo "make bench-pdp  PDP decisions/s, every engine, memo on/off, high cardinality, beside an OPA server"
	@echo "make bench-wasm-memory  RSS of the wasm engine over 1,000,000 evaluations"
	@echo "make bench-quota  the cost of spending quota"
	@echo "make bench-auth   the sign-in API: refresh, login (with its mail), status"
	@echo "make bench-tracing  the cost of tracing (OTLP export off, on, sampled)"
	@echo "make fuzz       the fuzz targets for FUZZ_S seconds each (default 300)"
	@echo "make settings   regenerate docs/settings.md and the chart's settings parts from pdp/ and proxy/config.py"

# Python deps into .venv (re-run when pyproject.toml changes); system tools and
# OPA/Helm (cached per machine, keyed by version) through scripts/bootstrap.sh.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[pdp,proxy,test]'
	# xds-protos ships an older copy of opentelemetry/proto/* that overwrites
	# opentelemetry-proto's files (no InstrumentationScope: the OTLP exporter
	# fails to import); put the newer, compatible files back.
	$(VENV)/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $@

bootstrap: $(STAMP)
	@bash scripts/bootstrap.sh

run: bootstrap
	$(PY) -m devenv.run

test: bootstrap lint
	$(PY) -m pytest

# Each area adds its own targets (benchmarks, chart checks) in mk/<area>.mk.
-include mk/*.mk
