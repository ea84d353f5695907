# Routes: which seed endpoint a request is for.
#
# The route table is data.gateway.endpoints (data.json): a path template
# after /api/v1 -> {method: route name}. A literal path ("users/me") wins over
# a template ("users/{id}"); a template holds at most one placeholder, always
# written "{id}" as its 2nd, 3rd or 4th segment, which matches one non-empty
# segment and becomes params.id. Of two templates that match a path, the one
# with the earlier placeholder wins.
#
# Matching is key lookups in the table, never a scan of it.
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
endpoint_for(segments) := endpoint_at(api_segments(segments))

# Tries the literal path, then the placeholder at the 2nd, 3rd and 4th
# segment: the first that names an endpoint wins.
endpoint_at(rest) := {"methods": methods, "params": {}} if {
	key := concat("/", rest)
	not contains(key, "{")
	methods := data.gateway.endpoints[key]
} else := endpoint if {
	endpoint := template_at(rest, 1)
} else := endpoint if {
	endpoint := template_at(rest, 2)
} else := endpoint if {
	endpoint := template_at(rest, 3)
}

template_at(rest, i) := {"methods": methods, "params": {"id": id}} if {
	id := rest[i]
	id != ""
	methods := data.gateway.endpoints[concat("/", with_placeholder(rest, i))]
}

# The segments after the API prefix, e.g. ["users", "me"]; undefined outside it.
api_segments(segments) := array.slice(segments, count(prefix), count(segments)) if {
	prefix := data.gateway.api_prefix
	array.slice(segments, 0, count(prefix)) == prefix
	count(segments) > count(prefix)
}

# The segments with the one at position i replaced by "{id}".
with_placeholder(segments, i) := array.concat(
	array.slice(segments, 0, i),
	array.concat(["{id}"], array.slice(segments, i + 1, count(segments))),
)

# HEAD is a GET without a body (RFC 9110), so it is decided like the GET.
decision_method(method) := "GET" if {
	upper(method) == "HEAD"
} else := upper(method)

# The methods an endpoint takes, HEAD included wherever GET is.
allowed_methods(methods) := sort(names | head) if {
	names := {name | methods[name]}
	head := {"HEAD" | names.GET}
}
