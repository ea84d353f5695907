package gateway

# A small policy for the quota tests: /q/<kind> is allowed and spends the
# descriptors named by <kind>; everything else is denied.

default decision := {"allow": false, "status": 403, "reason": "forbidden"}

decision := {
	"allow": true,
	"status": 200,
	"reason": "ok",
	"headers": identity_headers,
	"response_headers": {},
	"quotas": quotas,
	"cache_ttl_s": 5,
} if input.request.parsed_path[0] == "q"

subject_key := concat(":", ["user", input.subject.sub]) if {
	input.subject.authenticated
} else := concat(":", ["ip", input.request.client_ip])

identity_headers := {"x-user-id": input.subject.sub, "x-user-roles": concat(",", input.subject.roles)} if {
	input.subject.authenticated
} else := {}

plan_daily_limits := {"free": 2, "pro": 5}

default quotas := []

# 100 at once, then one a day: nothing refills during a test.
quotas := [{
	"name": "bucket100", "key": subject_key, "limit": 1, "window_s": 86400, "burst": 100,
	"cost": 1, "algorithm": "token_bucket", "shadow": false, "fail_mode": "local",
}] if input.request.parsed_path[1] == "bucket"

quotas := [{
	"name": "login", "key": subject_key, "limit": 6, "window_s": 60, "burst": 2,
	"cost": 1, "algorithm": "token_bucket", "shadow": false, "fail_mode": "local",
}] if input.request.parsed_path[1] == "login"

quotas := [{
	"name": "plan_daily", "key": subject_key, "limit": plan_daily_limits[input.subject.plan],
	"window_s": 86400, "burst": 1, "cost": 1, "algorithm": "calendar_day", "shadow": false,
	"fail_mode": "closed",
}] if input.request.parsed_path[1] == "plan"

# For `make bench-quota`: one per-user bucket that never runs dry.
quotas := [{
	"name": "bench", "key": subject_key, "limit": 1000000000, "window_s": 60,
	"burst": 1000000000, "cost": 1, "algorithm": "token_bucket", "shadow": false,
	"fail_mode": "local",
}] if input.request.parsed_path[1] == "bench"
