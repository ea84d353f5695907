package gateway_test

import data.gateway

quota_names(quotas) := [q.name | some q in quotas]

defaults := data.gateway.settings

test_user_gets_per_minute_and_plan_quotas_sorted_by_name if {
	d := decision_for("GET", "users/me", object.union(user("alice"), {"plan": "pro"}))
	quota_names(d.quotas) == ["plan_daily", "plan_monthly", "user_per_minute"]
	d.quotas[2] == {
		"name": "user_per_minute", "key": "user:alice", "limit": 100, "window_s": 60, "burst": 200,
		"cost": 1, "algorithm": "token_bucket", "shadow": false, "fail_mode": "local",
	}
	d.quotas[0] == {
		"name": "plan_daily", "key": "user:alice", "limit": 20000, "window_s": 86400, "burst": 20000,
		"cost": 1, "algorithm": "calendar_day", "shadow": false, "fail_mode": "local",
	}
	d.quotas[1].algorithm == "calendar_month"
	d.quotas[1].limit == 500000
}

test_anonymous_is_limited_per_client_ip if {
	d := decision_for("GET", "chain/blocks", anonymous)
	d.quotas == [{
		"name": "ip_per_minute", "key": "ip:203.0.113.7", "limit": 100, "window_s": 60, "burst": 200,
		"cost": 1, "algorithm": "token_bucket", "shadow": false, "fail_mode": "local",
	}]
}

test_login_and_verify_have_a_strict_per_ip_limit_that_fails_closed if {
	login := decision_for("POST", "auth/login", anonymous)
	quota_names(login.quotas) == ["auth_login_per_ip", "ip_per_minute"]
	login.quotas[0] == {
		"name": "auth_login_per_ip", "key": "ip:203.0.113.7", "limit": 10, "window_s": 60, "burst": 10,
		"cost": 1, "algorithm": "token_bucket", "shadow": false, "fail_mode": "closed",
	}
	verify := decision_for("POST", "auth/verify", anonymous)
	quota_names(verify.quotas) == ["auth_verify_per_ip", "ip_per_minute"]
}

test_probes_spend_no_quota if {
	every route in ["meta.health", "meta.version", "meta.info"] {
		gateway.quotas_for(true, route, gateway.caller_facts(user("u")), "192.0.2.1", defaults) == []
	}
}

test_denied_requests_spend_no_quota if {
	gateway.quotas_for(false, "users.me.read", gateway.caller_facts(user("u")), "192.0.2.1", defaults) == []
}

test_plan_without_a_daily_limit_has_no_daily_quota if {
	quotas := gateway.quotas_for(true, "users.me.read", gateway.caller_facts(object.union(user("u"), {"plan": "enterprise"})), "192.0.2.1", defaults)
	quota_names(quotas) == ["plan_monthly", "user_per_minute"]
}

test_settings_set_the_per_minute_limits if {
	d := gateway.decide(request("GET", "users/me"), user("alice"), {"rate_limit_per_minute": 7, "rate_limit_burst": 9, "rate_limit_enabled": true})
	d.quotas[2].limit == 7
	d.quotas[2].burst == 9
}

test_rate_limiting_disabled_means_no_quotas_and_a_cacheable_allow if {
	d := gateway.decide(request("POST", "auth/login"), anonymous, {"rate_limit_per_minute": 100, "rate_limit_burst": 200, "rate_limit_enabled": false})
	d.allow == true
	d.quotas == []
	d.cache_ttl_s == 5
}

test_missing_client_ip_shares_one_unknown_bucket if {
	gateway.client_ip_key("") == "ip:unknown"
	gateway.client_ip_key(null) == "ip:unknown"
	gateway.client_ip_key("2001:db8::1") == "ip:2001:db8::1"
}

test_quota_lists_are_sorted_by_name if {
	callers := [
		gateway.caller_facts(anonymous),
		gateway.caller_facts(user("u")),
		gateway.caller_facts(object.union(user("u"), {"plan": "enterprise"})),
	]
	unsorted := {[route, i] |
		some route in ["auth.login", "auth.verify", "users.me.read"]
		caller := callers[i]
		names := quota_names(gateway.quotas_for(true, route, caller, "192.0.2.1", defaults))
		names != sort(names)
	}
	count(unsorted) == 0
}

test_authenticated_login_spends_brute_force_and_user_quotas if {
	quotas := gateway.quotas_for(true, "auth.login", gateway.caller_facts(user("u")), "192.0.2.1", defaults)
	quota_names(quotas) == ["auth_login_per_ip", "plan_daily", "plan_monthly", "user_per_minute"]
	quotas[0].key == "ip:192.0.2.1"
}
