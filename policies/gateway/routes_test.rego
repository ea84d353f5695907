package gateway_test

import data.gateway

test_literal_path_wins_over_placeholder if {
	m := gateway.request_match(request("GET", "users/me"))
	m.route == "users.me.read"
	m.params == {}
}

test_placeholder_captures_the_segment if {
	m := gateway.request_match(request("GET", "users/42"))
	m.route == "users.read"
	m.params == {"id": "42"}
}

test_nested_placeholder_path if {
	m := gateway.request_match(request("POST", "wallets/w-9/transactions"))
	m.route == "wallets.transactions.create"
	m.params == {"id": "w-9"}
}

test_head_is_decided_as_get if {
	gateway.request_match(request("HEAD", "meta/health")).route == "meta.health"
}

test_method_is_case_insensitive if {
	gateway.request_match(request("put", "users/me")).route == "users.me.update"
}

test_known_path_with_other_method_lists_allowed_methods if {
	m := gateway.request_match(request("PATCH", "sessions/s-1"))
	m.endpoint_found == true
	m.route == ""
	m.methods == ["DELETE", "GET", "HEAD", "PUT"]
}

test_unknown_paths_match_nothing if {
	not gateway.endpoint_for(["api", "v1", "users", "42", "keys"])
	not gateway.endpoint_for(["api", "v2", "users", "me"])
	not gateway.endpoint_for(["api", "v1"])
	not gateway.endpoint_for([])
	not gateway.endpoint_for(["api", "v1", "users", "me", ""])
}

test_placeholder_does_not_match_an_empty_segment if {
	not gateway.endpoint_for(["api", "v1", "users", ""])
}

test_missing_parsed_path_is_no_route if {
	gateway.request_match({"method": "GET", "path": "/api/v1/users/me"}).endpoint_found == false
}

# Every seed endpoint has a route; the table and the seed must not drift.
test_every_seed_endpoint_is_routed if {
	seed := {
		["GET", "meta/info"], ["GET", "meta/health"], ["GET", "meta/version"], ["GET", "meta/metrics"],
		["POST", "auth/login"], ["POST", "auth/verify"], ["POST", "auth/refresh"],
		["POST", "auth/logout"], ["GET", "auth/status"],
		["GET", "users/me"], ["PUT", "users/me"], ["GET", "users/u-1"], ["POST", "users"],
		["POST", "sessions"], ["GET", "sessions"], ["GET", "sessions/s-1"],
		["PUT", "sessions/s-1"], ["DELETE", "sessions/s-1"],
		["GET", "manifests/m-1"], ["POST", "manifests"], ["PUT", "manifests/m-1"],
		["GET", "trust/policies"], ["POST", "trust/policies"], ["PUT", "trust/policies/p-1"],
		["GET", "chain/info"], ["GET", "chain/blocks"], ["GET", "chain/blocks/b-1"], ["POST", "chain/transactions"],
		["GET", "wallets"], ["POST", "wallets"], ["GET", "wallets/w-1"], ["POST", "wallets/w-1/transactions"],
	}
	routed := {route |
		some pair in seed
		route := gateway.request_match(request(pair[0], pair[1])).route
		route != ""
	}
	count(routed) == count(seed)
}

test_templates_have_at_most_one_placeholder_in_a_supported_position if {
	bad := {template |
		data.gateway.endpoints[template]
		segments := split(template, "/")
		not placeholders_are_valid(segments)
	}
	count(bad) == 0
}

placeholders_are_valid(segments) if {
	positions := [i | startswith(segments[i], "{")]
	count(positions) <= 1
	every i in positions {
		i in {1, 2, 3}
		segments[i] == "{id}"
	}
}

test_literal_braces_in_a_request_do_not_match_a_template_literally if {
	m := gateway.request_match(request("GET", "users/{id}"))
	m.route == "users.read"
	m.params == {"id": "{id}"}
}

test_trust_policy_template_is_two_segments_deep if {
	m := gateway.request_match(request("PUT", "trust/policies/p-1"))
	m.route == "trust.policies.update"
	m.params == {"id": "p-1"}
	not gateway.endpoint_for(["api", "v1", "trust", "p-1"])
}

test_sign_in_endpoints_are_routed if {
	gateway.request_match(request("GET", "auth/magic")).route == "auth.magic.page"
	gateway.request_match(request("POST", "auth/magic")).route == "auth.magic.redeem"
	gateway.request_match(request("POST", "users/me/totp")).route == "users.me.totp.enrol"
	gateway.request_match(request("DELETE", "users/me/totp")).route == "users.me.totp.remove"
	gateway.request_match(request("POST", "users/me/totp/confirm")).route == "users.me.totp.confirm"
	gateway.request_match(request("PUT", "users/u-1/roles")).route == "users.roles.update"
	gateway.request_match(request("PUT", "users/u-1/plan")).route == "users.plan.update"
}
