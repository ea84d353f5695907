# Quota benchmark: PDP decisions/s with quota spending on vs off, and spend() alone.
.PHONY: bench-quota
bench-quota: bootstrap
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk)
	$(PY) bench/quota_bench.py
