"""REDIS_URL forms: a single server, a Sentinel and a Cluster, all real."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from pdp.quota.service import QuotaService
from pdp.redis_client import RedisURLError, connect, parse_url
from tests.support.ports import free_port
from tests.support.processes import Server

from .conftest import descriptor


@pytest.mark.parametrize(
    "url, kind, nodes, extra",
    [
        ("redis://127.0.0.1:6379/2", "single", (), {}),
        ("rediss://:pw@cache.internal:6380/0", "single", (), {"tls": True}),
        ("unix:///run/redis.sock?db=1", "single", (), {}),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster/3",
            "sentinel",
            (("s1", 26379), ("s2", 26380)),
            {"master": "mymaster", "db": 3},
        ),
        (
            "redis+sentinel://u:p%40ss@s1/mymaster",
            "sentinel",
            (("s1", 26379),),
            {"username": "u", "password": "p@ss", "db": 0},
        ),
        (
            "rediss+cluster://a:7000,b:7001,[::1]:7002",
            "cluster",
            (("a", 7000), ("b", 7001), ("::1", 7002)),
            {"tls": True},
        ),
    ],
)
def test_parse_url_forms(url, kind, nodes, extra):
    target = parse_url(url)
    assert target.kind == kind and target.nodes == nodes
    for name, value in extra.items():
        assert getattr(target, name) == value


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "empty"),
        ("127.0.0.1:6379", "must start with"),
        ("http://x", "unknown scheme"),
        ("redis+sentinel://s1:26379", "master name"),
        ("redis+sentinel://s1:26379/m/x", "not a number"),
        ("redis+cluster://a:notaport", "bad port"),
        ("redis+cluster://a:7000/3", "only database 0"),
        ("redis://h:6379/x", "not a number"),
    ],
)
def test_parse_url_errors_say_what_is_wrong(url, message):
    with pytest.raises(RedisURLError, match=message):
        parse_url(url)


def test_bad_url_error_never_echoes_the_password():
    with pytest.raises(RedisURLError) as err:
        parse_url("redis+cluster://user:hunter2@a:nope")
    assert "hunter2" not in str(err.value)


def test_single_server_and_cluster_clients(redis_single, redis_cluster):
    single = connect(redis_single.redis_url, 0.5)
    assert single.ping() and not isinstance(single, RedisCluster)
    cluster = connect(redis_cluster.url, 0.5)
    assert isinstance(cluster, RedisCluster)
    assert len(cluster.get_primaries()) == 3
    single.close(), cluster.close()


def test_unreachable_server_fails_within_the_timeout():
    client = connect(f"redis://127.0.0.1:{free_port()}/0", 0.02)
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        client.ping()
    assert time.monotonic() - started < 0.5


@pytest.fixture(scope="module")
def sentinel(redis_single):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = Path(tempfile.mkdtemp(prefix="lucid-sentinel-"))
    port = free_port()
    master_port = redis_single.port
    # Sentinel rewrites its config file, so it gets a writable one of its own.
    (workdir / "sentinel.conf").write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\nsentinel monitor lucidmaster 127.0.0.1 {master_port} 1\n"
    )
    server = Server([binary, str(workdir / "sentinel.conf"), "--sentinel"], port)
    yield server
    server.stop()


def test_sentinel_url_reaches_the_master_and_spends(sentinel, redis_single):
    client = connect(f"redis+sentinel://127.0.0.1:{sentinel.port}/lucidmaster/0", 0.5)
    service = QuotaService(client)
    d = [descriptor(key="user:sentinel", limit=10, burst=2)]
    assert [service.spend(d, {}).status for _ in range(3)] == [200, 200, 429]
    assert service.spend(d, {}).source == "redis"
    client.close()
