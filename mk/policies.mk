# Policy targets: Rego checks on the real OPA binary, and the policy's own cost.
.PHONY: test-policies bench-policies
test-policies: bootstrap
	$(PY) -m pytest tests/policies -q

bench-policies: bootstrap
	$(PY) bench/policy_bench.py
