"""Routes and clusters from YAML: which requests go where, and how.

A route matches a normalized path (exact, prefix or glob) and a method set,
and names a cluster of upstream endpoints, or `meta` for the proxy's own
endpoints. The file is checked against ROUTES_SCHEMA (servicekit.schema):
an unknown key, a wrong type or a bad value is one RoutesError line naming
the file, the key path and what was expected. Defaults live in the
dataclasses below, nowhere else.

`${VAR}` (or `${VAR:-default}`) in a cluster's endpoints is read from the
environment at startup, so one variable may list several instances; the
shipped routes.default.yaml names the seed's four backends this way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import yaml

from servicekit.schema import (
    AnyOf,
    Bool,
    Custom,
    Field,
    Int,
    ListOf,
    MapOf,
    Number,
    Record,
    SchemaError,
    Str,
    describe,
    item,
    join,
    markdown_reference,
)

from .response_transform import DROPPED_BY_DEFAULT, ResponseSpecError

DEFAULT_ROUTES_FILE = os.path.join(os.path.dirname(__file__), "routes.default.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
# Never matched by a route without `methods`: TRACE echoes the request back, the
# headers the proxy added included (identity, cookies: cross-site tracing), so a
# route must name it; CONNECT is not in _METHODS, so no route ever matches it.
NOT_IMPLIED = frozenset(("TRACE", "CONNECT"))
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
    panic_when_all_ejected: bool = True
    breaker: BreakerSpec = field(default_factory=BreakerSpec)
    retry_attempts: int = 1
    retry_budget_percent: float = 20.0
    retry_min_concurrency: int = 3
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_connections: int = 256
    tls: object = None  # upstream_tls.UpstreamTlsSpec for https:// endpoints (None: defaults)
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
    methods: frozenset = None  # None: any method but NOT_IMPLIED
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
    websocket: bool = False  # opt-in: no tunnel to a backend that never asked for one
    client_headers_allow: frozenset = frozenset()
    regex: object = None

    def matches_path(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.pattern
        if self.kind == "prefix":
            p = self.pattern
            return path == p or (path.startswith(p) and (p.endswith("/") or path[len(p)] == "/"))
        return self.regex.match(path) is not None

    def matches_method(self, method: str) -> bool:
        if self.methods is None:
            return method not in NOT_IMPLIED
        return method in self.methods

    def upstream_path(self, path: str) -> str:
        """The path sent upstream, after strip_prefix or a prefix rewrite."""
        if self.rewrite_prefix is not None and self.kind == "prefix":
            rest = path[len(self.pattern.rstrip("/")) :]
            return (self.rewrite_prefix.rstrip("/") + rest) or "/"
        if self.strip_prefix:
            prefix = self.strip_prefix.rstrip("/")
            # Whole segments only, as prefix routes match: /svcadmin is not under
            # /svc, and cutting it to /admin would send the upstream a path the
            # PDP never judged (a `/svc**` glob or a `/` route matches it).
            if path == prefix or path.startswith(prefix + "/"):
                return path[len(prefix) :] or "/"
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
                if route.matches_method(method):
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
            words = pattern[i + 1 : end].split(",")
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
        Route(
            name="meta-public",
            kind="glob",
            pattern="/api/v1/meta/{health,info,version}",
            methods=frozenset(("GET", "HEAD")),
            meta=True,
            fail_open=True,
            regex=glob_regex("/api/v1/meta/{health,info,version}"),
        ),
        Route(name="meta", kind="prefix", pattern="/api/v1/meta", methods=frozenset(("GET", "HEAD")), meta=True),
        Route(name="app", kind="prefix", pattern="/", cluster="app"),
    ]
    return RouteTable(routes, {"app": cluster})


# -- the routes file's schema ------------------------------------------------------------
# Every key the file may hold, what it expects and (through the dataclasses above) its
# default. docs/proxy.md's routes file reference is generated from it (`--routes-reference`).

_HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_HEADER_NAME = Str(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$", expected="an HTTP header name", convert=str.lower)
_HEADER_VALUE = Custom(lambda v, p: _header_value(v, p), "a header value (text without CR, LF, NUL)")
_PATH = Str(pattern=r"^/", expected="a path starting with /")
_METHOD = Custom(lambda v, p: _method(v, p), "an HTTP method (" + ", ".join(sorted(_METHODS)) + ")")
_ORIGIN = Str(pattern=r"^(\*|https?://[^/\s?#]+)$", expected="an origin such as https://app.example (or *)")


def _header_value(value, path):
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or re.search(r"[\r\n\x00]", str(value)):
        raise SchemaError(path, f"expected a header value (text without CR, LF, NUL), got {describe(value)}")
    return str(value)


def _method(value, path):
    if not isinstance(value, str) or value.upper() not in _METHODS:
        raise SchemaError(path, f"unknown method {value!r} (expected one of {', '.join(sorted(_METHODS))})")
    return value.upper()


def _spec_check(parse, error_types):
    """A parser of ours that raises its own error naming the path: its message stays as it is."""

    def check(value, path):
        try:
            return parse(value, path)
        except error_types as exc:
            raise SchemaError("", str(exc)) from None

    return check


def _tls_check(value, path):
    from .upstream_tls import TlsSpecError, parse_tls_spec

    return _spec_check(parse_tls_spec, TlsSpecError)(value, path)


def _client_headers_check(value, path):
    from .forwarding import target_changing

    if not isinstance(value, dict):
        raise SchemaError(path, f"expected a mapping with 'allow', got {describe(value)}")
    for key in value:
        if key != "allow":
            raise SchemaError(join(path, key), "unknown key (expected one of allow)")
    names = value.get("allow")
    if names is None:
        return frozenset()
    if not isinstance(names, list):
        raise SchemaError(join(path, "allow"), f"expected a list of header names, got {describe(names)}")
    allowed = set()
    for i, name in enumerate(names):
        where = item(join(path, "allow"), i)
        if not isinstance(name, str) or not _HEADER_TOKEN.match(name.lower()):
            raise SchemaError(where, f"expected a header name, got {name!r}")
        if not target_changing(name.lower()):
            raise SchemaError(where, f"{name!r} is not a header the proxy drops by default")
        allowed.add(name.lower())
    return frozenset(allowed)


def _response_headers_check(value, path):
    from .response_transform import parse_response_headers

    return _spec_check(parse_response_headers, ResponseSpecError)(value, path)


def _response_body_check(value, path):
    from .response_transform import parse_response_body

    return _spec_check(parse_response_body, ResponseSpecError)(value, path)


_ENDPOINTS = AnyOf(
    Str(expected="a URL (or comma-separated URLs, or ${VAR})"),
    ListOf(Str(expected="a URL or ${VAR}"), min_items=1),
    expected="an http(s):// URL, a list of them, or ${VAR} (comma-separated URLs from the environment)",
)

CLUSTER_SCHEMA = Record(
    [
        Field(
            "endpoints",
            _ENDPOINTS,
            required=True,
            help="Upstream instances: `http://` or `https://` URLs. `${VAR}` (or `${VAR:-default}`) is "
            "read from the environment at startup and may list several, comma-separated.",
        ),
        Field("lb", Str(choices=_LB_POLICIES), "Load balancing across the endpoints."),
        Field(
            "hash_on",
            Record(
                [
                    Field("header", _HEADER_NAME, "Request header whose value picks the endpoint.", attr="hash_header"),
                    Field("cookie", Str(), "Cookie whose value picks the endpoint.", attr="hash_cookie"),
                ],
                defaults_from=ClusterSpec,
            ),
            "For `lb: consistent_hash` (one of header, cookie).",
            flatten=True,
        ),
        Field(
            "health_check",
            Record(
                [
                    Field("path", _PATH, "Path probed on every endpoint (2xx: healthy)."),
                    Field("interval_s", Number(minimum=0.05), "Time between probes."),
                    Field("timeout_ms", Number(minimum=1), "Deadline of one probe.", attr="timeout_s", scale=1000),
                    Field("unhealthy_threshold", Int(minimum=1), "Failed probes in a row that take an endpoint out."),
                    Field("healthy_threshold", Int(minimum=1), "Good probes in a row that bring it back."),
                ],
                build=HealthCheck,
            ),
            "Active health checks (none without this block).",
        ),
        Field(
            "ejection",
            Record(
                [
                    Field(
                        "consecutive_errors",
                        Int(minimum=1),
                        "Errors in a row that eject an endpoint.",
                        attr="eject_consecutive",
                    ),
                    Field(
                        "base_ejection_s",
                        Number(minimum=0.01),
                        "How long an ejected endpoint stays out.",
                        attr="eject_s",
                    ),
                    Field(
                        "panic_when_all_ejected",
                        Bool(),
                        "When every endpoint the health checks pass is ejected, send to those endpoints "
                        "anyway instead of answering 503 (Envoy's panic routing); the breaker still guards "
                        "the cluster. A lone instance's 503s during its own dependency outage then do not "
                        "keep it out after it recovers.",
                    ),
                ],
                defaults_from=ClusterSpec,
            ),
            "Passive outlier ejection.",
            flatten=True,
        ),
        Field(
            "breaker",
            Record(
                [
                    Field("max_concurrent", Int(minimum=1), "Requests in flight to the cluster (then 503)."),
                    Field("max_pending", Int(minimum=0), "Requests waiting for a connection (then 503)."),
                    Field("failure_threshold", Int(minimum=1), "Failures in a row that open the breaker."),
                    Field("open_s", Number(minimum=0.01), "How long it stays open before probing."),
                    Field("half_open_max", Int(minimum=1), "Probes let through while half-open."),
                ],
                build=BreakerSpec,
            ),
            "Circuit breaker (per worker).",
        ),
        Field(
            "retry",
            Record(
                [
                    Field(
                        "attempts",
                        Int(minimum=0),
                        "Retries of an idempotent request on another endpoint (0: never).",
                        attr="retry_attempts",
                    ),
                    Field(
                        "budget_percent",
                        Number(minimum=0),
                        "Retries allowed as a share of active requests.",
                        attr="retry_budget_percent",
                    ),
                    Field(
                        "min_concurrency",
                        Int(minimum=0),
                        "Retries always allowed, whatever the budget.",
                        attr="retry_min_concurrency",
                    ),
                ],
                defaults_from=ClusterSpec,
            ),
            "Retries.",
            flatten=True,
        ),
        Field(
            "timeouts",
            Record(
                [
                    Field(
                        "connect_ms",
                        Number(minimum=1),
                        "Deadline to connect to an endpoint.",
                        attr="connect_s",
                        scale=1000,
                    ),
                    Field(
                        "read_ms",
                        Number(minimum=1),
                        "Deadline for the upstream's answer, between reads.",
                        attr="read_s",
                        scale=1000,
                    ),
                ],
                build=Timeouts,
            ),
            "Upstream timeouts.",
        ),
        Field("max_connections", Int(minimum=1), "Pooled connections per endpoint and worker."),
        Field(
            "tls",
            Custom(_tls_check, "a mapping (ca_file, server_name, client_cert, client_key, min_version, verify)"),
            "TLS to `https://` endpoints (docs/proxy.md, Upstream TLS).",
        ),
        Field(
            "egress",
            Custom(lambda v, p: v, "a socks5h:// or socks5:// URL, or tor"),
            "SOCKS5 egress: a `socks5h://` URL, or `tor` for TOR_SOCKS_URL.",
        ),
    ],
    defaults_from=ClusterSpec,
    expected="a cluster (a mapping with endpoints)",
)

_MATCH = Record(
    [
        Field("exact", _PATH, "This path only."),
        Field("prefix", _PATH, "This path and everything below it (segment-wise)."),
        Field("glob", _PATH, "`*` within a segment, `**` across segments, `{a,b}` either word."),
        Field(
            "methods",
            ListOf(_METHOD, min_items=1, convert=frozenset),
            "Methods matched (default: any but TRACE, which a route must name; CONNECT never).",
        ),
    ],
    expected="a mapping with one of exact, prefix, glob (and methods)",
)

CORS_SCHEMA = Record(
    [
        Field(
            "allow_origins",
            ListOf(_ORIGIN, min_items=1),
            required=True,
            help="Origins allowed (a list, even of one; `*` for any).",
        ),
        Field("allow_methods", ListOf(_METHOD, min_items=1), "Methods a preflight allows."),
        Field("allow_headers", ListOf(_HEADER_NAME), "Request headers a preflight allows."),
        Field("expose_headers", ListOf(_HEADER_NAME), "Response headers the browser may read."),
        Field("max_age_s", Int(minimum=0, maximum=86400), "How long a browser may cache a preflight."),
        Field("allow_credentials", Bool(), "Allow cookies and Authorization (needs listed origins, not `*`)."),
    ],
    build=Cors,
)

ROUTE_SCHEMA = Record(
    [
        Field("name", Str(), "Name in logs and metrics.", shown_default="route<index>"),
        Field("match", _MATCH, required=True, help="What the route matches."),
        Field("cluster", Str(), "Cluster the route forwards to (or `meta: true`)."),
        Field("meta", Bool(), "Served by the proxy itself (/api/v1/meta/*)."),
        Field(
            "fail_mode",
            Str(choices=("closed", "open")),
            "`open`: serve the route when the PDP is unreachable (meta endpoints only, as a rule).",
            attr="fail_open",
            shown_default="closed",
        ),
        Field(
            "strip_prefix",
            _PATH,
            "Removed from the path sent upstream (whole segments: `/svc` from `/svc/x`, never from `/svcx`).",
        ),
        Field(
            "rewrite",
            AnyOf(
                _PATH,
                Record([Field("prefix", _PATH, required=True)]),
                expected="a path starting with / or {prefix: /path}",
            ),
            "Prefix routes: the matched prefix is replaced by this one upstream.",
        ),
        Field(
            "timeouts",
            Record(
                [
                    Field(
                        "connect_ms",
                        Number(minimum=1),
                        "Deadline to connect (not the cluster's: this default).",
                        attr="connect_s",
                        scale=1000,
                    ),
                    Field(
                        "read_ms",
                        Number(minimum=1),
                        "Deadline for the answer, between reads.",
                        attr="read_s",
                        scale=1000,
                    ),
                ],
                build=Timeouts,
            ),
            "This route's timeouts instead of the cluster's.",
        ),
        Field(
            "request_headers",
            Record(
                [
                    Field("add", MapOf(_HEADER_VALUE, key=_HEADER_NAME), "Headers set on the upstream request."),
                    Field("remove", ListOf(_HEADER_NAME, convert=frozenset), "Headers removed from it."),
                ]
            ),
            "Request header changes.",
        ),
        Field(
            "response_headers",
            Custom(_response_headers_check, "a mapping (add, remove, rename, keep)"),
            "Response header changes; `Server` and `X-Powered-By` are dropped unless kept.",
        ),
        Field(
            "response_body",
            Custom(_response_body_check, "a mapping (redact_json, redact_secrets, max_bytes, replacement)"),
            "JSON field redaction of small response bodies.",
        ),
        Field("cors", CORS_SCHEMA, "CORS answered by the proxy."),
        Field(
            "websocket",
            Bool(),
            "Tunnel WebSocket upgrades; without it an upgrade is relayed as a plain request, "
            "its Upgrade and Connection headers dropped.",
        ),
        Field(
            "client_headers",
            Custom(_client_headers_check, "a mapping with allow"),
            "Client headers dropped by default that this route passes on (`allow: [name, ...]`).",
        ),
    ],
    defaults_from=Route,
    expected="a route (a mapping with match, and cluster or meta)",
)

ROUTES_SCHEMA = Record(
    [
        Field(
            "clusters",
            MapOf(
                CLUSTER_SCHEMA,
                key=Str(
                    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", expected="a cluster name (letters, digits, _ . -)"
                ),
            ),
            "Upstream clusters by name.",
        ),
        Field(
            "routes",
            ListOf(ROUTE_SCHEMA, min_items=1),
            required=True,
            help="Routes in order; the first that matches path and method wins.",
        ),
    ],
    expected="a mapping with 'clusters' and 'routes'",
)


def routes_reference() -> str:
    """docs/proxy.md's routes file reference (every key, what it expects, its default)."""
    return markdown_reference(ROUTES_SCHEMA)


