"""The proxy's settings, declared once as data (gunicorn's config.py style).

Each setting names its environment variable, a parser that validates and converts
the raw string, a default, a one-line description and where the Helm chart takes
it from. Everything else (the CLI help, startup errors, and through
scripts/gen_settings.py docs/settings.md and the chart's env and schema) is
derived from `SETTINGS`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from servicekit.identity import DECISION_HEADER_NAMES_DEFAULT, HeaderNames, parse_header_names
from servicekit.settings import ConfigError, Helm, Setting, boolean, cidr_list, int_range, text, with_schema
from servicekit.settings import describe as _describe
from servicekit.settings import load as _load
from servicekit.settings import markdown_table as _markdown_table

if TYPE_CHECKING:
    from .upstream_tls import UpstreamTlsSpec

__all__ = [
    "BY_NAME",
    "Config",
    "ConfigError",
    "SETTINGS",
    "Setting",
    "load",
    "markdown_table",
    "pdp_tls_spec",
    "usable_cores",
]


@with_schema({"type": "string"})
def _header_names(raw: str) -> HeaderNames:
    return HeaderNames(parse_header_names(raw))


@with_schema({"type": "number", "exclusiveMinimum": 0})
def _positive_float(raw):
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a positive number") from None
    if not value > 0:
        raise ValueError("expected a positive number")
    return value


@with_schema({"type": "number", "minimum": 0, "maximum": 86400})
def _non_negative_float(raw):
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds, 0 or more") from None
    if not value >= 0 or value > 86400:
        raise ValueError("expected a number of seconds, 0 or more")
    return value


@with_schema({"enum": ["1.2", "1.3", 1.2, 1.3]})  # a values file may write 1.3 unquoted
def _tls_version(raw):
    value = raw.strip()
    if value not in ("1.2", "1.3"):
        raise ValueError("expected 1.2 or 1.3")
    return value


@with_schema({"type": "string", "pattern": "^https?://[^/]"})
def _url(raw):
    value = raw.strip()
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def usable_cores() -> int:
    """Cores this process may really use: CPU affinity, then a cgroup v2 quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@with_schema({"type": "integer", "minimum": 1, "maximum": 256})
def _workers(raw):
    if raw.strip() == "":
        return usable_cores()
    return int_range(1, 256)(raw)


@with_schema({"type": "string"})
def _public_host(raw):
    from .http11 import valid_host

    value = raw.strip()
    if value and not valid_host(value):
        raise ValueError("expected host or host:port, such as gateway.example.com")
    return value or None


def _optional_path(raw):
    return raw.strip() or None


