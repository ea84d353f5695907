"""`lucid-proxy` / `python -m proxy`: validate everything, then fork the workers."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from servicekit import logs
from servicekit.tracing import make_tracer

from . import config as config_module
from .routes import DEFAULT_ROUTES_FILE, RoutesError, load_routes, sidecar_table

if TYPE_CHECKING:
    from .gateway import Gateway
    from .metrics import Metrics
    from .routes import RouteTable


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lucid-proxy",
        description="Thin gevent proxy that asks the PDP before forwarding. "
                    "Settings come from the environment (see --settings).")
    parser.add_argument("--upstream", metavar="URL",
                        help="sidecar mode: forward everything to this one app (no routes file)")
    parser.add_argument("--routes", metavar="FILE", help="routes YAML (overrides ROUTES_FILE)")
    parser.add_argument("--workers", metavar="N", help="worker processes (overrides PROXY_WORKERS)")
    parser.add_argument("--port", metavar="PORT", help="HTTP port (overrides HTTP_PORT)")
    parser.add_argument("--settings", action="store_true", help="print the settings table and exit")
    parser.add_argument("--routes-reference", action="store_true",
                        help="print the routes file reference (every key, its type and default) and exit")
    parser.add_argument("--check", action="store_true", help="validate settings and routes, then exit")
    return parser.parse_args(argv)


def build_route_table(config: config_module.Config, upstream_url: str | None = None) -> tuple[RouteTable, str]:
    if upstream_url:
        url = config_module.BY_NAME["pdp_url"].parse(upstream_url)
        if not url.startswith("http://"):
            raise RoutesError("--upstream: only http:// upstreams are supported")
        return sidecar_table(url), "sidecar"
    # ${VAR} in the routes file: the environment the settings came from (TOR_SOCKS_URL validated).
    variables = {**config.environ, "TOR_SOCKS_URL": config.tor_socks_url or ""}
    return load_routes(config.routes_file or DEFAULT_ROUTES_FILE, variables), "gateway"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.settings:
        print(config_module.markdown_table())
        return 0
    if args.routes_reference:
        from .routes import routes_reference
        print(routes_reference())
        return 0
    # JSON lines like the PDP's (servicekit/logs.py); stdout carries the access log.
    logs.configure("warning", stream=sys.stderr)
    try:
        config = config_module.load(overrides={"routes_file": args.routes, "workers": args.workers,
                                               "http_port": args.port})
        table, mode = build_route_table(config, args.upstream)
    except (config_module.ConfigError, RoutesError) as exc:
        print(f"lucid-proxy: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"lucid-proxy: invalid --upstream: {exc}", file=sys.stderr)
        return 2
    tls = None
    if config.ssl_enabled:
        from .tls import ServerTls
        try:
            tls = ServerTls(config.ssl_cert_path, config.ssl_key_path, config.ssl_min_version)
        except (OSError, ValueError) as exc:
            print(f"lucid-proxy: invalid SSL_CERT_PATH/SSL_KEY_PATH: {exc}", file=sys.stderr)
            return 2
    if args.check:
        print(f"lucid-proxy: configuration ok ({mode}, {len(table.routes)} routes)")
        return 0
    from .server import Master, Worker, check_ports_free
    check_ports_free(config)

    master = None

    def run_worker():
        return Worker(config, lambda: build_gateway(config, table, mode), tls, master.inherited).run()

    master = Master(config, run_worker)
    return master.run()


def build_gateway(config: config_module.Config, table: RouteTable, mode: str) -> tuple[Gateway, Metrics, list]:
    """Wires one worker's Gateway from its parts (called after fork)."""
    import gevent

    from .accesslog import AccessLog
    from .cluster import Cluster
    from .forwarding import ClientAddress
    from .gateway import Gateway
    from .meta import MetaEndpoints
    from .metrics import Metrics
    from .pdp import PdpClient, VerdictCache

    clock = time.monotonic
    metrics = Metrics()
    clusters = {name: Cluster(spec, clock) for name, spec in table.clusters.items()}
    pdp = PdpClient(config.pdp_url, config.pdp_timeout_ms / 1000.0, config.pdp_pool_size,
                    config.pdp_queue_timeout_ms / 1000.0,
                    tls_spec=config_module.pdp_tls_spec(config) if config.pdp_url.startswith("https://") else None)
    verdicts = VerdictCache(config.verdict_cache_size, clock) if config.verdict_cache_size else None
    leases = None
    if config.quota_leases:
        from .leases import LeaseStore
        leases = LeaseStore(clock, pdp.return_lease_later, max(1, config.verdict_cache_size),
                            config.lease_max_want)
    admission = None
    if config.max_active:
        from .admission import Admission
        admission = Admission(config.max_active, config.queue_budget_ms / 1000.0, clock)
    meta = MetaEndpoints(config.service_name, pdp, clusters, metrics, mode)
    gateway = Gateway(config, table, clusters, pdp, verdicts, ClientAddress(config.trusted_proxies), meta,
                      metrics, AccessLog(config.access_log), clock, tracer=make_tracer("lucid-proxy"),
                      leases=leases, admission=admission)

    def health_head(endpoint, path):
        return f"GET {path} HTTP/1.1\r\nHost: {endpoint.authority}\r\nUser-Agent: lucid-proxy-health\r\n\r\n" \
            .encode("latin-1")

    background = [g for g in (c.start_health_checks(health_head) for c in clusters.values()) if g]

    def publish_cluster_state():
        from .breaker import STATE_VALUES
        while True:
            for name, cluster in clusters.items():
                metrics.healthy_endpoints.labels(name).set(cluster.healthy_count())
                metrics.breaker_state.labels(name).set(STATE_VALUES[cluster.breaker.state])
            gevent.sleep(1.0)

    background.append(gevent.spawn(publish_cluster_state))

    if leases is not None:
        def return_expired_leases():
            # Leases of keys that went quiet give their unused units back
            # within a quarter of a lifetime after they expire.
            while True:
                gevent.sleep(0.25)
                leases.sweep()

        background.append(gevent.spawn(return_expired_leases))
    return gateway, metrics, background
