package gateway_test

import data.gateway

all_routes := {route |
	some methods in data.gateway.endpoints
	some route in methods
}

routes_with(who) := {route | data.gateway.access[route] == who}

test_every_route_has_an_access_line if {
	missing := {route |
		some route in all_routes
		not data.gateway.access[route]
	}
	count(missing) == 0
}

test_access_names_only_known_routes if {
	stray := {route |
		data.gateway.access[route]
		not route in all_routes
	}
	count(stray) == 0
}

test_access_kinds_are_known if {
	unknown := {route |
		who := data.gateway.access[route]
		not who in {"anyone", "authenticated", "mfa", "admin_or_self", "signup"}
		not is_array(who)
	}
	count(unknown) == 0
}

test_anyone_routes_need_no_token if {
	count(routes_with("anyone")) == 11
	every route in routes_with("anyone") {
		gateway.permitted(route, {}, gateway.caller_facts(anonymous))
	}
}

test_authenticated_routes_need_a_token if {
	count(routes_with("authenticated")) == 16
	every route in routes_with("authenticated") {
		not gateway.permitted(route, {}, gateway.caller_facts(anonymous))
		gateway.permitted(route, {}, gateway.caller_facts(member("u", [])))
	}
}

test_metrics_for_admin_and_monitoring_only if {
	gateway.permitted("meta.metrics", {}, gateway.caller_facts(member("m", ["monitoring"])))
	gateway.permitted("meta.metrics", {}, gateway.caller_facts(admin))
	not gateway.permitted("meta.metrics", {}, gateway.caller_facts(member("o", ["operator", "user"])))
	not gateway.permitted("meta.metrics", {}, gateway.caller_facts(object.union(anonymous, {"roles": ["admin"]})))
}

test_manifest_writes_for_operator_or_admin if {
	gateway.permitted("manifests.create", {}, gateway.caller_facts(member("o", ["operator"])))
	gateway.permitted("manifests.update", {}, gateway.caller_facts(admin))
	not gateway.permitted("manifests.update", {}, gateway.caller_facts(user("u")))
}

test_trust_policy_writes_for_admin_only if {
	gateway.permitted("trust.policies.create", {}, gateway.caller_facts(admin))
	gateway.permitted("trust.policies.update", {}, gateway.caller_facts(admin))
	not gateway.permitted("trust.policies.create", {}, gateway.caller_facts(member("o", ["operator"])))
	not gateway.permitted("trust.policies.update", {}, gateway.caller_facts(member("o", ["operator"])))
}

test_user_creation_for_admin_only if {
	gateway.permitted("users.create", {}, gateway.caller_facts(admin))
	not gateway.permitted("users.create", {}, gateway.caller_facts(user("u")))
}

test_user_record_for_admin_or_oneself if {
	gateway.permitted("users.read", {"id": "alice"}, gateway.caller_facts(user("alice")))
	gateway.permitted("users.read", {"id": "bob"}, gateway.caller_facts(admin))
	not gateway.permitted("users.read", {"id": "bob"}, gateway.caller_facts(user("alice")))
	not gateway.permitted("users.read", {"id": ""}, gateway.caller_facts(anonymous))
}

test_money_moves_need_mfa_whatever_the_roles if {
	routes_with("mfa") == {"chain.transactions.create", "wallets.transactions.create", "users.me.totp.remove"}
	every route in routes_with("mfa") {
		gateway.permitted(route, {}, gateway.caller_facts(with_mfa(user("u"))))
		not gateway.permitted(route, {}, gateway.caller_facts(admin))
		not gateway.permitted(route, {}, gateway.caller_facts(with_mfa(anonymous)))
	}
}

test_unlisted_route_is_denied_to_everyone if {
	not gateway.permitted("made.up", {}, gateway.caller_facts(with_mfa(admin)))
}

test_user_creation_open_to_anyone_in_open_signup_mode if {
	gateway.permitted("users.create", {}, gateway.caller_facts(anonymous)) with data.gateway.settings.signup_mode as "open"
	not gateway.permitted("users.create", {}, gateway.caller_facts(anonymous)) with data.gateway.settings.signup_mode as "admin"
}

test_roles_and_plan_changes_for_admin_only if {
	gateway.permitted("users.roles.update", {"id": "u"}, gateway.caller_facts(admin))
	gateway.permitted("users.plan.update", {"id": "u"}, gateway.caller_facts(admin))
	not gateway.permitted("users.roles.update", {"id": "u"}, gateway.caller_facts(user("u")))
	not gateway.permitted("users.plan.update", {"id": "u"}, gateway.caller_facts(user("u")))
}
