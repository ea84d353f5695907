"""Runs a Lua script (the quota spend, the revocation lookup) with as little client overhead as possible.

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
import threading
import time

from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, ResponseError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis


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


class _Call:
    """One caller's script call, waiting in a batch."""

    __slots__ = ("keys", "args", "done", "reply", "error")

    def __init__(self, keys, args):
        self.keys, self.args = keys, args
        self.done = threading.Event()
        self.reply = None
        self.error = None


class _Server:
    """Calls to one Redis server, coalesced: concurrent callers (greenlets of one
    worker) share one write and one read instead of a round trip each.

    The first caller to arrive leads: it yields once so that callers already
    runnable can join, then sends the whole batch on one connection and hands
    every caller its reply. Callers arriving meanwhile start the next batch on
    another connection, so nobody waits behind a batch in flight.
    """

    def __init__(self, stack: _ConnectionStack):
        self.stack = stack
        self._lock = threading.Lock()
        self._queue: list = []
        self._collecting = False

    def join(self, call: _Call) -> bool:
        """Queues a call; returns True when the caller must lead the batch."""
        with self._lock:
            self._queue.append(call)
            if self._collecting:
                return False
            self._collecting = True
            return True

    def take(self) -> list:
        with self._lock:
            batch, self._queue = self._queue, []
            self._collecting = False
            return batch


class ScriptRunner:
    def __init__(self, client, lua: str, max_idle: int = 64, timeout_s: float | None = None):
        self._client = client
        self._lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()
        self._cluster = isinstance(client, RedisCluster)
        self._max_idle = max_idle
        self._servers: dict = {}
        # A joined caller is always woken by its leader (_flush's finally), whose socket
        # timeouts bound the exchange; this bound is only a safety net. It must be loose:
        # on a busy worker the leader waits its turn behind every runnable greenlet (a
        # batch of decisions) before it sends, and a tight bound (it was 2 x 20 ms + 50 ms)
        # turned that wait into Redis "errors" that opened the circuit breaker.
        socket_timeout = timeout_s or _socket_timeout(client) or 1.0
        self._wait_s = socket_timeout * 2 + 1.0

    def _server_for(self, key: str) -> _Server:
        if not self._cluster:
            name, pool = None, self._client.connection_pool
        else:
            node = self._client.get_node_from_key(key)
            name = node.name
            server = self._servers.get(name)
            if server is not None:
                return server
            pool = (node.redis_connection or self._client.get_redis_connection(node)).connection_pool
        server = self._servers.get(name)
        if server is None:
            server = self._servers[name] = _Server(_ConnectionStack(pool, self._max_idle))
        return server

    def run(self, keys: list, args: list):
        """EVALSHA keys/args; raises ScriptCallError on any Redis or socket failure."""
        try:
            server = self._server_for(keys[0])
        except Exception as exc:  # noqa: BLE001 - nothing was sent
            raise ScriptCallError(exc, maybe_applied=False) from exc
        call = _Call(keys, args)
        if server.join(call):
            time.sleep(0)  # let callers that are ready to run join this batch
            self._flush(server.stack, server.take())
        elif not call.done.wait(self._wait_s):
            raise ScriptCallError(TimeoutError("no answer for the batched call"), maybe_applied=True)
        if call.error is not None:
            raise call.error
        return call.reply

    def _flush(self, stack: _ConnectionStack, batch: list) -> None:
        """Sends a batch, reads every reply, and wakes every caller (always)."""
        try:
            self._exchange(stack, batch)
        finally:
            for call in batch:
                if call.reply is None and call.error is None:
                    call.error = ScriptCallError(RuntimeError("batch aborted"), maybe_applied=True)
                call.done.set()

    def _exchange(self, stack: _ConnectionStack, batch: list) -> None:  # noqa: C901
        try:
            conn = stack.get()
        except Exception as exc:  # noqa: BLE001 - nothing was sent
            for call in batch:
                call.error = ScriptCallError(exc, maybe_applied=False)
            return
        pending = batch
        try:
            for attempt in range(2):
                conn.send_packed_command(
                    _pack(conn, [("EVALSHA", self.sha, len(c.keys), *c.keys, *c.args) for c in pending])
                )
                retry, redirected = [], []
                for call in pending:
                    try:
                        call.reply = conn.read_response()
                    except NoScriptError:
                        retry.append(call)
                    except (MovedError, AskError, TryAgainError, ClusterDownError):
                        redirected.append(call)
                    except ResponseError as exc:  # e.g. OOM or a script error: a clean reply
                        call.error = ScriptCallError(exc, maybe_applied=False)
                for call in redirected:
                    self._run_by_client(call)
                if not retry or attempt:
                    break
                # A fresh server (restart, failover, SCRIPT FLUSH): load once, resend.
                conn.send_command("SCRIPT", "LOAD", self._lua)
                conn.read_response()
                pending = retry
        except BaseException as exc:  # timeouts, resets, gevent.Timeout
            conn.disconnect()
            if isinstance(exc, Exception):
                timed_out = isinstance(exc, (RedisTimeoutError, TimeoutError))
                for call in batch:
                    if call.reply is None and call.error is None:
                        call.error = ScriptCallError(exc, maybe_applied=timed_out)
                return
            raise
        stack.put(conn)  # every reply was read: the connection is clean

    def _run_by_client(self, call: _Call) -> None:
        """The full client: it follows Cluster redirects and refreshes the slot map."""
        keys, args = call.keys, call.args
        try:
            try:
                call.reply = self._client.evalsha(self.sha, len(keys), *keys, *args)
            except NoScriptError:
                self._client.script_load(self._lua)
                call.reply = self._client.evalsha(self.sha, len(keys), *keys, *args)
        except Exception as exc:  # noqa: BLE001
            call.error = ScriptCallError(exc, maybe_applied=False)


def _pack(conn, commands: list) -> list:
    """The commands in RESP, as the chunks send_packed_command takes. With hiredis,
    its packer directly: what redis-py's pack_commands does then too, without its
    per-argument generator in Python (about half of packing a spend with two descriptors)."""
    if HIREDIS_AVAILABLE:
        return [b"".join([hiredis.pack_command(command) for command in commands])]
    return conn.pack_commands(commands)


def _socket_timeout(client) -> float | None:
    try:
        if isinstance(client, RedisCluster):
            return client.get_default_node().redis_connection.connection_pool.connection_kwargs.get("socket_timeout")
        return client.connection_pool.connection_kwargs.get("socket_timeout")
    except Exception:  # noqa: BLE001 - only a bound for waiting
        return None
