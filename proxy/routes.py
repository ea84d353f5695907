"""Routes and clusters from YAML: which requests go where, and how.

A route matches a normalized path (exact, prefix or glob) and a method set,
and names a cluster of upstream endpoints, or `meta` for the proxy's own
endpoints. `${VAR}` in endpoint lists is filled from the validated settings
(BLOCKCHAIN_CORE_URL, ...), so one variable may list several instances.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import yaml

from .response_transform import DROPPED_BY_DEFAULT, ResponseSpecError, parse_route_response

DEFAULT_ROUTES_FILE = os.path.join(os.path.dirname(__file__), "routes.default.yaml")
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
_LB_POLICIES = ("round_robin", "least_outstanding", "consistent_hash")


class RoutesError(ValueError):
    """The routes file is invalid; the message names the place."""


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 5.0  # Envoy's default: under a burst the event loop itself can lag past 1 s
    read_s: float = 30.0


@dataclass(frozen=True)
class HealthCheck:
    path: str = "/health"
    interval_s: float = 10.0
    timeout_s: float = 1.0
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1


@dataclass(frozen=True)
class BreakerSpec:
    max_concurrent: int = 1024
    max_pending: int = 256
    failure_threshold: int = 5
    open_s: float = 10.0
    half_open_max: int = 1


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    endpoints: tuple
    lb: str = "round_robin"
    hash_header: str = None
    hash_cookie: str = None
    health_check: HealthCheck = None
    eject_consecutive: int = 5
    eject_s: float = 30.0
    breaker: BreakerSpec = field(default_factory=BreakerSpec)
    retry_attempts: int = 1
    retry_budget_percent: float = 20.0
    retry_min_concurrency: int = 3
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_connections: int = 256
    tls: object = None     # upstream_tls.UpstreamTlsSpec for https:// endpoints (None: defaults)
    egress: object = None  # egress.Socks5Egress, or None to dial directly


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple
    allow_methods: tuple = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple = ("authorization", "content-type", "x-request-id")
    expose_headers: tuple = ("x-request-id",)
    max_age_s: int = 600
    allow_credentials: bool = False

    def allows(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins


@dataclass(frozen=True)
class Route:
    name: str
    kind: str  # exact | prefix | glob
    pattern: str
    methods: frozenset = None  # None: any method
    cluster: str = None
    meta: bool = False
    strip_prefix: str = None
    rewrite_prefix: str = None
    timeouts: Timeouts = None
    fail_open: bool = False
    request_add: tuple = ()
    request_remove: frozenset = frozenset()
    response_add: tuple = ()
    response_remove: frozenset = DROPPED_BY_DEFAULT  # Server, X-Powered-By unless a route keeps them
    response_rename: tuple = ()
    redaction: object = None  # response_transform.Redaction of JSON bodies
    cors: Cors = None
    websocket: bool = True
    client_headers_allow: frozenset = frozenset()
    regex: object = None

    def matches_path(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.pattern
        if self.kind == "prefix":
            p = self.pattern
            return path == p or (path.startswith(p) and (p.endswith("/") or path[len(p)] == "/"))
        return self.regex.match(path) is not None

    def upstream_path(self, path: str) -> str:
        """The path sent upstream, after strip_prefix or a prefix rewrite."""
        if self.rewrite_prefix is not None and self.kind == "prefix":
            rest = path[len(self.pattern.rstrip("/")):]
            return (self.rewrite_prefix.rstrip("/") + rest) or "/"
        if self.strip_prefix and path.startswith(self.strip_prefix.rstrip("/")):
            rest = path[len(self.strip_prefix.rstrip("/")):]
            return rest if rest.startswith("/") else "/" + rest
        return path


class RouteTable:
    """Routes in file order; the first that matches path and method wins."""

    def __init__(self, routes: Iterable[Route], clusters: Mapping[str, ClusterSpec]):
        self.routes = tuple(routes)
        self.clusters = dict(clusters)

    def match(self, method: str, path: str) -> tuple[Route | None, int | None]:
        """Returns (route, None), or (None, 404 or 405)."""
        path_matched = False
        for route in self.routes:
            if route.matches_path(path):
                if route.methods is None or method in route.methods:
                    return route, None
                path_matched = True
        return None, (405 if path_matched else 404)


def glob_regex(pattern: str) -> re.Pattern:
    """`*` matches within one segment, `**` across segments, `{a,b}` either word."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "{" and "}" in pattern[i:]:
            end = pattern.index("}", i)
            words = pattern[i + 1:end].split(",")
            out.append("(?:" + "|".join(re.escape(w) for w in words) + ")")
            i = end + 1
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def sidecar_table(upstream_url: str) -> RouteTable:
    """One app behind the proxy: the proxy's own /api/v1/meta/*, everything else to the app."""
    cluster = ClusterSpec(name="app", endpoints=(upstream_url.rstrip("/"),), health_check=None)
    routes = [
        Route(name="meta-public", kind="glob", pattern="/api/v1/meta/{health,info,version}",
              methods=frozenset(("GET", "HEAD")), meta=True, fail_open=True,
              regex=glob_regex("/api/v1/meta/{health,info,version}")),
        Route(name="meta", kind="prefix", pattern="/api/v1/meta", methods=frozenset(("GET", "HEAD")), meta=True),
        Route(name="app", kind="prefix", pattern="/", cluster="app"),
    ]
    return RouteTable(routes, {"app": cluster})


