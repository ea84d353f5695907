# make faults: the fault matrix through the whole gateway (bench/faults.py).
# FAULTS_RATE, FAULT_S, RECOVER_S and FAULTS (row names) tune it; the table
# also lands in bench/out/faults.json. tests/faults runs it short in make test.
.PHONY: faults

faults: bootstrap
	FAULT_S=$${FAULT_S:-10} RECOVER_S=$${RECOVER_S:-10} $(PY) -m bench.faults
