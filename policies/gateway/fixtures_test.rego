# Shared fixtures for the gateway tests: requests, callers and decisions.
#
# Decisions are asked of the entry point itself, data.gateway.decision, with
# an input document; the parts (routes, RBAC, quotas) are tested on their own
# arguments.
package gateway_test

import data.gateway

# The decision for a request to /api/v1/<path>, e.g. decision_for("GET", "users/me", anonymous).
decision_for(method, path, subject) := d if {
	d := gateway.decision with input as {"request": request(method, path), "subject": subject}
}

# A request for /api/v1/<path>, e.g. request("GET", "users/me").
request(method, path) := {
	"method": method,
	"path": concat("", ["/api/v1/", path]),
	"parsed_path": array.concat(["api", "v1"], split(path, "/")),
	"query": {},
	"headers": {},
	"host": "gateway.test",
	"scheme": "https",
	"client_ip": "203.0.113.7",
}

anonymous := {"authenticated": false, "roles": []}

# An authenticated subject with the given roles, on the free plan, no MFA.
member(sub, roles) := {
	"authenticated": true,
	"sub": sub,
	"roles": roles,
	"plan": "free",
	"mfa": false,
	"iss": "https://issuer.test",
	"claims": {},
}

user(sub) := member(sub, ["user"])

admin := member("root", ["admin"])

# The same subject after TOTP verification.
with_mfa(subject) := object.union(subject, {"mfa": true})
