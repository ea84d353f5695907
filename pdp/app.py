"""The PDP's falcon app: `create_app(services)` wires resources to their
dependencies; `get_app()` reads the environment and builds those (falcon's
look tutorial model), and is what gunicorn loads in each worker.
"""

from __future__ import annotations

import dataclasses

import falcon
import falcon.media

from servicekit import json_codec
from servicekit.client_ip import TrustedProxies
from servicekit.logs import request_id_var
from servicekit.trace_context import parse as parse_trace_context

from .problem import serialize_error
from .resources.check import Check, LeaseReturn, request_id_or_new
from .resources.check_batch import CheckBatch, run_in_greenlets, run_in_turn
from .resources.forward_auth import ExtAuthz, ForwardAuth
from .resources.openapi import OpenApi
from .resources.operations import Health, Metrics, Policies, Ready, Version

# Socket timeout floor of the control-plane Redis client (sign-in, admin APIs).
CONTROL_TIMEOUT_MS = 500


@dataclasses.dataclass
class Services:
    settings: object
    engine: object
    policies: object  # PolicyStore
    decider: object  # Decider
    redis: object
    metrics: object  # PdpMetrics
    authenticator: object
    quota: object = None  # QuotaService, None when RATE_LIMIT_ENABLED=false
    tracer: object = None  # servicekit.tracing tracer (NoTracer unless OTEL_EXPORTER_OTLP_ENDPOINT is set)
    recent: object = None  # admin_ui.recent.RecentDecisions: the decision log's last entries
    signin: object = None  # SignInService (pdp.signin), None without MONGODB_URI
    quota_admin: object = None  # QuotaAdmin on the control-plane client, for /v1/quotas and the admin page


class RequestIdMiddleware:
    """Keeps a valid incoming X-Request-ID, else makes one; logs carry it."""

    def process_request(self, req, resp):
        rid = request_id_or_new(req.get_header("X-Request-ID"))
        req.context.request_id = rid
        request_id_var.set(rid)
        resp.set_header("X-Request-ID", rid)


class TraceContextMiddleware:
    """The caller's W3C traceparent/tracestate (None when absent or invalid: the decision starts a trace)."""

    def process_request(self, req, resp):
        req.context.trace = parse_trace_context(req.get_header("traceparent"), req.get_header("tracestate"))


class FairnessMiddleware:
    """Yields to other connections after each response.

    A decision that needs no I/O (memoized, quota off) never gives gevent's
    hub a turn, and a keep-alive connection whose next request is already
    buffered is served again at once: the others wait (p99 of seconds at 64
    connections). One cooperative yield per request bounds that wait."""

    def __init__(self, yield_fn):
        self._yield = yield_fn

    def process_response(self, req, resp, resource, req_succeeded):
        self._yield()


def _gevent_yield():
    import gevent

    return lambda: gevent.sleep(0)


def create_app(services: Services, yield_fn=None, run_all=run_in_turn) -> falcon.App:
    """yield_fn: a cooperative yield after each response (gevent workers); run_all: how
    /v1/check/batch runs its items (concurrently in greenlets in a worker)."""
    middleware = [RequestIdMiddleware(), TraceContextMiddleware()]
    if yield_fn is not None:
        middleware.append(FairnessMiddleware(yield_fn))
    app = falcon.App(middleware=middleware)
    app.set_error_serializer(serialize_error)
    # Every JSON answer (decisions above all) through orjson: servicekit/json_codec.py.
    json_handler = falcon.media.JSONHandler(dumps=json_codec.dumps, loads=json_codec.loads)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.req_options.strip_url_path_trailing_slash = False
    s = services
    app.add_route("/v1/check", Check(s.decider, s.settings.max_body_bytes))
    app.add_route("/v1/check/batch", CheckBatch(s.decider, s.settings.max_body_bytes, run_all))
    app.add_route("/v1/lease/return", LeaseReturn(s.quota, s.settings.max_body_bytes))
    trusted = TrustedProxies(s.settings.trusted_proxies)
    forward = ForwardAuth(s.decider, s.settings.forward_auth_front, trusted)
    app.add_route("/v1/forward-auth", forward)
    ext = ExtAuthz(s.decider, trusted)
    app.add_route("/v1/ext-authz", ext)
    app.add_route("/v1/ext-authz/{rest:path}", ext)
    app.add_route("/v1/health", Health(s.policies))
    auth_checks = s.signin.checks if s.signin is not None else None
    ready = Ready(s.policies, s.engine, s.redis, auth_checks)
    app.add_route("/v1/ready", ready)
    app.add_route("/v1/ready/auth", ready, suffix="auth")
    app.add_route("/v1/version", Version(s.settings, s.engine.name))
    app.add_route("/v1/policies", Policies(s.policies))
    app.add_route("/metrics", Metrics(s.metrics, s.signin.metrics.refresh if s.signin is not None else None))
    app.add_route("/v1/openapi.json", OpenApi())
    if s.quota is not None:
        from .resources.quotas import add_routes as add_quota_routes

        add_quota_routes(app, s.quota_admin, s.authenticator)
    if s.signin is not None:
        from .signin.routes import add_routes as add_signin_routes

        add_signin_routes(app, s.signin, s.authenticator)
    from .admin_ui import add_routes as add_ui_routes
    from .admin_ui.recent import RecentDecisions

    add_ui_routes(app, s, s.recent if s.recent is not None else RecentDecisions())
    return app


