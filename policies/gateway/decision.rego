# The decision document the PDP asks for: data.gateway.decision.
#
# It is always defined. Unknown paths, unknown methods and anything the RBAC
# tables do not permit are denied (fail closed).
#
# The logic is functions of the request, the caller and the settings, so that
# every part can be tested on its own arguments (tests call decide() directly)
# and only input.rego reads `input`.
package gateway

default decision := {
	"allow": false,
	"status": 403,
	"reason": "forbidden",
	"headers": {},
	"response_headers": {},
	"quotas": [],
	"cache_ttl_s": 0,
}

decision := decide(
	{"method": request_method, "parsed_path": request_segments, "client_ip": request_client_ip},
	{
		"authenticated": subject_authenticated, "sub": subject_sub, "roles": subject_roles,
		"plan": subject_plan, "mfa": subject_mfa,
	},
	data.gateway.settings,
)

# The decision for a request and a subject shaped like input.request and
# input.subject, under the given settings; tests call it directly.
decide(request, subject, settings) := {
	"allow": allowed,
	"status": verdict.status,
	"reason": verdict.reason,
	"headers": identity_headers(allowed, caller),
	"response_headers": response_headers(verdict.status, match),
	"quotas": quotas,
	"cache_ttl_s": cache_ttl_s(allowed, quotas),
} if {
	caller := caller_facts(subject)
	match := request_match(request)
	verdict := access_verdict(match, caller)
	allowed := verdict.status == 200
	quotas := quotas_for(allowed, match.route, caller, object.get(request, "client_ip", ""), settings)
}

# The first matching line decides: 404, 405, allow, 401, 403.
access_verdict(match, caller) := {"status": 404, "reason": "no_route"} if {
	not match.endpoint_found
} else := {"status": 405, "reason": "method_not_allowed"} if {
	match.route == ""
} else := {"status": 200, "reason": "ok"} if {
	permitted(match.route, match.params, caller)
} else := {"status": 401, "reason": "authentication_required"} if {
	not caller.authenticated
} else := {"status": 403, "reason": "mfa_required"} if {
	needs_mfa(match.route)
	not caller.mfa
} else := {"status": 403, "reason": "forbidden"}

# Identity for the upstream, only on allow and only for a verified caller.
# The proxy strips client-sent headers of these names first.
identity_headers(allowed, caller) := {
	"x-user-id": caller.id,
	"x-user-roles": concat(",", caller.roles),
	"x-user-plan": caller.plan,
	"x-user-mfa": json.marshal(caller.mfa),
} if {
	allowed
	caller.authenticated
} else := {}

response_headers(status, match) := {"allow": concat(", ", match.methods)} if {
	status == 405
} else := {"www-authenticate": "Bearer"} if {
	status == 401
} else := {}

# Allowed requests that spend no quota may be cached briefly by the proxy.
cache_ttl_s(allowed, quotas) := 5 if {
	allowed
	count(quotas) == 0
} else := 0