def load_routes(path: str, variables: Mapping[str, tuple]) -> RouteTable:
    """Reads and validates a routes file; `variables` maps ${NAME} to a tuple of URLs."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise RoutesError(f"{path}: {exc}") from None
    return parse_routes(document, variables, source=path)


def parse_routes(document: object, variables: Mapping[str, tuple], source: str = "routes") -> RouteTable:
    if not isinstance(document, dict):
        raise RoutesError(f"{source}: expected a mapping with 'clusters' and 'routes'")
    clusters = {}
    for name, body in (document.get("clusters") or {}).items():
        clusters[name] = _parse_cluster(name, body or {}, variables, f"{source}: clusters.{name}")
    routes = []
    raw_routes = document.get("routes")
    if not isinstance(raw_routes, list) or not raw_routes:
        raise RoutesError(f"{source}: 'routes' must be a non-empty list")
    for index, body in enumerate(raw_routes):
        where = f"{source}: routes[{index}]"
        route = _parse_route(index, body, where)
        if route.cluster is not None and route.cluster not in clusters:
            raise RoutesError(f"{where}: unknown cluster {route.cluster!r}")
        routes.append(route)
    return RouteTable(routes, clusters)


def _expand_endpoints(raw, variables, where):
    items = raw if isinstance(raw, list) else [raw]
    urls = []
    for item in items:
        if not isinstance(item, str):
            raise RoutesError(f"{where}: endpoints must be URLs")
        match = _VAR.fullmatch(item.strip())
        if match:
            name = match.group(1)
            if name not in variables:
                raise RoutesError(f"{where}: unknown variable ${{{name}}}")
            urls.extend(variables[name])
            continue
        for url in item.split(","):
            url = url.strip().rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise RoutesError(f"{where}: endpoint {url!r} must be an http:// or https:// URL")
            urls.append(url)
    if not urls:
        raise RoutesError(f"{where}: no endpoints")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise RoutesError(f"{where}: endpoint {url!r} must be an http:// or https:// URL")
    return tuple(urls)


def _num(body, key, default, where, kind=float, minimum=0):
    value = body.get(key, default)
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise RoutesError(f"{where}.{key}: expected a number") from None
    if value < minimum:
        raise RoutesError(f"{where}.{key}: must be at least {minimum}")
    return value


def _timeouts(body, where, base=Timeouts()):
    if body is None:
        return base
    if not isinstance(body, dict):
        raise RoutesError(f"{where}: expected a mapping")
    return Timeouts(
        connect_s=_num(body, "connect_ms", base.connect_s * 1000, where, minimum=1) / 1000,
        read_s=_num(body, "read_ms", base.read_s * 1000, where, minimum=1) / 1000,
    )


_CLUSTER_KEYS = frozenset(("endpoints", "lb", "hash_on", "health_check", "breaker", "ejection", "retry",
                           "timeouts", "max_connections", "tls", "egress"))


def _egress_and_tls(body, endpoints, variables, where):
    """The cluster's `egress` (a SOCKS URL, or `tor` for TOR_SOCKS_URL) and `tls` blocks."""
    from .egress import EgressSpecError, parse_egress
    from .upstream_tls import TlsSpecError, parse_tls_spec
    egress = None
    raw = body.get("egress")
    tor_url = (variables.get("TOR_SOCKS_URL") or ("",))[0]
    try:
        if raw == "tor":
            if not tor_url:
                raise RoutesError(f"{where}.egress: 'tor' needs TOR_SOCKS_URL")
            egress = parse_egress(tor_url, "TOR_SOCKS_URL")
        elif raw is not None:
            egress = parse_egress(raw, f"{where}.egress")
        elif tor_url and any(_host_of(u).endswith(".onion") for u in endpoints):
            egress = parse_egress(tor_url, "TOR_SOCKS_URL")
        if egress is None and any(_host_of(u).endswith(".onion") for u in endpoints):
            raise RoutesError(f"{where}.endpoints: a .onion endpoint needs egress (or TOR_SOCKS_URL)")
        if egress is not None and not egress.remote_dns and any(_host_of(u).endswith(".onion") for u in endpoints):
            raise RoutesError(f"{where}.egress: .onion names need socks5h:// (resolved by the SOCKS server)")
        tls = body.get("tls")
        if tls is not None and not any(u.startswith("https://") for u in endpoints):
            raise RoutesError(f"{where}.tls: only for https:// endpoints")
        return egress, (parse_tls_spec(tls, f"{where}.tls") if tls is not None else None)
    except (EgressSpecError, TlsSpecError) as exc:
        raise RoutesError(str(exc)) from None


