# Fuzzing (included by the Makefile). `make test` runs each target for 5 s;
# `make fuzz` runs them for FUZZ_S seconds each and keeps the corpus it grows
# in FUZZ_CORPUS_DIR between runs.
.PHONY: fuzz
FUZZ_S ?= 300
FUZZ_CORPUS_DIR ?= $(HOME)/.cache/lucid-gateway/fuzz-corpus

fuzz: bootstrap
	FUZZ_S=$(FUZZ_S) FUZZ_SEED=0 FUZZ_CORPUS_DIR=$(FUZZ_CORPUS_DIR) $(PY) -m pytest tests/fuzz -q -p no:cacheprovider
