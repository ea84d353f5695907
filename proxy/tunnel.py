"""Tunnelling: a WebSocket upgrade the PDP allowed, handed through to the upstream both ways.

The upgrade takes a connection of its own to an endpoint (outside the pool,
the breaker and the outstanding counts: a tunnel lasts as long as its client
wants, not one request); at most MAX_TUNNELS of them per worker (`Tunnels`).
When the upstream answers 101, the bytes flow both ways until either side
closes or TUNNEL_IDLE_S passes without a byte; any other answer is passed on
and the connection closes.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import gevent

from . import forwarding, http11
from .answers import Answers, send

if TYPE_CHECKING:
    from .cluster import Cluster
    from .gateway import Exchange
    from .routes import Timeouts

TUNNEL_IDLE_S = 3600.0
_PIECE = 65536


class Tunnels:
    """How many tunnels this worker has open, at most `limit` (MAX_TUNNELS): their
    upstream connections are outside the pool and the breaker, so nothing else bounds them."""

    __slots__ = ("limit", "open")

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


def is_websocket(req: http11.Request) -> bool:
    """Whether the request asks for a WebSocket upgrade (GET, Upgrade: websocket, Connection: upgrade)."""
    if req.method != "GET" or (req.header("upgrade") or "").lower() != "websocket":
        return False
    return "upgrade" in forwarding.connection_tokens(req.headers)


def tunnel(
    ex: Exchange,
    sock: socket.socket,
    reader: http11.SocketReader,
    cluster: Cluster,
    headers: list[tuple[str, str]],
    timeouts: Timeouts,
    answers: Answers,
) -> None:
    """The upgrade request with `headers` (the upstream's) to an endpoint, then the tunnel."""
    headers = headers + [("connection", "Upgrade"), ("upgrade", ex.request.header("upgrade"))]
    target = ex.route.upstream_path(ex.path) + ("?" + ex.query if ex.query else "")
    endpoint = cluster.pick(headers)
    if endpoint is None:
        return answers.problem(ex, sock, 503, f"cluster {cluster.name}: no healthy upstream", "no-upstream")
    ex.upstream_url = endpoint.url
    try:
        up = endpoint.open_connection()
    except OSError as exc:
        endpoint.record(False)
        return answers.problem(ex, sock, 502, f"cluster {cluster.name}: connect failed ({exc})", "upstream-connect")
    try:
        up.settimeout(timeouts.read_s)
        up.sendall(http11.render_request_head(ex.request.method, target, headers))
        up_reader = http11.SocketReader(up)
        resp = http11.parse_response_head(up_reader.read_head(65536), "GET")
        ex.status = resp.status
        if resp.status != 101:
            return _pass_on_refusal(ex, sock, up_reader, resp)
        raw_headers = [(n, v) for n, v in resp.headers]
        send(sock, http11.render_head(101, raw_headers))
        ex.keep_alive = False
        up.settimeout(TUNNEL_IDLE_S)
        sock.settimeout(TUNNEL_IDLE_S)
        _pump_both_ways(reader, sock, up_reader, up)
    except socket.timeout:
        if not ex.status:
            return answers.problem(ex, sock, 504, "upstream did not answer the upgrade", "upstream-timeout")
    except (OSError, http11.ProtocolError, http11.ConnectionClosed) as exc:
        if not ex.status:
            return answers.problem(ex, sock, 502, f"upgrade failed: {exc}", "upstream-broken")
    finally:
        up.close()


def _pass_on_refusal(ex: Exchange, sock: socket.socket, up_reader: http11.SocketReader, resp) -> None:
    """The upstream's answer to an upgrade it did not accept, then the connection closes.

    Streamed, never buffered: any client can add Upgrade headers to any GET of
    a route that takes WebSockets, so this may be a download of any size.
    Without a known length it ends with the connection."""
    out = forwarding.response_headers(resp.headers, ex.route) + [("connection", "close")]
    if resp.body_length is not None:
        out.append(("content-length", str(resp.body_length)))
    ex.keep_alive = False
    send(sock, http11.render_head(resp.status, out))
    if resp.body_length != 0:
        for piece in http11.response_body(up_reader, resp):
            send(sock, piece)
            ex.bytes_out += len(piece)


def _pump_both_ways(
    client_reader: http11.SocketReader,
    client_sock: socket.socket,
    up_reader: http11.SocketReader,
    up_sock: socket.socket,
) -> None:
    """gevent's portforwarder loop: two forwarders, first to finish ends both."""

    def pump(reader, dst):
        try:
            while True:
                data = reader.read_some(_PIECE)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    forwarders = [gevent.spawn(pump, client_reader, up_sock), gevent.spawn(pump, up_reader, client_sock)]
    gevent.joinall(forwarders, count=1)
    gevent.joinall(forwarders, timeout=5)
    gevent.killall(forwarders, block=False)
