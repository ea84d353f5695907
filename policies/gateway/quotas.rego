# Quotas: which rate limits and quotas an allowed request spends.
#
# Each descriptor names one counter; the PDP spends all of a request's
# descriptors at once in Redis (all or nothing) and adds the hash tags, so
# `key` is the bare identity ("user:<sub>" or "ip:<client_ip>"). A counter is
# identified by (name, key): descriptors with the same key but different
# names never share a bucket.
package gateway

# Health, version and info are probed by load balancers and kubelets, which
# must never be throttled.
quota_free_routes := {"meta.health", "meta.version", "meta.info"}

# Brute-force protection per client IP. Fail closed: while Redis is down the
# local fallback would multiply the limit by the number of workers.
brute_force_routes := {"auth.login": "auth_login_per_ip", "auth.verify": "auth_verify_per_ip"}

# RATE_LIMIT_ENABLED=false turns every descriptor off, brute-force ones too.
rate_limiting_enabled(settings) if object.get(settings, "rate_limit_enabled", true) != false

# The descriptors of an allowed request, sorted by name so that equal
# decisions are equal documents. The list is built in name order (auth_*,
# ip_per_minute, plan_daily, plan_monthly, user_per_minute); a test checks
# the order, so keep new names in it.
# settings is data.gateway.settings: {"rate_limit_per_minute", "rate_limit_burst",
# "rate_limit_enabled"}, which the PDP sets from the environment.
quotas_for(allowed, route, caller, client_ip, settings) := array.concat(
	brute_force_quota(route, client_ip),
	caller_quotas(caller, client_ip, settings),
) if {
	allowed
	rate_limiting_enabled(settings)
	not route in quota_free_routes
} else := []

brute_force_quota(route, client_ip) := [token_bucket(name, client_ip_key(client_ip), limits.limit, limits.window_s, limits.burst, "closed")] if {
	name := brute_force_routes[route]
	limits := data.gateway.brute_force_limit
} else := []

# Callers with a token spend their plan's daily and monthly quotas and a
# per-user rate limit; anonymous callers a per-IP rate limit.
caller_quotas(caller, client_ip, settings) := array.concat(
	plan_quota(caller.plan, "daily", "plan_daily", "calendar_day", 86400, key),
	array.concat(
		plan_quota(caller.plan, "monthly", "plan_monthly", "calendar_month", 2678400, key),
		[per_minute("user_per_minute", key, settings)],
	),
) if {
	caller.authenticated
	key := user_key(caller)
} else := [per_minute("ip_per_minute", client_ip_key(client_ip), settings)]

# None when the plan sets no such limit (e.g. enterprise has no daily one).
plan_quota(plan, period, name, algorithm, window_s, key) := [calendar_quota(name, key, limit, algorithm, window_s)] if {
	limit := data.gateway.plans[plan][period]
} else := []

per_minute(name, key, settings) := token_bucket(
	name, key,
	settings.rate_limit_per_minute, 60,
	settings.rate_limit_burst, "local",
)

user_key(caller) := concat("", ["user:", caller.id])

client_ip_key(client_ip) := concat("", ["ip:", client_ip]) if {
	is_string(client_ip)
	client_ip != ""
} else := "ip:unknown"

# Short windows: `limit` tokens per `window_s` refill a bucket of `burst`.
token_bucket(name, key, limit, window_s, burst, fail_mode) := {
	"name": name,
	"key": key,
	"limit": limit,
	"window_s": window_s,
	"burst": burst,
	"cost": 1,
	"algorithm": "token_bucket",
	"shadow": false,
	"fail_mode": fail_mode,
}

# Long quotas on UTC calendar days or months; window_s is nominal (the PDP
# aligns windows to the calendar) and burst equals the limit.
calendar_quota(name, key, limit, algorithm, window_s) := {
	"name": name,
	"key": key,
	"limit": limit,
	"window_s": window_s,
	"burst": limit,
	"cost": 1,
	"algorithm": algorithm,
	"shadow": false,
	"fail_mode": "local",
}
