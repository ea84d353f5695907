"""One way to reach Redis from REDIS_URL: a single server, a Sentinel or a Cluster.

URL forms (user, password and TLS work in all of them):

- ``redis://[user:pass@]host:port/db`` and ``rediss://...`` (TLS): one server;
- ``unix:///path/to/redis.sock?db=0``: one server on a Unix socket;
- ``redis+sentinel://[user:pass@]host:port,host:port/mastername[/db]``
  (``rediss+sentinel://`` for TLS to the master): the master Sentinel names;
- ``redis+cluster://[user:pass@]host:port,host:port`` (``rediss+cluster://``):
  a Redis Cluster, discovered from any of the seed nodes.

Every client gets socket connect and read timeouts and NO retries: the PDP
decides what a failed call means (fail modes, circuit breaker), and a retry
with back-off would turn a 20 ms timeout into seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

__all__ = ["connect", "parse_url", "RedisURLError", "RedisTarget"]

_DEFAULT_PORT = 6379
_DEFAULT_SENTINEL_PORT = 26379


class RedisURLError(ValueError):
    """REDIS_URL cannot be used; the message says why (never echoes a password)."""


@dataclass(frozen=True)
class RedisTarget:
    kind: str  # "single" | "sentinel" | "cluster"
    tls: bool
    nodes: tuple  # ((host, port), ...) for sentinel and cluster
    url: str = ""  # for single: the url redis-py understands
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _split_nodes(netloc: str, default_port: int) -> tuple:
    nodes = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port_text = rest.lstrip(":")
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise RedisURLError(f"REDIS_URL: node {part!r} has no host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise RedisURLError(f"REDIS_URL: node {part!r} has a bad port") from None
        if not 0 < port < 65536:
            raise RedisURLError(f"REDIS_URL: node {part!r} has a bad port")
        nodes.append((host, port))
    if not nodes:
        raise RedisURLError("REDIS_URL: no host:port given")
    return tuple(nodes)


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    userinfo, _, hosts = netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    if not sep:  # "redis://secret@host" means a password, as redis-cli reads it
        return None, unquote(user) or None, hosts
    return unquote(user) or None, unquote(password) or None, hosts


def _db(text: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise RedisURLError(f"REDIS_URL: database {text!r} is not a number") from None
    if db < 0:
        raise RedisURLError("REDIS_URL: database must be >= 0")
    return db


def parse_url(url: str) -> RedisTarget:
    """Parses REDIS_URL into a target; raises RedisURLError naming the problem."""
    if not url or not isinstance(url, str):
        raise RedisURLError("REDIS_URL is empty")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisURLError("REDIS_URL must start with redis://, rediss://, unix://, "
                            "redis+sentinel:// or redis+cluster://")
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        # Let redis-py parse what it knows, but validate early for a clear message.
        try:
            redis.connection.parse_url(url)
        except ValueError as exc:
            raise RedisURLError(f"REDIS_URL: {exc}") from None
        return RedisTarget(kind="single", tls=scheme == "rediss", nodes=(), url=url)
    if scheme not in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        raise RedisURLError(f"REDIS_URL: unknown scheme {scheme!r}")
    tls = scheme.startswith("rediss")
    parts = urlsplit("x://" + rest)
    username, password, hosts = _credentials(rest.split("/", 1)[0])
    if scheme.endswith("+sentinel"):
        nodes = _split_nodes(hosts, _DEFAULT_SENTINEL_PORT)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise RedisURLError("REDIS_URL: a Sentinel URL needs the master name: "
                                "redis+sentinel://host:port,host:port/mastername/db")
        if len(path) > 2:
            raise RedisURLError("REDIS_URL: Sentinel path is /mastername[/db]")
        db = _db(path[1]) if len(path) == 2 else _db(parse_qs(parts.query).get("db", ["0"])[0])
        return RedisTarget(kind="sentinel", tls=tls, nodes=nodes, master=unquote(path[0]),
                           db=db, username=username, password=password)
    nodes = _split_nodes(hosts, _DEFAULT_PORT)
    if parts.path.strip("/") not in ("", "0"):
        raise RedisURLError("REDIS_URL: Redis Cluster has only database 0")
    return RedisTarget(kind="cluster", tls=tls, nodes=nodes, username=username,
                       password=password)


def connect(url: str, timeout_s: float, *, max_connections: int | None = None):
    """Returns a redis-py client for REDIS_URL with connect/read timeouts and no retries.

    Args:
        url: REDIS_URL (see the module docstring for the forms).
        timeout_s: socket connect and read timeout, seconds (REDIS_TIMEOUT_MS / 1000).
        max_connections: pool bound per server, None for redis-py's default.

    Returns:
        ``redis.Redis`` (single server or the Sentinel's master) or ``RedisCluster``.
        No network traffic happens here except Cluster discovery, which needs one
        reachable seed node.
    """
    if not timeout_s or timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    target = parse_url(url)
    common = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                  retry=_no_retry(), health_check_interval=0)
    if max_connections:
        common["max_connections"] = max_connections
    if target.kind == "single":
        return redis.Redis.from_url(target.url, **common)
    auth = {}
    if target.username:
        auth["username"] = target.username
    if target.password:
        auth["password"] = target.password
    if target.kind == "sentinel":
        sentinel = Sentinel(
            list(target.nodes),
            sentinel_kwargs=dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                 retry=_no_retry()),
            **common, **auth)
        return sentinel.master_for(target.master, db=target.db, ssl=target.tls, **auth,
                                   socket_timeout=timeout_s,
                                   socket_connect_timeout=timeout_s, retry=_no_retry())
    common.pop("health_check_interval")
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
        ssl=target.tls, require_full_coverage=True, **common, **auth)
