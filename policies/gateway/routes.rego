# Routes: which seed endpoint a request is for.
#
# The route table is data.gateway.endpoints (data.json), grouped by the first
# segment after /api/v1 so that a request only scans its own group. Within a
# group the first matching path wins, so list literal paths ("users/me")
# before the placeholder paths they would also match ("users/{user_id}").
# A segment written "{name}" matches any one non-empty segment and is
# captured into the match's params.name.
package gateway

# What a request is for:
#   {"endpoint_found": bool, "route": name or "", "params": {...}, "methods": [...]}
# route is "" when the endpoint does not take the request's method; methods
# lists the ones it takes (for a 405's Allow header).
request_match(request) := method_match(endpoint_for(request.parsed_path), decision_method(request.method)) if {
	is_array(request.parsed_path)
} else := {"endpoint_found": false, "route": "", "params": {}, "methods": []}

method_match(endpoint, method) := {
	"endpoint_found": true,
	"route": route,
	"params": endpoint.params,
	"methods": [],
} if {
	route := endpoint.methods[method]
} else := {
	"endpoint_found": true,
	"route": "",
	"params": {},
	"methods": allowed_methods(endpoint.methods),
}

# The endpoint a path (as segments) names: {"methods": {...}, "params": {...}};
# undefined when none does.
endpoint_for(segments) := {"methods": found.methods, "params": path_params(found.path, rest)} if {
	prefix := data.gateway.api_prefix
	array.slice(segments, 0, count(prefix)) == prefix
	rest := array.slice(segments, count(prefix), count(segments))
	group := data.gateway.endpoints[rest[0]]
	matching := {i |
		candidate := group[i]
		path_matches(candidate.path, rest)
	}
	count(matching) > 0
	found := group[min(matching)]
}

# HEAD is a GET without a body (RFC 9110), so it is decided like the GET.
decision_method(method) := "GET" if {
	upper(method) == "HEAD"
} else := upper(method)

# The methods an endpoint takes, HEAD included wherever GET is.
allowed_methods(methods) := sort([name | some name in (names | head_if_get(names))]) if {
	names := {name | methods[name]}
}

head_if_get(names) := {"HEAD"} if {
	"GET" in names
} else := set()

path_matches(pattern, segments) if {
	count(pattern) == count(segments)
	every i, expected in pattern {
		segment_matches(expected, segments[i])
	}
}

segment_matches(expected, actual) if expected == actual

segment_matches(expected, actual) if {
	is_placeholder(expected)
	is_string(actual)
	actual != ""
}

# The segments captured by placeholders, e.g. {"user_id": "42"}.
# regopy 1.5.2 quirks: it rejects `some i, x in coll` inside comprehensions
# ("Invalid collection"), and a comprehension's head that reads a function
# argument (`segments[i]`) comes out empty; so the body binds every value.
path_params(pattern, segments) := {name: value |
	expected := pattern[i]
	is_placeholder(expected)
	name := trim(expected, "{}")
	value := segments[i]
}

is_placeholder(segment) if startswith(segment, "{")
