"""Processes: a pre-fork master and gevent workers sharing ports with SO_REUSEPORT.

Each worker binds its own listening socket on the same port (SO_REUSEPORT), so
the kernel spreads new connections evenly over the workers; a shared accept
socket lets whichever gevent loop wakes first take a burst of them.
SIGTERM: stop accepting, let in-flight requests finish within GRACE_PERIOD_S,
exit 0. SIGHUP: reload the TLS certificate and the routes file (a bad one keeps
the last good routes).
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config
    from .tls import ServerTls

from servicekit.problem import problem_body

log = logging.getLogger("lucid.proxy.server")


def bind_listener(host: str, port: int, reuse_port: bool = True, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(4096)  # capped by net.core.somaxconn; bursts of new connections queue here
    return sock


def check_ports_free(config: Config) -> None:
    """Fails at startup, in the master, with a clear line when a port is taken."""
    ports = [("HTTP_PORT", config.http_port)]
    if config.ssl_enabled:
        ports.append(("HTTPS_PORT", config.https_port))
    for env, port in ports:
        try:
            # With SO_REUSEPORT, the probe shares the port only with a proxy that also set it
            # (same user): a new generation can start beside the old one, which then gets
            # SIGTERM and drains (a restart without refused connections); anything else
            # holding the port still fails here.
            probe = bind_listener(config.listen_host, port, reuse_port=config.reuse_port, listen=False)
        except OSError as exc:
            raise SystemExit(
                f"lucid-proxy: cannot listen on {config.listen_host}:{port} ({env}): {exc.strerror}"
            ) from None
        probe.close()


class Worker:
    """One gevent process serving the listeners with a Gateway."""

    def __init__(
        self,
        config: Config,
        build_gateway: Callable[[], tuple],
        tls: ServerTls | None = None,
        inherited: dict[int, socket.socket] | None = None,
    ):
        self._config = config
        self._inherited = inherited or {}
        self._build_gateway = build_gateway
        self._tls = tls
        self._servers = []
        self._active = 0

    def run(self) -> int:
        import gevent
        from gevent.event import Event
        from gevent.server import StreamServer

        config = self._config
        self.gateway, self._metrics, background = self._build_gateway()
        if self._tls is not None:
            watcher = self._tls.watch(config.ssl_reload_interval_s)
            if watcher is not None:
                background.append(watcher)
        from servicekit import heap

        heap.settle()
        listeners = [(config.http_port, "http")]
        if config.ssl_enabled:
            listeners.append((config.https_port, "https"))
        for port, scheme in listeners:
            sock = self._inherited.get(port) or bind_listener(config.listen_host, port)
            handler = self._handler(scheme)
            server = StreamServer(sock, handler)
            server.start()
            self._servers.append((server, handler))
        self._stopped = Event()
        gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(self._drain))
        gevent.signal_handler(signal.SIGINT, lambda: gevent.spawn(self._drain))
        gevent.signal_handler(signal.SIGHUP, self._reload)
        self._stopped.wait()
        for greenlet in background:
            greenlet.kill(block=False)
        return 0

    def _handler(self, scheme):
        config = self._config
        tls = self._tls if scheme == "https" else None

        def handle(sock, address):
            # Once accepted, even while draining, a connection's first request is answered.
            if self._active >= config.max_connections:
                _refuse(sock)
                return
            self._active += 1
            self._metrics.connections.inc()
            try:
                if tls is not None:
                    sock.settimeout(config.header_read_timeout_s)
                    try:
                        sock = tls.context.wrap_socket(sock, server_side=True)
                    except (OSError, ValueError):
                        sock.close()
                        return  # failed handshake (e.g. a TLS version below the minimum)
                self.gateway.serve_connection(sock, address, scheme)
            finally:
                self._active -= 1
                self._metrics.connections.dec()

        return handle

    def _reload(self):
        if self._tls is not None:
            self._tls.reload()
        reload_routes = getattr(self.gateway, "reload_routes", None)
        if reload_routes is not None:
            reload_routes()

    def _drain(self):
        import gevent

        if self.gateway.draining:
            return
        # Closing an SO_REUSEPORT listener resets the connections in its accept
        # queue (clients that connected a moment ago, often already sending): the
        # queue is emptied first and each of them answered once, connection: close.
        queued = []
        for server, handler in self._servers:
            server.stop_accepting()
            queued += [(handler, conn, address) for conn, address in _accept_queued(server)]
            server.close()
        self.gateway.draining = True
        for handler, conn, address in queued:
            gevent.spawn(handler, conn, address)
        gevent.sleep(0)  # they start (and count as active) before the wait below
        deadline = time.monotonic() + self._config.grace_period_s
        # An idle keep-alive connection may have a request on its way: shut at
        # once, that request is lost (clients retry only some). They get a moment
        # first; a request in it is answered with connection: close.
        if self.gateway.idle:
            gevent.sleep(min(_IDLE_GRACE_S, self._config.grace_period_s))
        for idle in list(self.gateway.idle):
            if _has_bytes(idle):
                continue  # its next request is already here: served, then closed
            try:
                idle.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        while self._active > 0 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if self._active:
            log.warning("grace period over with %d connection(s) still open", self._active)
        self._stopped.set()


_IDLE_GRACE_S = 1.0


def _accept_queued(server) -> list:
    """Every connection waiting in a StreamServer's accept queue, without waiting
    for more (do_read is gevent's own accept step: None once the queue is empty)."""
    accepted = []
    while True:
        try:
            got = server.do_read()
        except OSError:
            return accepted
        if got is None:
            return accepted
        accepted.append(got)


def _has_bytes(sock) -> bool:
    """Readable now (a request, or the client's close)? Asked of the kernel with
    the unpatched poll: a gevent recv would wait, beside the connection's own
    greenlet, for bytes that may never come."""
    from gevent.monkey import get_original

    try:
        poller = get_original("select", "poll")()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed meanwhile: nothing to serve
        return False


def _refuse(sock):
    body = problem_body(503, "Service Unavailable", "too many connections", "about:blank")
    try:
        sock.sendall(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
    except OSError:
        pass
    finally:
        sock.close()


class Master:
    """Forks the workers, restarts any that die, relays SIGHUP, and drains on SIGTERM."""

    def __init__(self, config: Config, run_worker: Callable[[], int], on_hup: Callable[[], None] | None = None):
        self._config = config
        self._run_worker = run_worker
        self._hup_hook = on_hup  # the master's part of a SIGHUP (re-reading the routes for later forks)
        self._children = {}
        self.inherited = {}  # port -> listening socket shared by all workers (PROXY_REUSE_PORT=false)
        self._stopping = False
        self._hup = False

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="lucid-proxy-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            if not self._config.reuse_port:
                self.inherited[self._config.http_port] = bind_listener(
                    self._config.listen_host, self._config.http_port, reuse_port=False
                )
                if self._config.ssl_enabled:
                    self.inherited[self._config.https_port] = bind_listener(
                        self._config.listen_host, self._config.https_port, reuse_port=False
                    )
            for _ in range(self._config.workers):
                self._spawn()
            log.warning(
                "proxy listening on %s:%s%s with %d worker(s)",
                self._config.listen_host,
                self._config.http_port,
                f" and https {self._config.https_port}" if self._config.ssl_enabled else "",
                self._config.workers,
            )
            while not self._stopping:
                self._reap(respawn=True)
                if self._hup:
                    self._hup = False
                    if self._hup_hook is not None:
                        self._hup_hook()
                    self._signal_all(signal.SIGHUP)
                time.sleep(0.1)
            for sock in self.inherited.values():
                sock.close()  # the master's copy: new connections stop queueing here
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + self._config.grace_period_s + 5
            while self._children and time.monotonic() < deadline:
                self._reap(respawn=False)
                time.sleep(0.05)
            if self._children:
                self._signal_all(signal.SIGKILL)
                self._reap(respawn=False)
            return 0
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _spawn(self):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                code = self._run_worker()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker crashed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._children[pid] = time.monotonic()

    def _reap(self, respawn):
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            started = self._children.pop(pid, None)
            try:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid)
            except Exception:  # noqa: BLE001 - metrics cleanup must never stop the master
                pass
            if respawn and not self._stopping:
                log.error("worker %d exited (%s); starting another", pid, status)
                if started is not None and time.monotonic() - started < 1.0:
                    time.sleep(1.0)  # a crash loop should not spin
                self._spawn()

    def _signal_all(self, sig):
        for pid in list(self._children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _on_stop(self, *_):
        self._stopping = True

    def _on_hup(self, *_):
        self._hup = True
