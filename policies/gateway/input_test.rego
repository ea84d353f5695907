package gateway_test

import data.gateway

# The rules that read input, on their own. The entry point as a whole is
# checked with real input documents on both engines by
# tests/policies/test_policies.py.

test_policy_reads_its_fields_from_input if {
	fields := [
		gateway.request_method, gateway.request_segments, gateway.request_client_ip,
		gateway.subject_authenticated, gateway.subject_sub, gateway.subject_roles,
		gateway.subject_plan, gateway.subject_mfa,
	] with input.request as request("GET", "users/me")
		with input.subject as with_mfa(user("alice"))
	fields == ["GET", ["api", "v1", "users", "me"], "203.0.113.7", true, "alice", ["user"], "free", true]
}

test_missing_input_fields_take_safe_defaults if {
	fields := [
		gateway.request_method, gateway.request_segments, gateway.request_client_ip,
		gateway.subject_authenticated, gateway.subject_sub, gateway.subject_roles,
		gateway.subject_plan, gateway.subject_mfa,
	] with input.request as {}
		with input.subject as {}
	fields == ["", [], "", false, "", [], "", false]
}

test_empty_request_and_subject_are_denied_as_no_route if {
	gateway.decide({}, {}, data.gateway.settings) == {
		"allow": false, "status": 404, "reason": "no_route", "headers": {},
		"response_headers": {}, "quotas": [], "cache_ttl_s": 0,
	}
}
