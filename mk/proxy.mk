# The proxy's targets (included by the Makefile).
.PHONY: test-proxy bench-proxy

test-proxy: bootstrap
	$(PY) -m pytest tests/proxy -q

# req/s and p50/p99 of proxy + PDP (and the cached fast path) with wrk; seconds, not minutes.
bench-proxy: bootstrap
	$(PY) -m tests.proxy.bench_proxy
