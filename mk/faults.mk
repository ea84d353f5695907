# make faults: the fault matrix through the whole gateway (bench/faults.py).
# FAULTS_RATE, FAULT_S, RECOVER_S and FAULTS (row names) tune it; the table
# also lands in bench/out/faults.json. tests/faults runs it short in make test.
.PHONY: faults

faults: bootstrap
	FAULT_S=$${FAULT_S:-10} RECOVER_S=$${RECOVER_S:-10} $(PY) -m bench.faults

# make soak: SOAK_S seconds (1 hour by default) of 1,000 connections through the
# chain; prints per-process RSS/fds, Redis memory and latency, plots
# bench/out/soak.png, and fails when a series grows without bound (bench/soak.py).
.PHONY: soak

soak: bootstrap
	$(PY) -m bench.soak