def _host_of(url):
    return url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]").lower()


def _parse_cluster(name, body, variables, where):
    if not isinstance(body, dict):
        raise RoutesError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in body if k not in _CLUSTER_KEYS)
    if unknown:
        raise RoutesError(f"{where}.{unknown[0]}: unknown key (one of {', '.join(sorted(_CLUSTER_KEYS))})")
    if "endpoints" not in body:
        raise RoutesError(f"{where}: 'endpoints' is required")
    endpoints = _expand_endpoints(body["endpoints"], variables, where)
    egress, tls = _egress_and_tls(body, endpoints, variables, where)
    lb = body.get("lb", "round_robin")
    if lb not in _LB_POLICIES:
        raise RoutesError(f"{where}.lb: one of {', '.join(_LB_POLICIES)}")
    hash_on = body.get("hash_on") or {}
    if lb == "consistent_hash" and not (hash_on.get("header") or hash_on.get("cookie")):
        raise RoutesError(f"{where}.hash_on: consistent_hash needs a header or cookie")
    health = body.get("health_check")
    health_check = None
    if health:
        health_check = HealthCheck(
            path=str(health.get("path", "/health")),
            interval_s=_num(health, "interval_s", 10, f"{where}.health_check", minimum=0.05),
            timeout_s=_num(health, "timeout_ms", 1000, f"{where}.health_check", minimum=1) / 1000,
            unhealthy_threshold=_num(health, "unhealthy_threshold", 2, f"{where}.health_check", int, 1),
            healthy_threshold=_num(health, "healthy_threshold", 1, f"{where}.health_check", int, 1),
        )
    breaker = body.get("breaker") or {}
    eject = body.get("ejection") or {}
    retry = body.get("retry") or {}
    return ClusterSpec(
        name=name,
        endpoints=endpoints,
        lb=lb,
        hash_header=(hash_on.get("header") or None) and hash_on["header"].lower(),
        hash_cookie=hash_on.get("cookie") or None,
        health_check=health_check,
        eject_consecutive=_num(eject, "consecutive_errors", 5, f"{where}.ejection", int, 1),
        eject_s=_num(eject, "base_ejection_s", 30, f"{where}.ejection", minimum=0.01),
        breaker=BreakerSpec(
            max_concurrent=_num(breaker, "max_concurrent", 1024, f"{where}.breaker", int, 1),
            max_pending=_num(breaker, "max_pending", 256, f"{where}.breaker", int, 0),
            failure_threshold=_num(breaker, "failure_threshold", 5, f"{where}.breaker", int, 1),
            open_s=_num(breaker, "open_s", 10, f"{where}.breaker", minimum=0.01),
            half_open_max=_num(breaker, "half_open_max", 1, f"{where}.breaker", int, 1),
        ),
        retry_attempts=_num(retry, "attempts", 1, f"{where}.retry", int, 0),
        retry_budget_percent=_num(retry, "budget_percent", 20, f"{where}.retry", minimum=0),
        retry_min_concurrency=_num(retry, "min_concurrency", 3, f"{where}.retry", int, 0),
        timeouts=_timeouts(body.get("timeouts"), f"{where}.timeouts"),
        max_connections=_num(body, "max_connections", 256, where, int, 1),
        tls=tls,
        egress=egress,
    )


def _header_map(body, where):
    if body is None:
        return (), frozenset()
    if not isinstance(body, dict):
        raise RoutesError(f"{where}: expected a mapping with add/remove")
    add = tuple((str(k).lower(), str(v)) for k, v in (body.get("add") or {}).items())
    remove = frozenset(str(h).lower() for h in (body.get("remove") or []))
    return add, remove


_HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")


