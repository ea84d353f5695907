# Caller: who is calling, as the PDP verified it before the policy ran.
#
# The PDP puts only verified claims in input.subject; a present but invalid
# credential is a 401 that never reaches the policy. Anything malformed is
# treated as anonymous or as "no such role", never as more privilege.
package gateway

# The facts the policy uses about the caller:
#   {"authenticated": bool, "id": sub, "roles": [sorted strings], "plan": name, "mfa": bool}
caller_facts(subject) := {
	"authenticated": true,
	"id": subject.sub,
	"roles": sorted_strings(object.get(subject, "roles", [])),
	"plan": plan_of(object.get(subject, "plan", "")),
	"mfa": object.get(subject, "mfa", false) == true,
} if {
	subject.authenticated == true
	is_string(subject.sub)
	subject.sub != ""
} else := {"authenticated": false, "id": "", "roles": [], "plan": "", "mfa": false}

# The distinct strings of a list, sorted; anything else in it is ignored.
sorted_strings(values) := sort({value |
	some value in values
	is_string(value)
}) if {
	is_array(values)
} else := []

# An unknown or missing plan gets the default one (the smallest), never more.
plan_of(name) := name if {
	data.gateway.plans[name]
} else := data.gateway.default_plan

is_admin(caller) if "admin" in caller.roles

has_any_role(caller, roles) if {
	caller.authenticated
	some role in roles
	role in caller.roles
}

# The caller is the user the path names, e.g. GET /users/{id}.
is_self(caller, user_id) if {
	caller.authenticated
	caller.id == user_id
}
