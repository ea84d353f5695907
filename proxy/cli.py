"""`lucid-proxy` / `python -m proxy`: validate everything, then fork the workers."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from servicekit import logs
from servicekit.tracing import make_tracer

from . import config as config_module
from .routes import DEFAULT_ROUTES_FILE, RoutesError, load_routes, sidecar_table

log = logging.getLogger("lucid.proxy.cli")

if TYPE_CHECKING:
    from .gateway import Gateway
    from .metrics import Metrics
    from .routes import RouteTable


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lucid-proxy",
        description="Thin gevent proxy that asks the PDP before forwarding. "
        "Settings come from the environment (see --settings).",
    )
    parser.add_argument(
        "--upstream", metavar="URL", help="sidecar mode: forward everything to this one app (no routes file)"
    )
    parser.add_argument("--routes", metavar="FILE", help="routes YAML (overrides ROUTES_FILE)")
    parser.add_argument("--workers", metavar="N", help="worker processes (overrides PROXY_WORKERS)")
    parser.add_argument("--port", metavar="PORT", help="HTTP port (overrides HTTP_PORT)")
    parser.add_argument("--settings", action="store_true", help="print the settings table and exit")
    parser.add_argument(
        "--routes-reference",
        action="store_true",
        help="print the routes file reference (every key, its type and default) and exit",
    )
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


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901
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
        config = config_module.load(
            overrides={"routes_file": args.routes, "workers": args.workers, "http_port": args.port}
        )
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
    # SIGHUP re-reads the routes file (gateway mode): each worker swaps in the new
    # table, the master keeps it for workers it forks later; a bad file keeps the
    # last good table everywhere.
    current = {"table": table}
    reread = (lambda: build_route_table(config)[0]) if mode == "gateway" else None

    def run_worker():
        return Worker(
            config, lambda: build_gateway(config, current["table"], mode, reread), tls, master.inherited
        ).run()

    def on_hup():
        if reread is not None:
            new = reread_routes(reread)
            if new is not None:
                current["table"] = new

    master = Master(config, run_worker, on_hup=on_hup)
    return master.run()


def reread_routes(reread: Callable[[], RouteTable]) -> RouteTable | None:
    """The routes file read again, or None (logged) when it does not load: the last good stays."""
    try:
        return reread()
    except (RoutesError, ValueError) as exc:
        logging.getLogger("lucid.proxy.routes").error("routes reload failed, keeping the previous routes: %s", exc)
        return None


def build_gateway(  # noqa: C901
    config: config_module.Config, table: RouteTable, mode: str, reread: Callable[[], RouteTable] | None = None
) -> tuple[Gateway, Metrics, list]:
    """Wires one worker's Gateway from its parts (called after fork).

    reread: returns the routes file's table again (SIGHUP); None in sidecar mode."""
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
    pdp = PdpClient(
        config.pdp_url,
        config.pdp_timeout_ms / 1000.0,
        config.pdp_pool_size,
        config.pdp_queue_timeout_ms / 1000.0,
        tls_spec=config_module.pdp_tls_spec(config) if config.pdp_url.startswith("https://") else None,
        batch_max=config.pdp_batch_max,
        batches_in_flight=config.pdp_batches_in_flight,
        batch_stall_s=config.pdp_batch_stall_ms / 1000.0,
        on_batch=metrics.count_pdp_batch,
        on_stall=metrics.pdp_batch_stalls.inc,
    )
    verdicts = VerdictCache(config.verdict_cache_size, clock) if config.verdict_cache_size else None
    leases = None
    if config.quota_leases:
        from .leases import LeaseStore

        leases = LeaseStore(clock, pdp.return_lease_later, max(1, config.verdict_cache_size), config.lease_max_want)
    admission = None
    if config.max_active:
        from .admission import Admission

        admission = Admission(config.max_active, config.queue_budget_ms / 1000.0, clock)
    meta = MetaEndpoints(config.service_name, pdp, clusters, metrics, mode)
    gateway = Gateway(
        config,
        table,
        clusters,
        pdp,
        verdicts,
        ClientAddress(config.trusted_proxies),
        meta,
        metrics,
        AccessLog(config.access_log),
        clock,
        tracer=make_tracer("lucid-proxy"),
        leases=leases,
        admission=admission,
    )

    def health_head(endpoint, path):
        return f"GET {path} HTTP/1.1\r\nHost: {endpoint.authority}\r\nUser-Agent: lucid-proxy-health\r\n\r\n".encode(
            "latin-1"
        )

    checks = {name: c.start_health_checks(health_head) for name, c in clusters.items()}
    background = [g for g in checks.values() if g]

    def reload_routes():
        """SIGHUP: the new table, with unchanged clusters kept as they are (their pools,
        ejections and breaker state); `clusters` is updated in place, so the meta
        endpoints and the state publisher see the new set."""
        new = reread_routes(reread)
        if new is None:
            return False
        fresh = {}
        for name, spec in new.clusters.items():
            old = clusters.get(name)
            fresh[name] = old if old is not None and old.spec == spec else Cluster(spec, clock)
        for name, cluster in list(clusters.items()):
            if fresh.get(name) is not cluster and checks.get(name) is not None:
                checks.pop(name).kill(block=False)
        for name, cluster in fresh.items():
            if clusters.get(name) is not cluster:
                checks[name] = cluster.start_health_checks(health_head)
        clusters.clear()
        clusters.update(fresh)
        gateway.swap_routes(new)
        log.warning("routes reloaded: %d routes, %d clusters", len(new.routes), len(fresh))
        return True

    if reread is not None:
        gateway.reload_routes = reload_routes

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