# -- loading ------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key written twice in one mapping is an error (PyYAML keeps the
    last silently: a second `timeouts:` or `routes:` would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                line = key_node.start_mark.line + 1
                raise RoutesError(f"line {line}: duplicate key {key!r} (expected each key once per mapping)")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_routes(path: str, variables: Mapping[str, str]) -> RouteTable:
    """Reads and validates a routes file; `variables` maps ${NAME} to its text (the environment)."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except RoutesError as exc:
        raise RoutesError(f"{path}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise RoutesError(f"{path}: {detail}") from None
    return parse_routes(document, variables, source=path)


def parse_routes(document: object, variables: Mapping[str, str], source: str = "routes") -> RouteTable:
    """The RouteTable of a parsed document; RoutesError `source: key.path: what was expected`."""
    try:
        checked = ROUTES_SCHEMA.check(document, "")
        clusters = {
            name: _build_cluster(name, body, variables, join("clusters", name))
            for name, body in (checked.get("clusters") or {}).items()
        }
        routes = []
        for index, body in enumerate(checked["routes"]):
            where = item("routes", index)
            route = _build_route(index, body, where)
            if route.cluster is not None and route.cluster not in clusters:
                raise SchemaError(
                    join(where, "cluster"),
                    f"unknown cluster {route.cluster!r} "
                    f"(expected one of {', '.join(clusters) or 'no cluster: none is defined'})",
                )
            routes.append(route)
    except SchemaError as exc:
        raise RoutesError(f"{source}: {exc}") from None
    return RouteTable(routes, clusters)


def expand_variables(text: str, variables: Mapping[str, str], where: str, expected: str) -> tuple:
    """text with each ${NAME} (or ${NAME:-default}) filled in; also the names used.
    An unset or empty variable without a default is a SchemaError at `where`."""
    used = []

    def fill(match):
        name, default = match.group(1), match.group(2)
        value = variables.get(name)
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        used.append(name)
        if value is None or not str(value).strip():
            if default is None:
                raise SchemaError(
                    where,
                    f"unknown variable ${{{name}}}: not set in the environment "
                    f"(expected {expected}; or write ${{{name}:-default}})",
                )
            return default
        return str(value)

    filled = _VAR.sub(fill, text)
    if "${" in filled.replace("$${", ""):
        raise SchemaError(
            where,
            f"malformed variable in {text!r} (expected ${{NAME}} or ${{NAME:-default}}, NAME of letters, digits and _)",
        )
    return filled, used


def _check_url(url: str, where: str, names) -> str:
    from urllib.parse import urlsplit

    origin = " (from " + ", ".join("${%s}" % n for n in names) + ")" if names else ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)
    except ValueError:
        good = False
    if not good:
        raise SchemaError(where, f"expected an http:// or https:// URL, got {describe(url)}{origin}")
    return url.rstrip("/")


def _endpoints(raw, variables, where):
    items = raw if isinstance(raw, (list, tuple)) else (raw,)
    urls = []
    for text in items:
        filled, names = expand_variables(text, variables, where, "comma-separated http(s):// URLs")
        for url in filled.split(","):
            if url.strip() or not names:
                urls.append(_check_url(url.strip(), where, names))
    if not urls:
        raise SchemaError(where, "expected at least one http:// or https:// URL, got none")
    return tuple(urls)


def _host_of(url):
    return url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]").lower()


def _egress(raw, endpoints, variables, where):
    """The cluster's `egress` (a SOCKS URL, or `tor` for TOR_SOCKS_URL)."""
    from .egress import EgressSpecError, parse_egress

    tor_url = variables.get("TOR_SOCKS_URL") or ""
    if isinstance(tor_url, (tuple, list)):
        tor_url = tor_url[0] if tor_url else ""
    onion = any(_host_of(u).endswith(".onion") for u in endpoints)
    egress = None
    try:
        if raw == "tor":
            if not tor_url:
                raise SchemaError(join(where, "egress"), "'tor' needs TOR_SOCKS_URL")
            egress = parse_egress(tor_url, "TOR_SOCKS_URL")
        elif raw is not None:
            egress = parse_egress(raw, join(where, "egress"))
        elif tor_url and onion:
            egress = parse_egress(tor_url, "TOR_SOCKS_URL")
    except EgressSpecError as exc:
        raise SchemaError("", str(exc)) from None
    if egress is None and onion:
        raise SchemaError(join(where, "endpoints"), "a .onion endpoint needs egress (or TOR_SOCKS_URL)")
    if egress is not None and not egress.remote_dns and onion:
        raise SchemaError(join(where, "egress"), ".onion names need socks5h:// (resolved by the SOCKS server)")
    return egress


