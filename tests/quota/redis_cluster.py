"""A real 3-master Redis Cluster on loopback, created with redis-cli --cluster create."""

import subprocess
import tempfile
import time

from tests.support.ports import free_port
from tests.support.processes import Server
from tests.support.redis_server import redis_argv


def _distinct_free_ports(count: int) -> list:
    ports: set = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)


class RedisCluster3:
    def __init__(self, masters: int = 3, attempts: int = 2):
        for attempt in range(attempts):
            try:
                self._start(masters)
                return
            except Exception:
                # A port taken between choosing and binding (the machine is shared).
                if attempt == attempts - 1:
                    raise

    def _start(self, masters: int) -> None:
        self.servers = []
        # Node ports and explicit bus ports (port + 10000 may be taken or past 65535).
        ports = _distinct_free_ports(2 * masters)
        try:
            for port, bus_port in zip(ports[:masters], ports[masters:]):
                workdir = tempfile.mkdtemp(prefix="lucid-redis-cluster-")
                cluster_args = (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    str(bus_port),
                )
                self.servers.append(Server(redis_argv(port, workdir, cluster_args), port))
            nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait_ok(timeout=20)
        except Exception:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(nodes)

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(s.port), "cluster", "info"], capture_output=True, text=True, timeout=5
                ).stdout
                for s in self.servers
            ]
            if all("cluster_state:ok" in st for st in states):
                return
            time.sleep(0.1)
        raise TimeoutError("Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
