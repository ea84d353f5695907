# Shared fixtures for the gateway tests: requests, callers and decisions.
#
# Tests call gateway.decide(request, subject, settings) directly; only
# input_test.rego uses `with`, on small rules, because on regopy 1.5.2:
# - every query compiles every `with` of every loaded module, cloning the
#   call tree under it each time (about 7 MB per `with` on data.gateway.decision,
#   not freed until the interpreter is), so `pdp test` grows with their number;
# - `with input as {...}` fails every builtin call evaluated under it, while
#   `with input.request as ... with input.subject as ...` works on both
#   engines;
# - a `with` inside a helper function crashes it (segfault), so tests write
#   their `with` clauses inline;
# - a helper in this package named like one in package gateway crashes it
#   (hence decision_for, not decide);
# - a `with` value that names a rule (`as admin`) is not resolved, so `with`
#   values are literals or function calls (`as user("alice")`).
package gateway_test

import data.gateway

# The decision for a request to /api/v1/<path>, e.g. decision_for("GET", "users/me", anonymous).
decision_for(method, path, subject) := gateway.decide(request(method, path), subject, data.gateway.settings)

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