def _build_cluster(name, attrs, variables, where):
    attrs = dict(attrs)
    endpoints = _endpoints(attrs.pop("endpoints"), variables, join(where, "endpoints"))
    egress = _egress(attrs.pop("egress", None), endpoints, variables, where)
    if attrs.get("tls") is not None and not any(u.startswith("https://") for u in endpoints):
        raise SchemaError(join(where, "tls"), "only for https:// endpoints")
    if attrs.get("lb") == "consistent_hash" and not (attrs.get("hash_header") or attrs.get("hash_cookie")):
        raise SchemaError(join(where, "hash_on"), "consistent_hash needs a header or cookie")
    return ClusterSpec(name=name, endpoints=endpoints, egress=egress, **attrs)


def _build_route(index, attrs, where):
    attrs = dict(attrs)
    match = attrs.pop("match")
    kinds = [k for k in ("exact", "prefix", "glob") if k in match]
    if len(kinds) != 1:
        raise SchemaError(join(where, "match"), "expected exactly one of exact, prefix, glob")
    kind = kinds[0]
    pattern = match[kind]
    is_meta = attrs.pop("meta", False)
    if is_meta == bool(attrs.get("cluster")):
        raise SchemaError(where, "expected exactly one of 'cluster' or 'meta: true'")
    rewrite = attrs.pop("rewrite", None)
    if rewrite is not None and kind != "prefix":
        raise SchemaError(join(where, "rewrite"), "only for prefix routes")
    headers = attrs.pop("request_headers", {})
    request_remove = headers.get("remove", frozenset())
    redaction = attrs.pop("response_body", None)
    if redaction is not None:
        # The body must arrive uncompressed to be redacted: never let the client ask for gzip.
        request_remove = request_remove | {"accept-encoding"}
    response = attrs.pop("response_headers", None)
    if response is not None:
        attrs["response_add"], attrs["response_remove"], attrs["response_rename"] = response
    cors = attrs.get("cors")
    if cors is not None:
        if cors.allow_credentials and "*" in cors.allow_origins:
            # Reflecting any origin with credentials would let every site read the user's answers.
            raise SchemaError(
                join(join(where, "cors"), "allow_credentials"),
                "true needs the origins listed in allow_origins, not '*'",
            )
    if "fail_open" in attrs:
        attrs["fail_open"] = attrs["fail_open"] == "open"
    if "client_headers" in attrs:
        attrs["client_headers_allow"] = attrs.pop("client_headers")
    return Route(
        name=attrs.pop("name", None) or f"route{index}",
        kind=kind,
        pattern=pattern,
        methods=match.get("methods"),
        meta=is_meta,
        rewrite_prefix=rewrite["prefix"] if isinstance(rewrite, dict) else rewrite,
        request_add=tuple(headers.get("add", {}).items()),
        request_remove=request_remove,
        redaction=redaction,
        regex=glob_regex(pattern) if kind == "glob" else None,
        **attrs,
    )
