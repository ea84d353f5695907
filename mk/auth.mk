# Sign-in API benchmark: refresh, login (with its mail) and status, against real processes.
.PHONY: bench-auth
bench-auth: bootstrap
	$(PY) bench/auth_bench.py
