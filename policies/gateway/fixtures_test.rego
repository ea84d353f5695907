# Shared fixtures for the gateway tests: requests, callers and decisions.
#
# regopy 1.5.2 constraints that shape these tests (each found the hard way):
# - `with input as {...}` fails every builtin call evaluated under it, while
#   `with input.request as ... with input.subject as ...` works on both
#   engines; so tests replace those two fields.
# - a `with` inside a helper function crashes it (segfault), so each test
#   writes its `with` clauses inline;
# - a `with` value that names a rule (`as admin`) is not resolved, so `with`
#   values are literals or function calls (`as user("alice")`).
package gateway_test

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
