"""The proxy's settings, declared once as data (gunicorn's config.py style).

Each setting names its environment variable, a parser that validates and converts
the raw string, a default and a one-line description. Everything else (the CLI
help, docs/proxy.md's table, startup errors) is derived from `SETTINGS`.
"""
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
    """A bad setting; its message is the one line printed at startup."""


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    parse: Callable[[str], Any]
    default: str
    description: str


def _int_in(low, high):
    def parse(raw):
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer between {low} and {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer between {low} and {high}")
        return value
    return parse


def _positive_float(raw):
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a positive number") from None
    if not value > 0:
        raise ValueError("expected a positive number")
    return value


def _non_negative_float(raw):
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds, 0 or more") from None
    if not value >= 0 or value > 86400:
        raise ValueError("expected a number of seconds, 0 or more")
    return value


def _bool(raw):
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _tls_version(raw):
    value = raw.strip()
    if value not in ("1.2", "1.3"):
        raise ValueError("expected 1.2 or 1.3")
    return value


def _url(raw):
    value = raw.strip()
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def _url_list(raw):
    urls = [part for part in (p.strip() for p in raw.split(",")) if part]
    if not urls:
        raise ValueError("expected one or more comma-separated http(s) URLs")
    return tuple(_url(u) for u in urls)


def _cidr_list(raw):
    # The PDP's TRUSTED_PROXIES parses the same way (pdp/client_ip.py).
    from pdp.client_ip import parse_cidr_list
    return parse_cidr_list(raw)


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


def _workers(raw):
    if raw.strip() == "":
        return usable_cores()
    return _int_in(1, 256)(raw)


def _text(raw):
    return raw.strip()


def _public_host(raw):
    from .http11 import valid_host

    value = raw.strip()
    if value and not valid_host(value):
        raise ValueError("expected host or host:port, such as gateway.example.com")
    return value or None


def _optional_path(raw):
    return raw.strip() or None


def _server_name(raw):
    import re
    value = raw.strip().lower()
    if value and (len(value) > 253 or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", value)):
        raise ValueError("expected a DNS name, such as pdp.internal")
    return value or None


def _socks_url(raw):
    from .egress import EgressSpecError, parse_egress
    if not raw.strip():
        return None
    try:
        parse_egress(raw, "TOR_SOCKS_URL")
    except EgressSpecError:
        raise ValueError("expected socks5h://host:port (Tor's SocksPort, e.g. socks5h://127.0.0.1:9050)") from None
    return raw.strip()


SETTINGS = (
    Setting("listen_host", "LISTEN_HOST", _text, "0.0.0.0", "Address the listeners bind to."),
    Setting("http_port", "HTTP_PORT", _int_in(1, 65535), "8080", "Plain HTTP listener port."),
    Setting("https_port", "HTTPS_PORT", _int_in(1, 65535), "8081", "HTTPS listener port (when SSL_ENABLED)."),
    Setting("ssl_enabled", "SSL_ENABLED", _bool, "false", "Serve HTTPS on HTTPS_PORT."),
    Setting("ssl_cert_path", "SSL_CERT_PATH", _optional_path, "", "PEM certificate chain (reloaded when the file changes, or on SIGHUP)."),
    Setting("ssl_key_path", "SSL_KEY_PATH", _optional_path, "", "PEM private key (reloaded when the file changes, or on SIGHUP)."),
    Setting("ssl_reload_interval_s", "SSL_RELOAD_INTERVAL_S", _non_negative_float, "5",
            "How often each worker looks for rewritten certificate/key files (0: only on SIGHUP)."),
    Setting("ssl_min_version", "SSL_MIN_VERSION", _tls_version, "1.3", "Lowest TLS version accepted: 1.3 or 1.2."),
    Setting("http_redirect_to_https", "HTTP_REDIRECT_TO_HTTPS", _bool, "false",
            "Answer plain HTTP with a 308 redirect to https://PUBLIC_HOST (meta endpoints excepted)."),
    Setting("public_host", "PUBLIC_HOST", _public_host, "",
            "host[:port] clients use for HTTPS; the redirect's Location is built from it, never from Host."),
    Setting("pdp_url", "PDP_URL", _url, "http://127.0.0.1:8082", "Base URL of the PDP (POST /v1/check)."),
    Setting("pdp_timeout_ms", "PDP_TIMEOUT_MS", _int_in(1, 60000), "1000",
            "Deadline for one PDP decision, once a pooled connection is free (a hung PDP, not load: load is shed first)."),
    Setting("pdp_pool_size", "PDP_POOL_SIZE", _int_in(1, 4096), "8",
            "Keep-alive connections to the PDP per worker; more requests wait for one (few: the PDP is CPU-bound)."),
    Setting("pdp_queue_timeout_ms", "PDP_QUEUE_TIMEOUT_MS", _int_in(1, 60000), "3000",
            "How long a request may wait for a free PDP connection; one that would wait longer is shed at once (503, Retry-After)."),
    Setting("pdp_ca_file", "PDP_CA_FILE", _optional_path, "",
            "PEM CA bundle the https:// PDP's certificate is verified against (default: the system's trust store)."),
    Setting("pdp_tls_server_name", "PDP_TLS_SERVER_NAME", _server_name, "",
            "Name sent as SNI and verified in the PDP's certificate (default: the host of PDP_URL)."),
    Setting("pdp_client_cert", "PDP_CLIENT_CERT", _optional_path, "",
            "PEM certificate chain the proxy presents to an https:// PDP (mTLS); with PDP_CLIENT_KEY."),
    Setting("pdp_client_key", "PDP_CLIENT_KEY", _optional_path, "", "PEM private key of PDP_CLIENT_CERT."),
    Setting("workers", "PROXY_WORKERS", _workers, "", "Worker processes (default: usable cores, cgroup CPU quota included)."),
    Setting("routes_file", "ROUTES_FILE", _optional_path, "", "Routes YAML (default: the shipped seed routes)."),
    Setting("trusted_proxies", "TRUSTED_PROXIES", _cidr_list, "",
            "CIDRs whose X-Forwarded-For is trusted (comma-separated)."),
    Setting("blockchain_core_url", "BLOCKCHAIN_CORE_URL", _url_list, "http://blockchain-core:8084",
            "Blockchain Core instances (comma-separated)."),
    Setting("session_management_url", "SESSION_MANAGEMENT_URL", _url_list, "http://session-management:8085",
            "Session Management instances (comma-separated)."),
    Setting("auth_service_url", "AUTH_SERVICE_URL", _url_list, "http://auth-service:8086",
            "Auth service instances for /auth and /users (comma-separated)."),
    Setting("tron_payment_url", "TRON_PAYMENT_URL", _url_list, "http://tron-payment:8087",
            "TRON Payment instances (comma-separated)."),
    Setting("tor_socks_url", "TOR_SOCKS_URL", _socks_url, "",
            "SOCKS5 egress for clusters with `egress: tor` and for .onion endpoints (Tor's SocksPort)."),
    Setting("max_header_bytes", "MAX_HEADER_BYTES", _int_in(1024, 1048576), "16384",
            "Request line plus headers larger than this answer 431."),
    Setting("max_body_bytes", "MAX_BODY_BYTES", _int_in(0, 1 << 40), "10485760",
            "Request bodies larger than this answer 413 (0: no body allowed)."),
    Setting("header_read_timeout_s", "HEADER_READ_TIMEOUT_S", _positive_float, "10",
            "Time allowed to send a whole request head (slowloris guard)."),
    Setting("body_read_timeout_s", "BODY_READ_TIMEOUT_S", _positive_float, "30",
            "Time allowed to send a whole request body (then 408)."),
    Setting("body_buffer_bytes", "BODY_BUFFER_BYTES", _int_in(0, 1 << 30), "262144",
            "Bodies up to this size are read whole before an upstream connection is taken."),
    Setting("streamed_bodies_per_cluster", "STREAMED_BODIES_PER_CLUSTER", _int_in(1, 1000000), "32",
            "Larger bodies stream to the upstream; at most this many at once per cluster and worker (then 503)."),
    Setting("keepalive_timeout_s", "KEEPALIVE_TIMEOUT_S", _positive_float, "60",
            "Idle time allowed between requests on a client connection."),
    Setting("max_connections", "MAX_CONNECTIONS", _int_in(1, 1000000), "10000",
            "Concurrent client connections per worker; more are refused with 503."),
    Setting("reuse_port", "PROXY_REUSE_PORT", _bool, "true",
            "Each worker binds its own SO_REUSEPORT socket (false: workers share one inherited socket)."),
    Setting("grace_period_s", "GRACE_PERIOD_S", _positive_float, "20",
            "On SIGTERM, time allowed for in-flight requests to finish."),
    Setting("verdict_cache_size", "VERDICT_CACHE_SIZE", _int_in(0, 10000000), "10000",
            "Cacheable allow verdicts kept per worker (0 disables the fast path)."),
    Setting("max_active", "MAX_ACTIVE_DECISIONS", _int_in(0, 100000), "64",
            "Requests per worker inside the decision at once; more wait their turn (0: no limit)."),
    Setting("queue_budget_ms", "QUEUE_BUDGET_MS", _int_in(1, 60000), "3000",
            "A request that would wait longer than this for its turn is shed at once (503, Retry-After)."),
    Setting("quota_leases", "QUOTA_LEASES", _bool, "true",
            "Ask the PDP for quota leases and admit a hot key's requests against them locally (docs/leases.md)."),
    Setting("lease_max_want", "LEASE_MAX_WANT", _int_in(1, 100000), "256",
            "Most requests' worth of quota one lease request asks for (the PDP caps it further)."),
    Setting("access_log", "ACCESS_LOG", _bool, "true", "One JSON line per request on stdout."),
    Setting("service_name", "SERVICE_NAME", _text, "api-gateway", "Name shown by /meta/info."),
)

BY_NAME = {s.name: s for s in SETTINGS}


class Config:
    """Validated settings as attributes (`config.http_port`)."""

    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update(values)

    def replace(self, **changes) -> "Config":
        values = dict(self.__dict__)
        values.update(changes)
        return Config(values)


def load(environ: Mapping[str, str] = os.environ, overrides: Mapping[str, str] = None) -> Config:
    """Parses every setting from `environ` (then `overrides`), raising ConfigError on the first bad one."""
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env, setting.default)
        if overrides and setting.name in overrides and overrides[setting.name] is not None:
            raw = overrides[setting.name]
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "<redacted>" if "@" in str(raw) else repr(raw)  # URLs may carry a password
            raise ConfigError(f"invalid {setting.env}={shown}: {exc}") from None
    config = Config(values)
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    if config.ssl_enabled:
        for name in ("ssl_cert_path", "ssl_key_path"):
            path = getattr(config, name)
            env = BY_NAME[name].env
            if not path:
                raise ConfigError(f"invalid {env}: required when SSL_ENABLED=true")
            if not os.path.isfile(path):
                raise ConfigError(f"invalid {env}={path!r}: no such file")
        if config.https_port == config.http_port:
            raise ConfigError(f"invalid HTTPS_PORT={config.https_port}: same as HTTP_PORT")
    if config.http_redirect_to_https and not config.ssl_enabled:
        raise ConfigError("invalid HTTP_REDIRECT_TO_HTTPS=true: needs SSL_ENABLED=true")
    if config.http_redirect_to_https and not config.public_host:
        # The client's Host must not choose where a redirect sends it.
        raise ConfigError("invalid HTTP_REDIRECT_TO_HTTPS=true: needs PUBLIC_HOST (the host clients use for HTTPS)")
    if config.routes_file and not os.path.isfile(config.routes_file):
        raise ConfigError(f"invalid ROUTES_FILE={config.routes_file!r}: no such file")
    _check_pdp_tls(config)


_PDP_TLS = ("pdp_ca_file", "pdp_tls_server_name", "pdp_client_cert", "pdp_client_key")


def _check_pdp_tls(config: Config) -> None:
    """The PDP's TLS settings need an https:// PDP_URL (never a silent plain-text link) and
    loadable files; the context is built once here so a bad file is one startup line."""
    given = [name for name in _PDP_TLS if getattr(config, name)]
    if not given:
        return
    if not config.pdp_url.startswith("https://"):
        raise ConfigError(f"invalid {BY_NAME[given[0]].env}: needs an https:// PDP_URL "
                          f"(PDP_URL={config.pdp_url} is plain text)")
    if bool(config.pdp_client_cert) != bool(config.pdp_client_key):
        raise ConfigError("invalid PDP_CLIENT_CERT/PDP_CLIENT_KEY: set both or neither")
    for name in ("pdp_ca_file", "pdp_client_cert", "pdp_client_key"):
        path = getattr(config, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"invalid {BY_NAME[name].env}={path!r}: no such file")
    import ssl

    from .upstream_tls import build_context
    try:
        build_context(pdp_tls_spec(config))
    except (OSError, ssl.SSLError) as exc:
        names = "PDP_CA_FILE" if not config.pdp_client_cert else "PDP_CA_FILE/PDP_CLIENT_CERT/PDP_CLIENT_KEY"
        raise ConfigError(f"invalid {names}: cannot load the certificates: {exc}") from None


def pdp_tls_spec(config: Config):
    """The TLS of the link to an https:// PDP (verified, SNI, optional client certificate)."""
    from .upstream_tls import UpstreamTlsSpec
    return UpstreamTlsSpec(ca_file=config.pdp_ca_file, server_name=config.pdp_tls_server_name,
                           client_cert=config.pdp_client_cert, client_key=config.pdp_client_key)


def markdown_table() -> str:
    """The settings table for docs/proxy.md."""
    lines = ["| variable | default | description |", "| --- | --- | --- |"]
    for s in SETTINGS:
        lines.append(f"| `{s.env}` | `{s.default}` | {s.description} |")
    return "\n".join(lines)
