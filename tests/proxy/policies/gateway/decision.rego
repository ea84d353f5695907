package gateway

# The policy the proxy's end-to-end tests run on the real PDP.
# /open and the public meta endpoints: anyone. /app, /cached, /ws, /big:
# any authenticated caller (/cached verdicts may be cached by the proxy).
# /perip: only from 127.0.0.1, /tlsonly: only over HTTPS (both cacheable).
# /limited: always 429 with rate-limit headers. Metrics and health details: admins only.

default decision := {"allow": false, "status": 403, "reason": "forbidden"}

decision := {
	"allow": true,
	"status": 200,
	"reason": "ok",
	"headers": identity_headers,
	"response_headers": {"ratelimit-policy": "100;w=60"},
	"cache_ttl_s": cache_ttl,
} if allowed

decision := {
	"allow": false,
	"status": 429,
	"reason": "quota_exceeded",
	"response_headers": {"retry-after": "7", "ratelimit": "limit=0, remaining=0"},
} if {
	not allowed
	limited
}

decision := {
	"allow": false,
	"status": 401,
	"reason": "authentication_required",
	"response_headers": {"www-authenticate": "Bearer"},
} if {
	not allowed
	not limited
	not input.subject.authenticated
}

allowed if input.request.parsed_path[0] == "open"

allowed if {
	input.request.parsed_path[0] == "api"
	count(input.request.parsed_path) == 4
	input.request.parsed_path[3] in {"health", "info", "version"}
}

allowed if {
	"admin" in input.subject.roles
	input.request.parsed_path[3] == "health"
	input.request.parsed_path[4] == "details"
}

allowed if {
	"admin" in input.subject.roles
	input.request.parsed_path[3] == "metrics"
}

allowed if {
	input.subject.authenticated
	input.request.parsed_path[0] in {"app", "cached", "ws", "big"}
}

# A naive rule trusting a request header: the proxy never lets a client's
# x-user-* reach the PDP, so it cannot be exploited through the proxy.
allowed if {
	input.request.parsed_path[0] == "naive"
	input.request.headers["x-user-roles"] == "admin"
}

# A rule that reads a client header: it must judge the header as the
# upstream gets it (a Connection-nominated header never gets there).
allowed if {
	input.request.parsed_path[0] == "scoped"
	input.request.headers["x-scope"] == "own"
}

# Cacheable allows that depend on who asks and how: the proxy's verdict cache
# must never serve them to another client IP or over another scheme.
allowed if {
	input.request.parsed_path[0] == "perip"
	input.request.client_ip == "127.0.0.1"
}

allowed if {
	input.request.parsed_path[0] == "tlsonly"
	input.request.scheme == "https"
}

limited if input.request.parsed_path[0] == "limited"

cache_ttl := 30 if input.request.parsed_path[0] in {"cached", "perip", "tlsonly"}

else := 0

identity_headers := {
	"x-user-id": input.subject.sub,
	"x-user-roles": concat(",", input.subject.roles),
	"x-lucid-subject": input.subject.sub,
} if {
	input.subject.authenticated
} else := {}
