# Tracing cost: the proxy+PDP chain with OTLP export off, on, and sampled at 1%.
.PHONY: bench-tracing
bench-tracing: bootstrap bench-tools
	$(PY) bench/tracing_bench.py