def build_services(settings, fallback_bundle=None) -> Services:
    """Builds every dependency from settings; raises PolicyError/ConfigError on bad ones."""
    from servicekit.tracing import make_tracer

    from .authn.jwt_auth import JwtAuthenticator
    from .authn.keys import JwksKeys, PemKey, SecretKey
    from .decider import Decider
    from .decision_log import DecisionLog
    from .engines import make_engine
    from .metrics import PdpMetrics
    from .policy.store import PolicyStore
    from .redis_client import connect

    metrics = PdpMetrics()
    redis_client = connect(settings.redis_url, settings.redis_timeout_ms / 1000)
    if settings.jwt_algorithms[0].startswith("HS"):
        keys = SecretKey(settings.jwt_secret_key)
    elif settings.jwks_url:
        keys = JwksKeys(settings.jwks_url, settings.jwks_min_refresh_s)
    else:
        keys = PemKey(settings.jwt_public_key)
    authenticator = JwtAuthenticator(
        keys,
        settings.jwt_algorithms,
        denylist=build_denylist(settings, redis_client),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        revocation_fail_open=settings.revocation_fail_open,
        cache_size=settings.token_cache_size,
        revocation_cache_s=settings.revocation_cache_s,
        token_types=settings.jwt_access_token_types,
    )
    engine = make_engine(settings)
    policies = PolicyStore(
        engine,
        settings.policy_dir,
        settings_overlay=policy_settings(settings),
        memo_size=settings.memo_size,
        metrics=metrics,
    )
    policies.start(fallback_bundle)
    quota = None
    if settings.rate_limit_enabled:
        from .quota.factory import build_quota_service

        quota = build_quota_service(settings, redis_client, registry=metrics.registry)
    from .admin_ui.recent import RecentDecisions
    from .decision import HeaderAllowList

    tracer = make_tracer("lucid-pdp")
    recent = RecentDecisions()
    decision_log = DecisionLog(settings.decision_log, tap=recent.add)
    decider = Decider(
        authenticator,
        policies,
        engine,
        quota=quota,
        decision_log=decision_log,
        metrics=metrics,
        tracer=tracer,
        allowed_headers=HeaderAllowList(settings.decision_header_names),
    )
    # Sign-in state and the admin APIs get their own client: a 20 ms decision-path
    # timeout is right for quotas, too tight for a Lua redeem or an hour of analytics
    # read by a busy worker. No traffic until first used.
    control_redis = connect(settings.redis_url, max(settings.redis_timeout_ms, CONTROL_TIMEOUT_MS) / 1000)
    signin = None
    if settings.mongodb_uri:
        from .authn.revocation import RedisDenylist
        from .signin.routes import build as build_signin

        signin = build_signin(settings, control_redis, RedisDenylist(control_redis), metrics.registry)
    quota_admin = None
    if quota is not None:
        from .quota.admin import QuotaAdmin

        quota_admin = QuotaAdmin(quota, control_redis)
    return Services(
        settings,
        engine,
        policies,
        decider,
        redis_client,
        metrics,
        authenticator,
        quota,
        tracer,
        recent,
        signin,
        quota_admin,
    )


def build_denylist(settings, redis_client):
    """The Redis denylist with this worker's local view for outages (started here: after fork)."""
    from .authn.revocation import RedisDenylist, coalesced_exists
    from .authn.revocation_view import LocalRevocationView

    view = None
    if settings.revocation_outage_s > 0:
        view = LocalRevocationView(redis_client, settings.revocation_outage_s, settings.revocation_sync_s)
        view.start()
    # Opt-in: a fresh view answers without Redis, but cannot see a key written by hand.
    fresh_s = settings.revocation_cache_s if settings.revocation_view_answers else 0.0
    return RedisDenylist(redis_client, view, fresh_s=fresh_s, exists=coalesced_exists(redis_client))


def policy_settings(settings) -> dict:
    """The environment's knobs the policies read, as data.gateway.settings."""
    return {
        "rate_limit_per_minute": settings.rate_limit_per_minute,
        "rate_limit_burst": settings.rate_limit_burst,
        "rate_limit_enabled": settings.rate_limit_enabled,
        "signup_mode": settings.signup_mode,
    }


def get_app(fallback_bundle=None) -> falcon.App:
    """gunicorn entry point (`pdp.app:get_app()`): one app per worker, after fork.

    fallback_bundle: the policy `pdp serve` checked at startup, served when the
    files on disk are broken by the time this worker starts."""
    from servicekit import heap, logs

    from .config import load_settings

    settings = load_settings()
    logs.configure(settings.log_level)
    services = build_services(settings, fallback_bundle)
    services.policies.watch(settings.policy_reload_s)
    app = create_app(services, yield_fn=_gevent_yield(), run_all=run_in_greenlets)
    heap.settle()
    return app
