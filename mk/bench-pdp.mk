# PDP benchmark: decisions/s and p50/p99, both engines, beside an OPA server.
.PHONY: bench-pdp
bench-pdp: bootstrap
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk)
	$(PY) bench/pdp_bench.py