def _client_headers(body, where):
    """`client_headers: {allow: [name, ...]}`: default-dropped client headers this route passes on.

    Strict: any other key, a non-list, or a name the proxy does not drop by
    default is an error, so that a typo cannot silently keep a header out or in.
    """
    from .forwarding import target_changing

    if body is None:
        return frozenset()
    if not isinstance(body, dict):
        raise RoutesError(f"{where}: expected a mapping with 'allow'")
    for key in body:
        if key != "allow":
            raise RoutesError(f"{where}.{key}: unknown key (only 'allow')")
    names = body.get("allow")
    if names is None:
        return frozenset()
    if not isinstance(names, list):
        raise RoutesError(f"{where}.allow: expected a list of header names")
    allowed = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _HEADER_TOKEN.match(name.lower()):
            raise RoutesError(f"{where}.allow[{i}]: expected a header name, got {name!r}")
        if not target_changing(name.lower()):
            raise RoutesError(f"{where}.allow[{i}]: {name!r} is not a header the proxy drops by default")
        allowed.add(name.lower())
    return frozenset(allowed)


_ROUTE_KEYS = frozenset(("name", "match", "cluster", "meta", "fail_mode", "strip_prefix", "rewrite", "timeouts",
                         "request_headers", "response_headers", "response_body", "cors", "websocket",
                         "client_headers"))


def _parse_route(index, body, where):
    if not isinstance(body, dict):
        raise RoutesError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in body if k not in _ROUTE_KEYS)
    if unknown:
        raise RoutesError(f"{where}.{unknown[0]}: unknown key (one of {', '.join(sorted(_ROUTE_KEYS))})")
    match = body.get("match") or {}
    kinds = [k for k in ("exact", "prefix", "glob") if k in match]
    if len(kinds) != 1:
        raise RoutesError(f"{where}.match: exactly one of exact, prefix, glob")
    kind = kinds[0]
    pattern = str(match[kind])
    if not pattern.startswith("/"):
        raise RoutesError(f"{where}.match.{kind}: must start with /")
    methods = match.get("methods")
    if methods is not None:
        methods = frozenset(str(m).upper() for m in methods)
        unknown = methods - _METHODS
        if unknown:
            raise RoutesError(f"{where}.match.methods: unknown {sorted(unknown)}")
    is_meta = bool(body.get("meta", False))
    cluster = body.get("cluster")
    if is_meta == bool(cluster):
        raise RoutesError(f"{where}: exactly one of 'cluster' or 'meta: true'")
    fail_mode = body.get("fail_mode", "closed")
    if fail_mode not in ("closed", "open"):
        raise RoutesError(f"{where}.fail_mode: closed or open")
    rewrite = body.get("rewrite")
    if rewrite is not None and kind != "prefix":
        raise RoutesError(f"{where}.rewrite: only for prefix routes")
    request_add, request_remove = _header_map(body.get("request_headers"), f"{where}.request_headers")
    try:
        response = parse_route_response(body, where)
    except ResponseSpecError as exc:
        raise RoutesError(str(exc)) from None
    if response.redaction is not None:
        # The body must arrive uncompressed to be redacted: never let the client ask for gzip.
        request_remove = request_remove | {"accept-encoding"}
    cors = None
    if body.get("cors"):
        c = body["cors"]
        if not c.get("allow_origins"):
            raise RoutesError(f"{where}.cors.allow_origins: required")
        defaults = Cors(allow_origins=())
        cors = Cors(
            allow_origins=tuple(c["allow_origins"]),
            allow_methods=tuple(m.upper() for m in c.get("allow_methods", defaults.allow_methods)),
            allow_headers=tuple(h.lower() for h in c.get("allow_headers", defaults.allow_headers)),
            expose_headers=tuple(h.lower() for h in c.get("expose_headers", defaults.expose_headers)),
            max_age_s=int(c.get("max_age_s", defaults.max_age_s)),
            allow_credentials=bool(c.get("allow_credentials", False)),
        )
    return Route(
        name=str(body.get("name") or f"route{index}"),
        kind=kind,
        pattern=pattern,
        methods=methods,
        cluster=cluster,
        meta=is_meta,
        strip_prefix=body.get("strip_prefix"),
        rewrite_prefix=(rewrite or {}).get("prefix") if isinstance(rewrite, dict) else rewrite,
        timeouts=_timeouts(body.get("timeouts"), f"{where}.timeouts") if body.get("timeouts") else None,
        fail_open=fail_mode == "open",
        request_add=request_add,
        request_remove=request_remove,
        response_add=response.add,
        response_remove=response.remove,
        response_rename=response.rename,
        redaction=response.redaction,
        cors=cors,
        websocket=bool(body.get("websocket", True)),
        client_headers_allow=_client_headers(body.get("client_headers"), f"{where}.client_headers"),
        regex=glob_regex(pattern) if kind == "glob" else None,
    )
