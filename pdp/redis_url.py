"""REDIS_URL parsing without importing redis-py.

Kept apart from pdp.redis_client so that validating settings in gunicorn's
master does not import redis (and ssl) before the gevent workers patch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["parse_url", "RedisURLError", "RedisTarget"]

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


def _check_single(url: str, scheme: str) -> None:
    # Checked here for a clear startup line; redis-py parses the URL itself later.
    parts = urlsplit(url)
    if scheme == "unix":
        if not parts.path:
            raise RedisURLError("REDIS_URL: unix:// needs a socket path")
        return
    try:
        port = parts.port
    except ValueError:
        raise RedisURLError("REDIS_URL: bad port") from None
    if not parts.hostname:
        raise RedisURLError("REDIS_URL: no host given")
    if port is not None and port == 0:
        raise RedisURLError("REDIS_URL: bad port")
    db = parts.path.strip("/")
    if db:
        _db(db)


def parse_url(url: str) -> RedisTarget:
    """Parses REDIS_URL into a target; raises RedisURLError naming the problem."""
    if not url or not isinstance(url, str):
        raise RedisURLError("REDIS_URL is empty")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisURLError(
            "REDIS_URL must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        _check_single(url, scheme)
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
            raise RedisURLError(
                "REDIS_URL: a Sentinel URL needs the master name: redis+sentinel://host:port,host:port/mastername/db"
            )
        if len(path) > 2:
            raise RedisURLError("REDIS_URL: Sentinel path is /mastername[/db]")
        db = _db(path[1]) if len(path) == 2 else _db(parse_qs(parts.query).get("db", ["0"])[0])
        return RedisTarget(
            kind="sentinel", tls=tls, nodes=nodes, master=unquote(path[0]), db=db, username=username, password=password
        )
    nodes = _split_nodes(hosts, _DEFAULT_PORT)
    if parts.path.strip("/") not in ("", "0"):
        raise RedisURLError("REDIS_URL: Redis Cluster has only database 0")
    return RedisTarget(kind="cluster", tls=tls, nodes=nodes, username=username, password=password)
