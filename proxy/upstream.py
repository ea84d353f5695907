"""Pooled keep-alive HTTP/1.1 exchanges with upstreams and the PDP.

Sockets come from geventhttpclient's ConnectionPool (bounded semaphore + LIFO
queue + liveness check before reuse); the messages are written and read here,
so the proxy knows exactly which phase failed: nothing sent yet (safe to
retry), a timeout (504) or a broken exchange (502). Bodies stream both ways.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import gevent
from gevent import monkey
from geventhttpclient.connectionpool import ConnectionPool

from . import http11

if TYPE_CHECKING:
    from .egress import Socks5Egress
    from .upstream_tls import UpstreamTlsSpec


class ConnectFailed(Exception):
    """No byte of the request reached the upstream; an idempotent request may retry."""


class UpstreamTimeout(Exception):
    """The upstream took longer than the read timeout (504)."""


class UpstreamBroken(Exception):
    """The upstream broke the exchange or sent garbage (502); `tls`: its TLS handshake failed."""

    def __init__(self, message: str = "", tls: bool = False):
        super().__init__(message)
        self.tls = tls


_poll_now = monkey.get_original("select", "select")


class _NoDelayPool(ConnectionPool):
    def after_connect(self, sock):
        # Small heads and bodies go out at once instead of waiting on Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _is_socket_alive(self, sock):
        # The same check as the pool's (an idle keep-alive socket must not be
        # readable), with the unpatched select: gevent's yields to the hub on
        # every call, a context switch per request on the hot path.
        if sock is None:
            return False
        try:
            if sock.fileno() < 0:
                return False
            readable, _, _ = _poll_now([sock], [], [], 0)
            return not readable
        except (OSError, ValueError):
            return False


class _DialingPool(_NoDelayPool):
    """The pool for an https:// endpoint or one behind SOCKS egress.

    The TCP connection goes through `egress` when there is one (the SOCKS
    server resolves the name); TLS, when the endpoint is https://, is set up
    on top of it. Either failing is an OSError, so ConnectFailed (502), never
    a plain or direct fallback."""

    def __init__(self, *args, tls=None, egress=None, label="", **kw):
        super().__init__(*args, **kw)
        self._tls = tls
        self._egress = egress
        self._label = label

    def _create_socket(self):
        if self._egress is not None:
            sock = self._egress.open(self._connection_host, self._connection_port, self.connection_timeout)
            self.after_connect(sock)
        else:
            sock = super()._create_socket()
        if self._tls is not None:
            sock.settimeout(self.connection_timeout)
            sock = self._tls.wrap(sock, self._label)
        sock.settimeout(self.network_timeout)
        return sock


def make_pool(
    url: str,
    size: int,
    connect_s: float,
    read_s: float,
    tls_spec: UpstreamTlsSpec | None = None,
    egress: Socks5Egress | None = None,
    label: str | None = None,
) -> ConnectionPool:
    """A keep-alive pool for one http:// or https:// endpoint, optionally through SOCKS egress.

    `label` names the endpoint in a failed handshake's log line (default: the URL)."""
    host, port = split_host_port(url)
    if url.startswith("https://") or egress is not None:
        tls = None
        if url.startswith("https://"):
            from .upstream_tls import UpstreamTls, UpstreamTlsSpec

            tls = UpstreamTls(tls_spec or UpstreamTlsSpec(), host)
        return _DialingPool(
            host,
            port,
            host,
            port,
            size=size,
            connection_timeout=connect_s,
            network_timeout=read_s,
            tls=tls,
            egress=egress,
            label=label or url,
        )
    return _NoDelayPool(host, port, host, port, size=size, connection_timeout=connect_s, network_timeout=read_s)


def open_connection(pool: ConnectionPool) -> socket.socket:
    """A new connection outside the pool's accounting (a WebSocket tunnel owns it)."""
    return pool._create_socket()


def split_host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return host, int(port or (443 if url.startswith("https://") else 80))


def authority(host: str, port: int) -> str:
    """host:port as a Host header carries it: an IPv6 literal in brackets (RFC 3986 3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect(pool: ConnectionPool, connect_s: float) -> socket.socket:
    """A pooled socket, or ConnectFailed (refused, unreachable, connect timeout)."""
    try:
        with gevent.Timeout(connect_s, ConnectFailed("connect timeout")):
            return pool.get_socket()
    except ConnectFailed:
        raise
    except OSError as exc:
        raise ConnectFailed(str(exc) or exc.__class__.__name__) from None


class Exchange:
    """A response whose head has been read; stream `body()`, then `finish()`."""

    def __init__(
        self,
        pool: ConnectionPool,
        sock: socket.socket,
        reader: http11.SocketReader,
        response: http11.Response,
        started_at: float,
    ):
        self._pool = pool
        self._sock = sock
        self._reader = reader
        self.response = response
        self.started_at = started_at
        self._complete = response.body_length == 0

    def body(self) -> Iterator[bytes]:
        try:
            for piece in http11.response_body(self._reader, self.response):
                yield piece
        except socket.timeout:
            raise UpstreamTimeout("upstream read timeout") from None
        except (OSError, http11.ConnectionClosed, http11.ProtocolError) as exc:
            raise UpstreamBroken(f"upstream broke the response body: {exc}") from None
        self._complete = True

    def finish(self) -> None:
        """Returns the connection to the pool if the exchange ended cleanly, else closes it."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._complete and self.response.keep_alive and self._reader.buffered == 0:
            self._pool.return_socket(sock)
        else:
            self._pool.release_socket(sock)

    def detach(self) -> tuple[socket.socket | None, http11.SocketReader]:
        """Takes the socket out of the pool's hands (a WebSocket tunnel owns it now)."""
        sock, self._sock = self._sock, None
        return sock, self._reader


