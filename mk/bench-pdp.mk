# PDP benchmark: decisions/s and p50/p99, every engine, beside an OPA server.
.PHONY: bench-pdp bench-wasm-memory
bench-pdp: bootstrap
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk)
	$(PY) bench/pdp_bench.py

# The wasm engine's memory over many evaluations (BENCH_EVALUATIONS, default 1,000,000).
bench-wasm-memory: bootstrap
	$(PY) bench/wasm_memory.py
