package gateway_test

import data.gateway

test_caller_facts_of_a_verified_subject if {
	gateway.caller_facts(object.union(member("alice", ["user", "admin", "user"]), {"plan": "pro", "mfa": true})) == {
		"authenticated": true, "id": "alice", "roles": ["admin", "user"], "plan": "pro", "mfa": true,
	}
}

test_anonymous_caller_has_no_roles_plan_or_mfa if {
	gateway.caller_facts(object.union(anonymous, {"roles": ["admin"], "mfa": true})) == {
		"authenticated": false, "id": "", "roles": [], "plan": "", "mfa": false,
	}
}

test_authenticated_without_a_subject_id_is_anonymous if {
	gateway.caller_facts({"authenticated": true, "sub": "", "roles": ["admin"]}).authenticated == false
	gateway.caller_facts({"authenticated": true, "roles": ["admin"]}).authenticated == false
	gateway.caller_facts({"authenticated": "true", "sub": "a"}).authenticated == false
}

test_malformed_roles_grant_nothing if {
	gateway.caller_facts(object.union(user("u"), {"roles": "admin"})).roles == []
	gateway.caller_facts(object.union(user("u"), {"roles": ["admin", 7, null]})).roles == ["admin"]
}

test_only_boolean_true_is_mfa if {
	gateway.caller_facts(object.union(user("u"), {"mfa": "true"})).mfa == false
	gateway.caller_facts(object.union(user("u"), {"mfa": 1})).mfa == false
}

test_unknown_or_missing_plan_is_the_default_plan if {
	gateway.plan_of("platinum") == "free"
	gateway.plan_of("") == "free"
	gateway.plan_of("enterprise") == "enterprise"
}
