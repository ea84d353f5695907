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

import inspect

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from .redis_url import RedisTarget, RedisURLError, parse_url

__all__ = ["connect", "parse_url", "RedisURLError", "RedisTarget"]


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _no_handshake() -> dict:
    """No HELLO (RESP2) and no CLIENT SETINFO on connect: fewer round trips per new
    connection, and a read timeout then means the command itself was sent, so
    Redis ran it (see QuotaUnavailable.maybe_applied). AUTH and SELECT remain
    when the URL asks for them."""
    params = inspect.signature(redis.connection.AbstractConnection.__init__).parameters
    if "driver_info" in params:
        return {"protocol": 2, "driver_info": None}
    return {"protocol": 2, "lib_name": None, "lib_version": None}


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
    common = dict(
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=_no_retry(),
        health_check_interval=0,
        **_no_handshake(),
    )
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
            sentinel_kwargs=dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=_no_retry()),
            **common,
            **auth,
        )
        return sentinel.master_for(
            target.master,
            db=target.db,
            ssl=target.tls,
            **auth,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=_no_retry(),
        )
    common.pop("health_check_interval")
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
        ssl=target.tls,
        require_full_coverage=True,
        **common,
        **auth,
    )
