package gateway_test

import data.gateway

test_anonymous_is_asked_to_authenticate_on_a_protected_route if {
	d := decision_for("GET", "users/me", anonymous)
	d.allow == false
	d.status == 401
	d.reason == "authentication_required"
	d.response_headers == {"www-authenticate": "Bearer"}
	d.headers == {}
}

test_user_reads_own_profile_with_identity_headers if {
	d := decision_for("GET", "users/me", member("alice", ["user", "operator"]))
	d.allow == true
	d.status == 200
	d.reason == "ok"
	d.headers == {"x-user-id": "alice", "x-user-roles": "operator,user", "x-user-plan": "free", "x-user-mfa": "false"}
}

test_anonymous_allow_carries_no_identity_headers if {
	d := decision_for("GET", "chain/info", anonymous)
	d.allow == true
	d.headers == {}
}

test_mfa_flag_is_passed_upstream if {
	d := decision_for("POST", "chain/transactions", with_mfa(user("alice")))
	d.allow == true
	d.headers["x-user-mfa"] == "true"
}

test_unknown_path_is_not_found if {
	d := decision_for("GET", "nothing/here", admin)
	d.allow == false
	d.status == 404
	d.reason == "no_route"
}

test_unknown_method_is_405_with_allow_header if {
	d := decision_for("DELETE", "users/me", user("alice"))
	d.status == 405
	d.reason == "method_not_allowed"
	d.response_headers == {"allow": "GET, HEAD, PUT"}
}

test_authenticated_without_permission_is_forbidden if {
	d := decision_for("POST", "users", user("alice"))
	d.status == 403
	d.reason == "forbidden"
	d.headers == {}
	d.quotas == []
}

test_money_move_without_mfa_is_mfa_required if {
	d := decision_for("POST", "wallets/w-1/transactions", admin)
	d.status == 403
	d.reason == "mfa_required"
}

test_quota_free_allow_may_be_cached if {
	d := decision_for("GET", "meta/health", anonymous)
	d.quotas == []
	d.cache_ttl_s == 5
}

test_allow_that_spends_quota_is_not_cached if {
	d := decision_for("GET", "users/me", user("alice"))
	count(d.quotas) > 0
	d.cache_ttl_s == 0
}

test_denial_is_never_cached if {
	gateway.cache_ttl_s(false, []) == 0
}

test_decision_has_exactly_the_contract_fields if {
	d := decision_for("GET", "users/me", user("alice"))
	object.keys(d) == {"allow", "status", "reason", "headers", "response_headers", "quotas", "cache_ttl_s"}
}

test_verdict_order_404_before_405_before_401 if {
	gateway.access_verdict({"endpoint_found": false, "route": ""}, {"authenticated": false}).status == 404
	gateway.access_verdict({"endpoint_found": true, "route": ""}, {"authenticated": false}).status == 405
	gateway.access_verdict({"endpoint_found": true, "route": "users.me.read", "params": {}}, {"authenticated": false, "roles": []}).status == 401
}
