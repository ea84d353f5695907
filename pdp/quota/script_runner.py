"""Runs the spend script with as little client overhead as possible.

redis-py's full command path (pool bookkeeping, observability attributes,
retry wrapper, and a readiness poll on every checkout that under gevent costs
a trip through the hub) costs more than the round trip itself on loopback.
So the hot path keeps its own LIFO stack of connections per server (made by
redis-py's pool, so TLS, AUTH and Sentinel discovery still apply) and sends
EVALSHA on one directly. A connection goes back on the stack only after a
complete reply, so it never holds a stale answer; after any error it is
closed. Anything unusual (a Cluster redirect, NOSCRIPT after a failover or
SCRIPT FLUSH) is handled here or handed to the full client.
"""
from __future__ import annotations

import hashlib

from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import TryAgainError


class ScriptCallError(Exception):
    """The call failed; ``maybe_applied`` is True when the script was sent and the
    answer timed out (Redis most likely ran it)."""

    def __init__(self, cause: Exception, maybe_applied: bool):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.maybe_applied = maybe_applied


class _ConnectionStack:
    """Idle connections to one server, most recently used first (bounded)."""

    def __init__(self, pool, max_idle: int):
        self._pool = pool
        self._idle: list = []
        self._max_idle = max_idle

    def get(self):
        try:
            return self._idle.pop()
        except IndexError:
            conn = self._pool.make_connection()
            conn.connect()
            return conn

    def put(self, conn) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.disconnect()


class ScriptRunner:
    def __init__(self, client, lua: str, max_idle: int = 64):
        self._client = client
        self._lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()
        self._cluster = isinstance(client, RedisCluster)
        self._max_idle = max_idle
        self._stacks: dict = {}

    def _stack_for(self, key: str) -> _ConnectionStack:
        if not self._cluster:
            name, pool = None, self._client.connection_pool
        else:
            node = self._client.get_node_from_key(key)
            name = node.name
            stack = self._stacks.get(name)
            if stack is not None:
                return stack
            pool = (node.redis_connection or self._client.get_redis_connection(node)).connection_pool
        stack = self._stacks.get(name)
        if stack is None:
            stack = self._stacks[name] = _ConnectionStack(pool, self._max_idle)
        return stack

    def run(self, keys: list, args: list):
        """EVALSHA keys/args; raises ScriptCallError on any Redis or socket failure."""
        try:
            stack = self._stack_for(keys[0])
            conn = stack.get()
        except Exception as exc:  # noqa: BLE001 - nothing was sent
            raise ScriptCallError(exc, maybe_applied=False) from exc
        sent = False
        try:
            conn.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            sent = True
            try:
                reply = conn.read_response()
            except NoScriptError:
                # A fresh server (restart, failover, SCRIPT FLUSH): load once, retry once.
                sent = False
                conn.send_command("SCRIPT", "LOAD", self._lua)
                conn.read_response()
                conn.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
                sent = True
                reply = conn.read_response()
        except (MovedError, AskError, TryAgainError, ClusterDownError):
            stack.put(conn)  # the error reply was read whole: the connection is clean
            return self._run_by_client(keys, args)
        except BaseException as exc:  # timeouts, resets, OOM, script errors, gevent.Timeout
            conn.disconnect()
            if not isinstance(exc, Exception):
                raise
            timed_out = isinstance(exc, (RedisTimeoutError, TimeoutError))
            raise ScriptCallError(exc, maybe_applied=sent and timed_out) from exc
        stack.put(conn)
        return reply

    def _run_by_client(self, keys: list, args: list):
        """The full client: it follows Cluster redirects and refreshes the slot map."""
        try:
            try:
                return self._client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                self._client.script_load(self._lua)
                return self._client.evalsha(self.sha, len(keys), *keys, *args)
        except Exception as exc:  # noqa: BLE001
            raise ScriptCallError(exc, maybe_applied=False) from exc