@with_schema({"type": "string", "pattern": "^([a-z0-9]([a-z0-9.-]*[a-z0-9])?)?$"})
def _server_name(raw):
    import re

    value = raw.strip().lower()
    if value and (len(value) > 253 or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", value)):
        raise ValueError("expected a DNS name, such as pdp.internal")
    return value or None


@with_schema({"type": "string", "pattern": "^socks5h?://"})
def _socks_url(raw):
    from .egress import EgressSpecError, parse_egress

    if not raw.strip():
        return None
    try:
        parse_egress(raw, "TOR_SOCKS_URL")
    except EgressSpecError:
        raise ValueError("expected socks5h://host:port (Tor's SocksPort, e.g. socks5h://127.0.0.1:9050)") from None
    return raw.strip()


# helm=: the values path that feeds the variable in the chart (scripts/gen_settings.py
# writes the env entries); Helm(template=...): set by hand in the templates; none:
# set through the pass-through map proxy.settings (ENV: value).
SETTINGS = (
    Setting("listen_host", "LISTEN_HOST", text, "0.0.0.0", "Address the listeners bind to."),
    Setting("http_port", "HTTP_PORT", int_range(1, 65535), "8080", "Plain HTTP listener port.", helm="proxy.httpPort"),
    Setting(
        "https_port",
        "HTTPS_PORT",
        int_range(1, 65535),
        "8081",
        "HTTPS listener port (when SSL_ENABLED).",
        helm="proxy.httpsPort",
    ),
    Setting("ssl_enabled", "SSL_ENABLED", boolean, "false", "Serve HTTPS on HTTPS_PORT.", helm="proxy.tls.enabled"),
    Setting(
        "ssl_cert_path",
        "SSL_CERT_PATH",
        _optional_path,
        "",
        "PEM certificate chain (reloaded when the file changes, or on SIGHUP).",
        helm=Helm(template="/certs/tls.crt from the Secret proxy.tls.secretName, with proxy.tls.enabled"),
    ),
    Setting(
        "ssl_key_path",
        "SSL_KEY_PATH",
        _optional_path,
        "",
        "PEM private key (reloaded when the file changes, or on SIGHUP).",
        helm=Helm(template="/certs/tls.key from the Secret proxy.tls.secretName, with proxy.tls.enabled"),
    ),
    Setting(
        "ssl_reload_interval_s",
        "SSL_RELOAD_INTERVAL_S",
        _non_negative_float,
        "5",
        "How often each worker looks for rewritten certificate/key files (0: only on SIGHUP).",
    ),
    Setting(
        "ssl_min_version",
        "SSL_MIN_VERSION",
        _tls_version,
        "1.3",
        "Lowest TLS version accepted: 1.3 or 1.2.",
        helm=Helm("proxy.tls.minVersion", when="proxy.tls.enabled"),
    ),
    Setting(
        "http_redirect_to_https",
        "HTTP_REDIRECT_TO_HTTPS",
        boolean,
        "false",
        "Answer plain HTTP with a 308 redirect to https://PUBLIC_HOST (meta endpoints excepted).",
        helm=Helm("proxy.tls.redirectHttp", when="proxy.tls.enabled"),
    ),
    Setting(
        "public_host",
        "PUBLIC_HOST",
        _public_host,
        "",
        "host[:port] clients use for HTTPS; the redirect's Location is built from it, never from Host.",
        helm=Helm("proxy.tls.publicHost", when="proxy.tls.enabled"),
    ),
    Setting(
        "pdp_url",
        "PDP_URL",
        _url,
        "http://127.0.0.1:8082",
        "Base URL of the PDP (POST /v1/check).",
        helm=Helm(template="proxy.pdp.url, else the PDP's Service (http://<release>-pdp:pdp.service.port)"),
    ),
    Setting(
        "pdp_timeout_ms",
        "PDP_TIMEOUT_MS",
        int_range(1, 60000),
        "1000",
        "Deadline for one PDP decision, once a pooled connection is free (a hung PDP, not load: load is shed first).",
    ),
    Setting(
        "pdp_pool_size",
        "PDP_POOL_SIZE",
        int_range(1, 4096),
        "8",
        "Keep-alive connections to the PDP per worker; more requests wait for one (few: the PDP is CPU-bound).",
    ),
    Setting(
        "pdp_queue_timeout_ms",
        "PDP_QUEUE_TIMEOUT_MS",
        int_range(1, 60000),
        "3000",
        "How long a request may wait for a free PDP connection; one that would wait longer is shed at once (503, "
        "Retry-After).",
    ),
    Setting(
        "pdp_batch_max",
        "PDP_BATCH_MAX",
        int_range(1, 64),
        "32",
        "Most concurrent decisions a worker sends in one POST /v1/check/batch (1: one POST /v1/check each).",
    ),
    Setting(
        "pdp_batches_in_flight",
        "PDP_BATCHES_IN_FLIGHT",
        int_range(1, 4096),
        "1",
        "Batches a worker has in flight at once (at most PDP_POOL_SIZE): decisions arriving meanwhile wait for "
        "the next, so fewer, larger batches carry the load (cheaper per decision for the PDP).",
    ),
    Setting(
        "pdp_batch_stall_ms",
        "PDP_BATCH_STALL_MS",
        int_range(1, 60000),
        "300",
        "When every batch in flight has been out this long (a stopped or paused PDP worker), one more goes out "
        "on another connection, up to PDP_POOL_SIZE.",
    ),
    Setting(
        "pdp_ca_file",
        "PDP_CA_FILE",
        _optional_path,
        "",
        "PEM CA bundle the https:// PDP's certificate is verified against (default: the system's trust store).",
        helm=Helm(template="/pdp-tls/ca.crt from the Secret proxy.pdp.tls.secretName"),
    ),
    Setting(
        "pdp_tls_server_name",
        "PDP_TLS_SERVER_NAME",
        _server_name,
        "",
        "Name sent as SNI and verified in the PDP's certificate (default: the host of PDP_URL).",
        helm=Helm(template="proxy.pdp.tls.serverName"),
    ),
    Setting(
        "pdp_client_cert",
        "PDP_CLIENT_CERT",
        _optional_path,
        "",
        "PEM certificate chain the proxy presents to an https:// PDP (mTLS); with PDP_CLIENT_KEY.",
        helm=Helm(template="/pdp-tls/tls.crt from the Secret proxy.pdp.tls.secretName, with proxy.pdp.tls.clientCert"),
    ),
    Setting(
        "pdp_client_key",
        "PDP_CLIENT_KEY",
        _optional_path,
        "",
        "PEM private key of PDP_CLIENT_CERT.",
        helm=Helm(template="/pdp-tls/tls.key from the Secret proxy.pdp.tls.secretName, with proxy.pdp.tls.clientCert"),
    ),
    Setting(
        "workers",
        "PROXY_WORKERS",
        _workers,
        "",
        "Worker processes (default: usable cores, cgroup CPU quota included).",
        helm="proxy.workers",
    ),
    Setting(
        "routes_file",
        "ROUTES_FILE",
        _optional_path,
        "",
        "Routes YAML (default: the shipped seed routes). Its `${VAR}`s are read from the environment: "
        "the seed's backends are BLOCKCHAIN_CORE_URL, SESSION_MANAGEMENT_URL, AUTH_SERVICE_URL and "
        "TRON_PAYMENT_URL (see Routes).",
        helm=Helm(template="/etc/lucid-gateway/routes.yaml from proxy.routes (gateway mode)"),
    ),
    Setting(
        "trusted_proxies",
        "TRUSTED_PROXIES",
        cidr_list,
        "",
        "CIDRs whose X-Forwarded-For is trusted (comma-separated).",
        helm="proxy.trustedProxies",
    ),
    Setting(
        "tor_socks_url",
        "TOR_SOCKS_URL",
        _socks_url,
        "",
        "SOCKS5 egress for clusters with `egress: tor` and for .onion endpoints (Tor's SocksPort).",
    ),
    Setting(
        "max_header_bytes",
        "MAX_HEADER_BYTES",
        int_range(1024, 1048576),
        "16384",
        "Request line plus headers larger than this answer 431.",
    ),
    Setting(
        "max_body_bytes",
        "MAX_BODY_BYTES",
        int_range(0, 1 << 40),
        "10485760",
        "Request bodies larger than this answer 413 (0: no body allowed).",
    ),
    Setting(
        "header_read_timeout_s",
        "HEADER_READ_TIMEOUT_S",
        _positive_float,
        "10",
        "Time allowed to send a whole request head (slowloris guard).",
    ),
    Setting(
        "body_read_timeout_s",
        "BODY_READ_TIMEOUT_S",
        _positive_float,
        "30",
        "Time allowed to send a whole request body (then 408).",
    ),
    Setting(
        "body_buffer_bytes",
        "BODY_BUFFER_BYTES",
        int_range(0, 1 << 30),
        "262144",
        "Bodies up to this size are read whole before an upstream connection is taken.",
    ),
    Setting(
        "streamed_bodies_per_cluster",
        "STREAMED_BODIES_PER_CLUSTER",
        int_range(1, 1000000),
        "32",
        "Larger bodies stream to the upstream; at most this many at once per cluster and worker (then 503).",
    ),
    Setting(
        "keepalive_timeout_s",
        "KEEPALIVE_TIMEOUT_S",
        _positive_float,
        "60",
        "Idle time allowed between requests on a client connection.",
    ),
    Setting(
        "max_connections",
        "MAX_CONNECTIONS",
        int_range(1, 1000000),
        "10000",
        "Concurrent client connections per worker; more are refused with 503.",
    ),
    Setting(
        "max_tunnels",
        "MAX_TUNNELS",
        int_range(1, 1000000),
        "1000",
        "Open WebSocket tunnels per worker (each holds an upstream connection outside the pool and breaker); "
        "an upgrade over the cap is answered 503 with Retry-After before the upstream is contacted.",
    ),
    Setting(
        "reuse_port",
        "PROXY_REUSE_PORT",
        boolean,
        "true",
        "Each worker binds its own SO_REUSEPORT socket (false: workers share one inherited socket).",
    ),
    Setting(
        "grace_period_s",
        "GRACE_PERIOD_S",
        _positive_float,
        "20",
        "On SIGTERM, time allowed for in-flight requests to finish.",
        helm=Helm(template="the pod's terminationGracePeriodSeconds less proxy.preStopSleepSeconds and 5 s"),
    ),
    Setting(
        "verdict_cache_size",
        "VERDICT_CACHE_SIZE",
        int_range(0, 10000000),
        "10000",
        "Cacheable allow verdicts kept per worker (0 disables the fast path).",
    ),
    Setting(
        "max_active",
        "MAX_ACTIVE_DECISIONS",
        int_range(0, 100000),
        "64",
        "Requests per worker inside the decision at once; more wait their turn (0: no limit).",
    ),
    Setting(
        "queue_budget_ms",
        "QUEUE_BUDGET_MS",
        int_range(1, 60000),
        "3000",
        "A request that would wait longer than this for its turn is shed at once (503, Retry-After).",
    ),
    Setting(
        "quota_leases",
        "QUOTA_LEASES",
        boolean,
        "true",
        "Ask the PDP for quota leases and admit a hot key's requests against them locally (docs/leases.md).",
    ),
    Setting(
        "lease_max_want",
        "LEASE_MAX_WANT",
        int_range(1, 100000),
        "256",
        "Most requests' worth of quota one lease request asks for (the PDP caps it further).",
    ),
    Setting(
        "decision_header_names",
        "DECISION_HEADER_NAMES",
        _header_names,
        DECISION_HEADER_NAMES_DEFAULT,
        "Headers the PDP's decisions may set, as the PDP's own DECISION_HEADER_NAMES says: a client's copies "
        "of them are dropped (never judged, never forwarded) whether or not the decision sets them.",
        helm=Helm(template="pdp.settings.DECISION_HEADER_NAMES, else this default"),
    ),
    Setting("access_log", "ACCESS_LOG", boolean, "true", "One JSON line per request on stdout."),
    Setting(
        "service_name",
        "SERVICE_NAME",
        text,
        "api-gateway",
        "Name shown by /meta/info.",
        helm=Helm(template="proxy.serviceName, else the proxy's fullname"),
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}


class Config:
    """Validated settings as attributes (`config.http_port`); `environ` is what they were read
    from, where the routes file's ${VAR}s are looked up too."""

    environ: Mapping[str, str] = {}

    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update(values)

    def replace(self, **changes) -> "Config":
        values = dict(self.__dict__)
        values.update(changes)
        return Config(values)


def load(environ: Mapping[str, str] = os.environ, overrides: Mapping[str, str] = None) -> Config:
    """Parses every setting from `environ` (then `overrides`), raising ConfigError on the first bad one."""
    config = Config(_load(SETTINGS, environ, overrides))
    config.environ = dict(environ)
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    if config.ssl_enabled:
        for name in ("ssl_cert_path", "ssl_key_path"):
            path = getattr(config, name)
            env = BY_NAME[name].env
            if not path:
                raise ConfigError(f"{env}: required when SSL_ENABLED=true")
            if not os.path.isfile(path):
                raise ConfigError(f"{env}: no such file, got {path!r}")
        if config.https_port == config.http_port:
            raise ConfigError(f"HTTPS_PORT: must differ from HTTP_PORT, got {config.https_port}")
    if config.http_redirect_to_https and not config.ssl_enabled:
        raise ConfigError("HTTP_REDIRECT_TO_HTTPS: needs SSL_ENABLED=true")
    if config.http_redirect_to_https and not config.public_host:
        # The client's Host must not choose where a redirect sends it.
        raise ConfigError("HTTP_REDIRECT_TO_HTTPS: needs PUBLIC_HOST (the host clients use for HTTPS)")
    if config.routes_file and not os.path.isfile(config.routes_file):
        raise ConfigError(f"ROUTES_FILE: no such file, got {config.routes_file!r}")
    _check_pdp_tls(config)


_PDP_TLS = ("pdp_ca_file", "pdp_tls_server_name", "pdp_client_cert", "pdp_client_key")


def _check_pdp_tls(config: Config) -> None:
    """The PDP's TLS settings need an https:// PDP_URL (never a silent plain-text link) and
    loadable files; the context is built once here so a bad file is one startup line."""
    given = [name for name in _PDP_TLS if getattr(config, name)]
    if not given:
        return
    if not config.pdp_url.startswith("https://"):
        raise ConfigError(
            f"{BY_NAME[given[0]].env}: needs an https:// PDP_URL, got PDP_URL={config.pdp_url} (plain text)"
        )
    if bool(config.pdp_client_cert) != bool(config.pdp_client_key):
        raise ConfigError("PDP_CLIENT_CERT/PDP_CLIENT_KEY: set both or neither")
    for name in ("pdp_ca_file", "pdp_client_cert", "pdp_client_key"):
        path = getattr(config, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{BY_NAME[name].env}: no such file, got {path!r}")
    import ssl

    from .upstream_tls import build_context

    try:
        build_context(pdp_tls_spec(config))
    except (OSError, ssl.SSLError) as exc:
        names = "PDP_CA_FILE" if not config.pdp_client_cert else "PDP_CA_FILE/PDP_CLIENT_CERT/PDP_CLIENT_KEY"
        raise ConfigError(f"{names}: cannot load the certificates: {exc}") from None


def pdp_tls_spec(config: Config) -> UpstreamTlsSpec:
    """The TLS of the link to an https:// PDP (verified, SNI, optional client certificate)."""
    from .upstream_tls import UpstreamTlsSpec

    return UpstreamTlsSpec(
        ca_file=config.pdp_ca_file,
        server_name=config.pdp_tls_server_name,
        client_cert=config.pdp_client_cert,
        client_key=config.pdp_client_key,
    )


def markdown_table() -> str:
    """The settings table in markdown (docs/settings.md holds the generated one, with the chart column)."""
    return _markdown_table(SETTINGS)


def describe() -> str:
    return _describe(SETTINGS)
