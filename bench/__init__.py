"""Benchmarks: `make bench` (run_bench: the proxy beside nginx and Envoy) and `make bench-pdp` (pdp_bench)."""
