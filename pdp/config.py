"""Settings as data: each one declared once, with its environment variable,
type, default and a one-line description (the gunicorn config.py model).

Everything else (validation errors, `pdp settings` help) derives from the table.
A bad value stops startup with one clear line that names the variable.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from servicekit.identity import DECISION_HEADER_NAMES_DEFAULT, parse_header_names
from servicekit.settings import (
    ConfigError,
    Helm,
    Setting,
    boolean,
    choice,
    cidr_list,
    float_range,
    int_range,
    networks,
    optional_text,
    text,
    url,
    with_schema,
)
from servicekit.settings import describe as _describe
from servicekit.settings import load as _load

__all__ = ["ConfigError", "SETTINGS", "Setting", "Settings", "describe", "load_settings"]


@with_schema({"type": "string", "enum": ["wasm", "opa"]})
def _engine(raw: str) -> str:
    value = raw.strip().lower()
    if value == "embedded":
        raise ValueError(
            "the embedded engine (regopy) was retired: it did not escape strings in its "
            "results; use wasm (OPA-compiled Rego in-process, the default) or opa"
        )
    return choice("wasm", "opa")(value)


@with_schema({"type": "string"})
def _header_names(raw: str) -> tuple[str, ...]:
    return parse_header_names(raw)


@with_schema({"type": "string", "pattern": "^[^{}\\s]{0,64}$"})
def _key_prefix(raw: str) -> str:
    value = raw.strip()
    if "{" in value or "}" in value or not value.isprintable() or " " in value or len(value) > 64:
        raise ValueError("expected up to 64 printable characters without spaces or braces")
    return value


@with_schema({"type": "string", "pattern": "^(redis|rediss|redis\\+sentinel|redis\\+cluster|unix)://"})
def _redis_url(raw: str) -> str:
    from .redis_url import RedisURLError, parse_url

    value = raw.strip()
    try:
        parse_url(value)
    except RedisURLError as err:
        raise ValueError(str(err).removeprefix("REDIS_URL: ")) from None
    return value


_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
_ONE_ALGORITHM = "(" + "|".join(_ALGORITHMS) + ")"


@with_schema({"type": "string", "pattern": f"^{_ONE_ALGORITHM}(,{_ONE_ALGORITHM})*$"})
def _algorithms(raw: str) -> tuple[str, ...]:
    allowed = set(_ALGORITHMS)
    algs = tuple(a.strip().upper() for a in raw.split(",") if a.strip())
    bad = [a for a in algs if a not in allowed]
    if not algs or bad:
        raise ValueError("expected a comma-separated list of " + ", ".join(sorted(allowed)))
    if {a[:2] for a in algs} & {"HS"} and {a[:2] for a in algs} & {"RS", "ES", "PS"}:
        # Mixing symmetric and asymmetric algorithms invites key confusion.
        raise ValueError("do not mix HS* with RS*/ES*/PS* algorithms")
    return algs


@with_schema({"type": "string", "pattern": "^([A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$"})
def _optional_authority(raw: str) -> str | None:
    """An RFC 3986 authority (host or host:port), as EIP-4361's domain line holds it."""
    import re

    value = raw.strip()
    if not value:
        return None
    if not re.match(r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$", value):
        raise ValueError("expected a host or host:port, without scheme or path (e.g. login.example.com)")
    return value.lower()


@with_schema({"type": "string", "pattern": "^https?://[^\\s]+$"})
def _optional_http_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or any(c in value for c in " \n\r"):
        raise ValueError("expected an http(s):// URL")
    return value


@with_schema({"type": "string"})
def _token_types(raw: str) -> tuple[str, ...]:
    from .authn.token_types import normalize_token_types

    return normalize_token_types(raw)


@with_schema(
    {
        "anyOf": [
            {"enum": ["on", "off", "true", "false"]},
            {"type": "number", "minimum": 0, "maximum": 1},
            {"type": "string", "pattern": "^(0(\\.[0-9]+)?|1(\\.0+)?)$"},
        ]
    }
)
def _sample(raw: str) -> float:
    value = raw.strip().lower()
    if value in ("on", "true", "1"):
        return 1.0
    if value in ("off", "false", "0"):
        return 0.0
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError("expected on, off, or a sample rate from 0 to 1")
    return rate


@with_schema({"type": "string", "pattern": "^(smtp|smtp\\+starttls|smtps)://"})
def _optional_smtp_url(raw: str) -> str | None:
    from .accounts.mailer import parse_smtp_url

    value = raw.strip()
    if not value:
        return None
    parse_smtp_url(value)
    return value


@with_schema({"type": "string", "pattern": "^https?://[^?#@ ]+$"})
def _optional_base_url(raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    if not value:
        return None
    if not (value.startswith("http://") or value.startswith("https://")) or any(c in value for c in "?#@ "):
        raise ValueError("expected an http(s):// URL without query, fragment or credentials")
    return value


@with_schema({"type": "string", "pattern": "@"})
def _mail_from(raw: str) -> str:
    value = raw.strip()
    if "@" not in value or "\n" in value or "\r" in value or len(value) > 256:
        raise ValueError("expected an address such as 'Name <no-reply@example.com>'")
    return value


@with_schema({"type": "string"})
def _totp_keys(raw: str):
    from .accounts.secret_box import parse_keys

    return parse_keys(raw) if raw.strip() else None


@with_schema({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}(,[A-Za-z0-9._:-]{1,64})*$"})
def _names(raw: str) -> tuple[str, ...]:
    import re

    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    if not names or not all(re.match(r"^[A-Za-z0-9._:-]{1,64}$", n) for n in names):
        raise ValueError("expected comma-separated names of letters, digits, . _ : -")
    return names


# The chart sets the sign-in settings only with a MongoDB (docs/auth.md).
_WITH_MONGODB = ("mongodb.uri", "mongodb.existingSecret")

# helm=: the values path that feeds the variable in the chart (scripts/gen_settings.py
# writes the env entries); Helm(template=...): set by hand in the templates; none:
# set through the pass-through map pdp.settings (ENV: value).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "service_name",
        "SERVICE_NAME",
        text,
        "api-gateway",
        "Service name in logs, metrics and /v1/version.",
        helm=Helm(template="pdp.serviceName, else the PDP's fullname"),
    ),
    Setting("api_version", "API_VERSION", text, "v1", "API version reported by /v1/version."),
    Setting("debug", "DEBUG", boolean, "false", "Debug logging."),
    Setting("bind_host", "PDP_BIND_HOST", text, "0.0.0.0", "Address the PDP listens on."),
    Setting("port", "AUTH_PORT", int_range(1, 65535), "8082", "Port of the PDP's decision API.", helm="pdp.port"),
    Setting("workers", "PDP_WORKERS", int_range(1, 64), "2", "gunicorn worker processes (gevent).", helm="pdp.workers"),
    Setting(
        "worker_connections",
        "PDP_WORKER_CONNECTIONS",
        int_range(1, 100000),
        "1000",
        "Concurrent connections per worker.",
    ),
    Setting(
        "grpc_enabled",
        "PDP_GRPC_ENABLED",
        boolean,
        "false",
        "`pdp serve` also serves Envoy's ext_authz gRPC API on PDP_GRPC_PORT (as `pdp serve-grpc` would).",
        helm=Helm("pdp.grpc.enabled", when="pdp.grpc.enabled"),
    ),
    Setting(
        "grpc_port",
        "PDP_GRPC_PORT",
        int_range(1, 65535),
        "9191",
        "Port of `pdp serve-grpc`, Envoy's ext_authz gRPC service (opa-envoy-plugin's 9191).",
        helm=Helm("pdp.grpc.port", when="pdp.grpc.enabled"),
    ),
    Setting(
        "grpc_workers",
        "PDP_GRPC_WORKERS",
        int_range(1, 64),
        "2",
        "`pdp serve-grpc` processes, sharing the port (SO_REUSEPORT).",
        helm=Helm("pdp.grpc.workers", when="pdp.grpc.enabled"),
    ),
    Setting(
        "grpc_threads",
        "PDP_GRPC_THREADS",
        int_range(1, 256),
        "8",
        "Threads answering Check calls in each `pdp serve-grpc` process.",
    ),
    Setting(
        "engine",
        "PDP_ENGINE",
        _engine,
        "wasm",
        "Policy engine: wasm (OPA-compiled Rego run in-process by wasmtime) or opa (a real OPA server).",
        helm="pdp.engine",
    ),
    Setting(
        "opa_binary",
        "OPA_BINARY",
        text,
        "opa",
        "OPA binary the wasm engine compiles policies with (opa build -t wasm); not needed for a prebuilt "
        "bundle.tar.gz.",
    ),
    Setting(
        "opa_url",
        "OPA_URL",
        url("http", "https"),
        "http://127.0.0.1:8181",
        "OPA server for PDP_ENGINE=opa.",
        helm=Helm(template="the OPA sidecar on 127.0.0.1:pdp.opa.port, with pdp.engine: opa"),
    ),
    Setting(
        "opa_push_policies",
        "OPA_PUSH_POLICIES",
        boolean,
        "true",
        "Push POLICY_DIR to OPA on every load; false when OPA loads a bundle itself.",
    ),
    Setting("opa_timeout_ms", "OPA_TIMEOUT_MS", int_range(1, 60000), "200", "Timeout of one OPA query."),
    Setting(
        "policy_dir",
        "POLICY_DIR",
        text,
        "policies",
        "Folder of .rego modules and data.json files, or a bundle.tar.gz built by `opa build -t wasm`.",
        helm=Helm(template="/policies: the image's policies, or the policies ConfigMap mounted there"),
    ),
    Setting(
        "policy_reload_s",
        "POLICY_RELOAD_INTERVAL_S",
        float_range(0.0, 60.0),
        "0.5",
        "How often to look for policy edits; 0 turns hot reload off.",
    ),
    Setting(
        "forward_auth_front",
        "FORWARD_AUTH_FRONT",
        choice("nginx", "traefik", "envoy"),
        "nginx",
        "Gateway asking /v1/forward-auth: nginx (X-Original-Method/-URI), traefik (X-Forwarded-Method/-Uri), envoy "
        "(uses /v1/ext-authz; forward-auth off). The other's headers are refused.",
    ),
    Setting(
        "trusted_proxies",
        "TRUSTED_PROXIES",
        cidr_list,
        "",
        "CIDRs of the gateways whose X-Real-IP / X-Forwarded-For forward-auth believes (comma-separated); others are "
        "the client themselves.",
    ),
    Setting(
        "max_body_bytes",
        "PDP_MAX_BODY_BYTES",
        int_range(1024, 10 * 1024 * 1024),
        "65536",
        "Largest /v1/check body accepted (413 above).",
    ),
    Setting(
        "redis_url",
        "REDIS_URL",
        _redis_url,
        "redis://127.0.0.1:6379/0",
        "Redis for quota counters and the token denylist: redis://, rediss://, unix://, "
        "redis+sentinel://h:p,h:p/master/db, redis+cluster://h:p,h:p.",
        helm=Helm(template="secretKeyRef: redis.url in the chart's Secret, or redis.existingSecret"),
    ),
    Setting("redis_timeout_ms", "REDIS_TIMEOUT_MS", int_range(1, 10000), "20", "Socket timeout of one Redis call."),
    Setting(
        "mongodb_uri",
        "MONGODB_URI",
        optional_text,
        "",
        "MongoDB for accounts (e.g. mongodb://mongodb:27017/lucid_gateway); the sign-in API (/api/v1/auth, "
        "/api/v1/users) is served only when set.",
        helm=Helm(template="secretKeyRef: mongodb.uri in the chart's Secret, or mongodb.existingSecret"),
    ),
    Setting(
        "jwt_secret_key",
        "JWT_SECRET_KEY",
        optional_text,
        "",
        "HS* signing secret (at least 32 bytes). Never logged.",
        secret=True,
        helm=Helm(
            template="secretKeyRef: jwt.secretKey (else a generated key) in the chart's Secret, or jwt.existingSecret"
        ),
    ),
    Setting(
        "jwt_algorithms",
        "JWT_ALGORITHM",
        _algorithms,
        "HS256",
        "Allowed JWT algorithms, comma-separated (an allow-list).",
        helm="jwt.algorithm",
    ),
    Setting(
        "jwt_public_key",
        "JWT_PUBLIC_KEY",
        optional_text,
        "",
        "PEM public key (or a path to one) for RS*/ES*/PS*.",
        helm="jwt.publicKey",
    ),
    Setting(
        "jwks_url",
        "JWKS_URL",
        _optional_http_url,
        "",
        "JWKS endpoint for RS*/ES*/PS*; refetched on an unknown kid.",
        helm="jwt.jwksUrl",
    ),
    Setting(
        "jwks_min_refresh_s",
        "JWKS_MIN_REFRESH_S",
        float_range(0.0, 3600.0),
        "30",
        "At most one JWKS refetch per this many seconds.",
    ),
    Setting("jwt_issuer", "JWT_ISSUER", optional_text, "", "Required iss claim, when set.", helm="jwt.issuer"),
    Setting(
        "jwt_audience",
        "JWT_AUDIENCE",
        optional_text,
        "",
        "Required aud claim, when set; unset, a token naming any audience is refused.",
        helm="jwt.audience",
    ),
    Setting(
        "jwt_access_token_types",
        "JWT_ACCESS_TOKEN_TYPES",
        _token_types,
        "at+jwt",
        "Accepted access-token types: header typ, or HEADER:CLAIM for the payload's typ too (Keycloak: JWT:Bearer); "
        "none = no typ header.",
    ),
    Setting("jwt_leeway_s", "JWT_LEEWAY_S", int_range(0, 300), "30", "Clock skew allowed on exp/nbf/iat."),
    Setting(
        "jwt_access_minutes",
        "JWT_ACCESS_TOKEN_EXPIRE_MINUTES",
        int_range(1, 1440),
        "15",
        "Lifetime of access tokens minted by `pdp token`.",
        helm="jwt.accessTokenExpireMinutes",
    ),
    Setting("jwt_refresh_days", "JWT_REFRESH_TOKEN_EXPIRE_DAYS", int_range(1, 365), "7", "Lifetime of refresh tokens."),
    Setting(
        "revocation_cache_s",
        "JWT_REVOCATION_CACHE_S",
        float_range(0.0, 60.0),
        "1",
        "Reuse a 'not revoked' answer this long; a revocation takes effect within it.",
    ),
    Setting(
        "token_cache_size",
        "JWT_CACHE_SIZE",
        int_range(0, 1_000_000),
        "10000",
        "Verified tokens remembered per worker (their time claims are still checked).",
    ),
    Setting(
        "revocation_outage_s",
        "JWT_REVOCATION_OUTAGE_S",
        float_range(0.0, 86400.0),
        "120",
        "While Redis is unreachable, answer revocations from the worker's local copy for at most this long after its "
        "last sync, then fail closed (0: fail closed at once).",
    ),
    Setting(
        "revocation_sync_s",
        "JWT_REVOCATION_SYNC_S",
        float_range(0.05, 60.0),
        "0.5",
        "How often each worker reads new revocations into its local copy.",
    ),
    Setting(
        "revocation_view_answers",
        "JWT_REVOCATION_VIEW_ANSWERS",
        boolean,
        "false",
        "A local copy synced within JWT_REVOCATION_CACHE_S answers 'not revoked' without asking Redis (a decision "
        "that spends no quota then makes no Redis call; one that does folds the lookup into its spend either way); "
        "then only revocations made through the PDP (sign-out, tooling) take effect, a bare SET of a lucid:revoked: "
        "key is not seen.",
    ),
    Setting(
        "revocation_fail_open",
        "JWT_REVOCATION_FAIL_OPEN",
        boolean,
        "false",
        "Accept tokens with a jti when the denylist (Redis) is unreachable.",
    ),
    Setting(
        "rate_limit_per_minute",
        "RATE_LIMIT_REQUESTS_PER_MINUTE",
        int_range(1, 10_000_000),
        "100",
        "Default per-user limit per minute.",
        helm="rateLimit.requestsPerMinute",
    ),
    Setting(
        "rate_limit_burst",
        "RATE_LIMIT_BURST_SIZE",
        int_range(1, 10_000_000),
        "200",
        "Default bucket capacity (burst).",
        helm="rateLimit.burstSize",
    ),
    Setting(
        "rate_limit_enabled", "RATE_LIMIT_ENABLED", boolean, "true", "Spend quotas at all.", helm="rateLimit.enabled"
    ),
    Setting(
        "decision_log",
        "DECISION_LOG",
        _sample,
        "1",
        "Decision log: on, off, or a sample rate from 0 to 1.",
        helm="pdp.decisionLog",
    ),
    Setting(
        "log_level",
        "LOG_LEVEL",
        choice("debug", "info", "warning", "error"),
        "info",
        "Log level of the JSON logs.",
        helm="logLevel",
    ),
    Setting(
        "decision_header_names",
        "DECISION_HEADER_NAMES",
        _header_names,
        DECISION_HEADER_NAMES_DEFAULT,
        "Headers a decision may set (a trailing * matches a prefix); a decision setting any other is denied (503 "
        "policy_bad_headers).",
    ),
    Setting(
        "memo_size",
        "PDP_MEMO_SIZE",
        int_range(0, 1_000_000),
        "10000",
        "Memoized decisions per worker (0 turns memoization off).",
    ),
    # Accounts and sign-in (docs/auth.md); used only when MONGODB_URI is set.
    Setting(
        "mongodb_timeout_ms",
        "MONGODB_TIMEOUT_MS",
        int_range(100, 60000),
        "2000",
        "Server selection and connect timeout for MongoDB.",
    ),
    Setting(
        "smtp_url",
        "SMTP_URL",
        _optional_smtp_url,
        "",
        "SMTP server for sign-in mails: smtp://[user:pass@]host:port, smtp+starttls://, smtps://.",
        helm=Helm(template="secretKeyRef: signin.smtpUrl in the chart's Secret, or signin.existingSecret"),
    ),
    Setting("smtp_timeout_ms", "SMTP_TIMEOUT_MS", int_range(100, 60000), "5000", "Timeout of one SMTP conversation."),
    Setting(
        "mail_from",
        "MAIL_FROM",
        _mail_from,
        "lucid-gateway <no-reply@localhost>",
        "Sender of sign-in mails.",
        helm=Helm("signin.mailFrom", when=_WITH_MONGODB),
    ),
    Setting(
        "public_base_url",
        "PUBLIC_BASE_URL",
        _optional_base_url,
        "",
        "Base of links in mails (the gateway's public URL); never taken from a request's Host header.",
        helm=Helm("signin.publicBaseUrl", when=_WITH_MONGODB),
    ),
    Setting(
        "magic_link_minutes", "MAGIC_LINK_TTL_MINUTES", int_range(1, 60), "15", "Lifetime of a magic sign-in link."
    ),
    Setting(
        "totp_encryption_keys",
        "TOTP_ENCRYPTION_KEYS",
        _totp_keys,
        "",
        "AES-256-GCM keys for TOTP secrets at rest: id:base64url32,...; the first seals, all open (rotation). Never "
        "logged.",
        secret=True,
        helm=Helm(template="secretKeyRef: signin.totpKeys in the chart's Secret, or signin.existingSecret"),
    ),
    Setting("totp_issuer", "TOTP_ISSUER", text, "lucid-gateway", "Issuer shown by authenticator apps."),
    Setting(
        "totp_max_retries",
        "AUTH_TOTP_MAX_RETRIES",
        int_range(1, 100),
        "3",
        "Wrong TOTP/recovery codes within AUTH_TOTP_FIND_TIME_S that lock the account.",
    ),
    Setting(
        "totp_find_time_s",
        "AUTH_TOTP_FIND_TIME_S",
        int_range(1, 86400),
        "120",
        "Window in which wrong codes are counted.",
    ),
    Setting(
        "totp_ban_time_s",
        "AUTH_TOTP_BAN_TIME_S",
        int_range(1, 86400),
        "300",
        "First lockout; each further lockout within a day doubles it (at most a day).",
    ),
    Setting(
        "signup_mode",
        "SIGNUP_MODE",
        choice("open", "admin"),
        "admin",
        "POST /api/v1/users: open (anyone; confirmed by the first magic link) or admin (role admin only).",
        helm=Helm("signin.signupMode", when=_WITH_MONGODB),
    ),
    Setting(
        "account_plans",
        "ACCOUNT_PLANS",
        _names,
        "free,pro,enterprise",
        "Plans an admin may give an account (the policy's data.gateway.plans).",
    ),
    Setting(
        "refresh_reuse_grace_s",
        "REFRESH_REUSE_GRACE_S",
        float_range(0.0, 60.0),
        "10",
        "A rotated refresh token still rotates this long after its first use (parallel tabs); later reuse revokes the "
        "session.",
    ),
    Setting(
        "reauth_max_age_s",
        "REAUTH_MAX_AGE_S",
        int_range(1, 86400),
        "600",
        "Enrolling or removing TOTP and linking or unlinking a wallet need a sign-in at most this long ago (the "
        "token's auth_time); else 401 reauth_required.",
    ),
    Setting(
        "login_per_ip_per_minute",
        "AUTH_LOGIN_PER_IP_PER_MINUTE",
        int_range(1, 100000),
        "20",
        "Magic-link requests per client IP per minute.",
    ),
    Setting(
        "login_per_email_per_hour",
        "AUTH_LOGIN_PER_EMAIL_PER_HOUR",
        int_range(1, 1000),
        "5",
        "Magic-link requests per email address per hour.",
    ),
    Setting(
        "verify_per_ip_per_minute",
        "AUTH_VERIFY_PER_IP_PER_MINUTE",
        int_range(1, 100000),
        "30",
        "Verify attempts (magic token, TOTP) per client IP per minute.",
    ),
    Setting(
        "auth_trusted_proxies",
        "AUTH_TRUSTED_PROXIES",
        networks,
        "127.0.0.1/32,::1/128",
        "Peers whose X-Forwarded-For names the client (the gateway's proxy).",
    ),
    # Quotas (docs/quotas.md).
    Setting(
        "ratelimit_legacy_headers",
        "RATELIMIT_LEGACY_HEADERS",
        boolean,
        "false",
        "Also send RateLimit-Limit/-Remaining/-Reset beside RateLimit-Policy and RateLimit.",
    ),
    Setting(
        "quota_breaker_failures",
        "QUOTA_BREAKER_FAILURES",
        int_range(1, 1000),
        "5",
        "Consecutive Redis errors that open the quota circuit breaker.",
    ),
    Setting(
        "quota_breaker_reset_ms",
        "QUOTA_BREAKER_RESET_MS",
        int_range(10, 600_000),
        "1000",
        "How long the open breaker skips Redis before one trial call.",
    ),
    Setting(
        "quota_local_max_keys",
        "QUOTA_LOCAL_MAX_KEYS",
        int_range(100, 10_000_000),
        "50000",
        "Keys the in-process fallback buckets keep per worker (LRU).",
    ),
    Setting(
        "quota_analytics",
        "QUOTA_ANALYTICS",
        boolean,
        "true",
        "Keep top keys and per-descriptor verdicts of the last hour in Redis.",
    ),
    Setting(
        "quota_lease_max_units",
        "QUOTA_LEASE_MAX_UNITS",
        int_range(1, 100_000),
        "256",
        "Most requests' worth of quota one lease reserves for a proxy worker (1: no leases).",
    ),
    Setting(
        "quota_lease_fraction",
        "QUOTA_LEASE_FRACTION",
        float_range(0.0, 0.5),
        "0.05",
        "A lease never reserves more than this fraction of any descriptor's limit (its burst for a token bucket).",
    ),
    Setting(
        "quota_lease_ttl_s",
        "QUOTA_LEASE_TTL_S",
        float_range(0.05, 10.0),
        "1",
        "A lease's lifetime: revocations, plan changes and policy reloads reach leased traffic within it.",
    ),
    Setting(
        "quota_key_prefix",
        "QUOTA_KEY_PREFIX",
        _key_prefix,
        "lucid:q:",
        "Prefix of every quota key in Redis (no braces: keys carry a hash tag).",
    ),
    # Hardware-wallet sign-in (docs/auth.md, "Wallet sign-in"); part of the sign-in API (MONGODB_URI).
    Setting(
        "wallet_signin",
        "WALLET_SIGNIN_ENABLED",
        boolean,
        "true",
        "Serve wallet sign-in and linking (Ethereum EIP-4361, TRON signMessageV2).",
    ),
    Setting(
        "wallet_domain",
        "WALLET_DOMAIN",
        _optional_authority,
        "",
        "Domain line of the EIP-4361 message the wallet shows and checks; default: PUBLIC_BASE_URL's host[:port]. "
        "Never the Host header.",
    ),
    Setting(
        "wallet_uri",
        "WALLET_URI",
        _optional_http_url,
        "",
        "URI line of the EIP-4361 message; default: PUBLIC_BASE_URL.",
    ),
    Setting(
        "wallet_challenge_ttl_s",
        "WALLET_CHALLENGE_TTL_S",
        int_range(1, 3600),
        "300",
        "How long a wallet challenge may be signed and answered (single use).",
    ),
    Setting(
        "wallet_ethereum_chain_id",
        "WALLET_ETHEREUM_CHAIN_ID",
        int_range(1, 2**53),
        "1",
        "EIP-155 chain id in Ethereum challenges (1 = mainnet).",
    ),
    Setting(
        "wallet_tron_chain_id",
        "WALLET_TRON_CHAIN_ID",
        int_range(1, 2**32),
        "728126428",
        "TRON chain id in TRON challenges, decimal (728126428 = 0x2b6653dc mainnet; Nile 3448148188, Shasta "
        "2494104990).",
    ),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> "Settings":
        return Settings({**self.values, **changes})


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Reads and validates every setting; raises ConfigError naming the variable."""
    values = _load(SETTINGS, os.environ if environ is None else environ)
    _check_consistency(values)
    return Settings(values)


def _check_consistency(v: dict) -> None:
    if v["debug"]:
        v["log_level"] = "debug"
    algs = v["jwt_algorithms"]
    if algs[0].startswith("HS"):
        secret = v["jwt_secret_key"]
        if not secret:
            raise ConfigError(
                "JWT_SECRET_KEY: required for " + ",".join(algs) + " (set a random secret of at least 32 bytes)"
            )
        if len(secret.encode()) < 32:
            raise ConfigError(
                "JWT_SECRET_KEY: too short for HS256, use at least 32 bytes (e.g. `openssl rand -hex 32`)"
            )
    elif not (v["jwt_public_key"] or v["jwks_url"]):
        raise ConfigError(f"JWT_PUBLIC_KEY: required (or JWKS_URL) for {','.join(algs)}")
    if v["mongodb_uri"]:
        _check_accounts(v)
    if v["rate_limit_burst"] < 1:
        raise ConfigError("RATE_LIMIT_BURST_SIZE: must be at least 1")


def _check_accounts(v: dict) -> None:
    """The sign-in API mints tokens and mails links: it needs what those take."""
    if not v["mongodb_uri"].startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URI: expected mongodb:// or mongodb+srv://")
    for env, name, hint in (
        ("SMTP_URL", "smtp_url", "smtp://host:port"),
        ("PUBLIC_BASE_URL", "public_base_url", "the gateway's public URL, e.g. https://api.example.com"),
        ("TOTP_ENCRYPTION_KEYS", "totp_encryption_keys", "id:<32 bytes base64url>"),
    ):
        if not v[name]:
            raise ConfigError(f"{env}: required when MONGODB_URI is set ({hint})")
    if not v["jwt_algorithms"][0].startswith("HS"):
        raise ConfigError(
            "JWT_ALGORITHM: sign-in (MONGODB_URI set) mints HS* tokens; the PDP has no private key for "
            + v["jwt_algorithms"][0]
        )


def describe() -> str:
    """One line per setting, for `pdp settings`."""
    return _describe(SETTINGS)