def send_request(  # noqa: C901
    pool: ConnectionPool,
    head: bytes,
    body: Iterable[bytes] | None,
    chunked: bool,
    connect_s: float,
    read_s: float,
    retry_stale: bool,
    clock: Callable[[], float],
) -> Exchange:
    """Sends one request and reads the response head.

    Args:
        head: the request line and headers, framing included.
        body: an iterator of byte pieces, or None.
        chunked: encode the pieces with chunked transfer coding.
        retry_stale: the request is idempotent and bodiless, so a pooled
            connection that turns out dead may be replaced once.
        clock: a callable returning seconds (monotonic).

    Raises:
        ConnectFailed, UpstreamTimeout, UpstreamBroken; client body errors pass through.
    """
    for attempt in (0, 1):
        sock = connect(pool, connect_s)
        started_at = clock()
        try:
            sock.settimeout(read_s)
            reader = http11.SocketReader(sock)
            sent_ok = True
            try:
                http11.send_all(sock, head)
                if body is not None:
                    _send_body(sock, body, chunked)
            except OSError as exc:
                sent_ok = False
                send_error = exc
            if not sent_ok:
                pool.release_socket(sock)
                sock = None
                if isinstance(send_error, socket.timeout):
                    raise UpstreamTimeout("upstream stopped reading the request")
                if retry_stale and attempt == 0:
                    continue
                raise UpstreamBroken(f"upstream closed while sending: {send_error}")
            try:
                response = _read_final_head(reader, head)
            except http11.ConnectionClosed as exc:
                pool.release_socket(sock)
                sock = None
                if retry_stale and attempt == 0 and exc.clean:
                    continue
                raise UpstreamBroken("upstream closed without a response") from None
            return Exchange(pool, sock, reader, response, started_at)
        except BaseException as exc:
            if sock is not None:
                pool.release_socket(sock)
            if isinstance(exc, (UpstreamBroken, UpstreamTimeout)):
                raise
            if isinstance(exc, socket.timeout):
                raise UpstreamTimeout("upstream read timeout") from None
            if isinstance(exc, OSError):
                raise UpstreamBroken(f"upstream connection failed: {exc}") from None
            if isinstance(exc, http11.ProtocolError):
                raise UpstreamBroken(exc.detail) from None
            raise
    raise UpstreamBroken("upstream closed the connection twice")


def _send_body(sock, body, chunked: bool) -> None:
    if chunked:
        for piece in body:
            if piece:
                http11.send_all(sock, b"%x\r\n%s\r\n" % (len(piece), piece))
        http11.send_all(sock, b"0\r\n\r\n")
    else:
        for piece in body:
            http11.send_all(sock, piece)


def _read_final_head(reader, request_head: bytes):
    method = request_head[: request_head.index(b" ")].decode("ascii")
    while True:
        response = http11.parse_response_head(reader.read_head(65536), method)
        if response.status == 101:
            # Nothing relayed here asked to upgrade (Upgrade is hop-by-hop and
            # dropped; tunnels read their own answer): relaying it would pass
            # the client another protocol on a connection both sides keep.
            raise http11.ProtocolError(502, "upstream switched protocols unasked")
        # Interim answers (103 Early Hints, a stray 100) are not forwarded.
        if 100 <= response.status < 200:
            continue
        return response


def simple_request(
    pool: ConnectionPool, head: bytes, body: bytes, deadline_s: float, queue_s: float | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A small buffered exchange (the PDP, health checks) within one deadline.

    Args:
        deadline_s: from sending the request to the whole answer.
        queue_s: how long to wait for a free pooled connection first (None: within
            the deadline). Waiting for the pool is the proxy's own backpressure,
            not the peer being slow, so it can have its own bound.

    Returns:
        (status, headers, body bytes).
    """
    sock = None
    try:
        if queue_s is not None:
            with gevent.Timeout(queue_s, UpstreamTimeout("no free connection in time")):
                sock = pool.get_socket()
        with gevent.Timeout(deadline_s, UpstreamTimeout("deadline exceeded")):
            if sock is None:
                sock = pool.get_socket()
            http11.send_all(sock, head + body if body else head)
            reader = http11.SocketReader(sock)
            response = _read_final_head(reader, head)
            data = b"".join(http11.response_body(reader, response))
        if response.keep_alive and reader.buffered == 0:
            pool.return_socket(sock)
        else:
            pool.release_socket(sock)
        return response.status, response.headers, data
    except BaseException as exc:
        if sock is not None:
            pool.release_socket(sock)
        if isinstance(exc, UpstreamTimeout):
            raise
        if isinstance(exc, socket.timeout):
            raise UpstreamTimeout("read timeout") from None
        if isinstance(exc, (OSError, http11.ConnectionClosed, http11.ProtocolError)):
            # A refused client certificate under TLS 1.3 arrives as an alert on the first
            # read, after the handshake looked complete: a TLS failure too.
            raise UpstreamBroken(str(exc) or exc.__class__.__name__, tls=_tls_failure(exc)) from None
        raise


def _tls_failure(exc) -> bool:
    """A failed handshake (UpstreamTlsError) or a TLS alert later in the exchange."""
    if getattr(exc, "tls_failure", False):
        return True
    ssl_module = sys.modules.get("ssl")  # not imported: no TLS was ever spoken
    return ssl_module is not None and isinstance(exc, ssl_module.SSLError)
