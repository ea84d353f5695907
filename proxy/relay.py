"""Relaying: a request to an upstream of its cluster, and the upstream's response back to the client.

`Relay.relay` is the forward stage for everything but a WebSocket upgrade:

1. the client's body: buffered up to BODY_BUFFER_BYTES before any upstream
   connection is taken, else streamed (MAX_BODY_BYTES and BODY_READ_TIMEOUT_S
   hold either way);
2. a lease on the cluster (proxy/cluster.py): the breaker, the retry budget and
   the outstanding counts;
3. the request to an endpoint the lease picks, again to another one after a
   connect failure when the request is idempotent and the budget allows;
4. the response, streamed to the client (with the route's header rules and
   JSON redaction), or a 502/503/504 problem when there is none.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import forwarding, http11, response_transform, upstream
from .answers import Abort, Answers, cors_headers, send
from .breaker import BreakerRejected
from .cluster import StreamsFull

if TYPE_CHECKING:
    from .cluster import Cluster, Lease
    from .config import Config
    from .gateway import Exchange
    from .metrics import Metrics
    from .routes import Timeouts

IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
BODY_CHUNK = 65536
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientBodyError(Exception):
    """Reading the client's body failed: `status` is what to answer if nothing was sent yet."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Relay:
    """One worker's relaying of requests to upstreams and of their responses back."""

    def __init__(self, config: Config, metrics: Metrics, answers: Answers, clock: Callable[[], float] = time.monotonic):
        self._config = config
        self._metrics = metrics
        self._answers = answers
        self._clock = clock

    def relay(
        self,
        ex: Exchange,
        sock: socket.socket,
        reader: http11.SocketReader,
        cluster: Cluster,
        headers: list[tuple[str, str]],
        timeouts: Timeouts,
    ) -> None:
        """Sends the request with `headers` (the upstream's, framing still to add) and relays the answer."""
        req = ex.request
        try:
            body, streamed = self._request_body(ex, sock, reader, headers)
        except ClientBodyError as exc:
            ex.keep_alive = False
            return self._answers.problem(ex, sock, exc.status, exc.detail, "bad-body")
        target = ex.route.upstream_path(ex.path) + ("?" + ex.query if ex.query else "")
        head = http11.render_request_head(req.method, target, headers)
        idempotent = req.method in IDEMPOTENT
        try:
            # Each streamed body holds a pooled upstream connection for as long
            # as its client takes: a few slow clients must not take them all.
            lease = cluster.lease(
                timeouts.connect_s,
                cluster.spec.retry_attempts if idempotent else 0,
                self._config.streamed_bodies_per_cluster if streamed else None,
            )
        except StreamsFull:
            ex.keep_alive = False
            return self._answers.problem(
                ex,
                sock,
                503,
                f"cluster {cluster.name}: too many request bodies streaming at once",
                "body-streams-full",
                extra=[("retry-after", "1")],
            )
        except BreakerRejected as exc:
            return self._answers.problem(ex, sock, 503, f"cluster {cluster.name}: {exc.reason}", "circuit-open")
        with lease:
            exchange = self._send(ex, sock, lease, cluster, head, body, req.chunked and streamed, timeouts)
            if exchange is None:
                return
            success = exchange.response.status < 500
            broke = []  # the upstream's body broke off (a reset after the head): a failure too
            try:
                self._relay_response(ex, sock, exchange, broke)
            finally:
                # Recorded once the body is through: an instance that answers a head and
                # then resets is ejected like one that refuses connections.
                lease.answered(success and not broke)
                exchange.finish()

    def _request_body(
        self, ex: Exchange, sock: socket.socket, reader: http11.SocketReader, headers: list[tuple[str, str]]
    ):
        """(body, streamed): the client's body for send_request (None if there is none), its framing
        added to `headers`. Raises ClientBodyError."""
        req = ex.request
        if req.chunked or req.body_length:
            if (req.header("expect") or "").lower() == "100-continue":
                send(sock, _CONTINUE)
            body, streamed = self._buffer_body(ex, sock, reader)
            if not streamed:
                headers.append(("content-length", str(sum(len(p) for p in body))))
            elif req.chunked:
                headers.append(("transfer-encoding", "chunked"))
            else:
                headers.append(("content-length", str(req.body_length)))
            return body, streamed
        if req.method in ("POST", "PUT", "PATCH"):
            headers.append(("content-length", "0"))
        return None, False

    def _send(
        self,
        ex: Exchange,
        sock: socket.socket,
        lease: Lease,
        cluster: Cluster,
        head: bytes,
        body,
        chunked: bool,
        timeouts: Timeouts,
    ) -> upstream.Exchange | None:
        """The upstream's response head, from an endpoint the lease picks (another after a connect
        failure, if it may retry); None when there is none and the client has had a problem answer."""
        idempotent = ex.request.method in IDEMPOTENT
        last_error = None
        while True:
            endpoint = lease.pick(ex.upstream_headers)
            if endpoint is None:
                if lease.tried:
                    self._answers.problem(
                        ex,
                        sock,
                        502,
                        f"cluster {cluster.name}: could not connect to any upstream ({last_error})",
                        "upstream-connect",
                    )
                else:
                    self._answers.problem(ex, sock, 503, f"cluster {cluster.name}: no healthy upstream", "no-upstream")
                return None
            ex.upstream_url = endpoint.url
            try:
                started = self._clock()
                exchange = upstream.send_request(
                    endpoint.pool,
                    head,
                    body,
                    chunked,
                    timeouts.connect_s,
                    timeouts.read_s,
                    retry_stale=idempotent and body is None,
                    clock=self._clock,
                )
            except upstream.ConnectFailed as exc:
                last_error = exc
                lease.failed(connect=True)
                if lease.may_retry():
                    self._metrics.retries.labels(cluster.name).inc()
                    continue
                self._answers.problem(
                    ex, sock, 502, f"cluster {cluster.name}: connect failed ({exc})", "upstream-connect"
                )
                return None
            except upstream.UpstreamTimeout as exc:
                lease.failed()
                self._answers.problem(ex, sock, 504, f"cluster {cluster.name}: {exc}", "upstream-timeout")
                return None
            except upstream.UpstreamBroken as exc:
                lease.failed()
                self._answers.problem(ex, sock, 502, f"cluster {cluster.name}: {exc}", "upstream-broken")
                return None
            except ClientBodyError as exc:
                lease.client_failed()
                ex.keep_alive = False
                self._answers.problem(ex, sock, exc.status, exc.detail, "bad-body")
                return None
            ex.upstream_s = self._clock() - started
            self._metrics.observe_upstream(cluster.name, ex.upstream_s)
            return exchange

    # -- the client's body ----------------------------------------------------------------

    def _buffer_body(self, ex: Exchange, sock: socket.socket, reader: http11.SocketReader):
        """Reads up to BODY_BUFFER_BYTES of the client's body before any upstream connection is taken.

        Returns (pieces, streamed): the whole body as a list, or (streamed) an
        iterator of what was read followed by the rest, still to come.
        """
        pieces = self._client_body(ex, sock, reader)
        buffered = []
        size = 0
        for piece in pieces:
            buffered.append(piece)
            size += len(piece)
            if size > self._config.body_buffer_bytes:
                return itertools.chain(buffered, pieces), True
        return buffered, False

    def _client_body(self, ex: Exchange, sock: socket.socket, reader: http11.SocketReader) -> Iterator[bytes]:
        """The client's body as pieces, counted against MAX_BODY_BYTES, within BODY_READ_TIMEOUT_S."""
        req = ex.request
        config = self._config
        limit = config.max_body_bytes
        source = (
            http11.iter_chunked_body(reader, BODY_CHUNK)
            if req.chunked
            else http11.iter_fixed_body(reader, req.body_length, BODY_CHUNK)
        )
        deadline = self._clock() + config.body_read_timeout_s
        total = 0
        try:
            while True:
                # One deadline for the whole body, not per read: a client
                # sending a byte now and then must not hold on for ever.
                sock.settimeout(max(0.001, min(deadline - self._clock(), config.keepalive_timeout_s)))
                try:
                    piece = next(source)
                except StopIteration:
                    break
                total += len(piece)
                if total > limit:
                    raise ClientBodyError(413, f"request body exceeds {limit} bytes")
                ex.bytes_in = total
                yield piece
        except http11.ProtocolError as exc:
            raise ClientBodyError(400, exc.detail) from None
        except socket.timeout:
            raise ClientBodyError(
                408, f"the request body was not received within {config.body_read_timeout_s:g} s"
            ) from None
        except (http11.ConnectionClosed, OSError):
            raise ClientBodyError(400, "the client stopped sending its body") from None
        finally:
            try:
                sock.settimeout(config.keepalive_timeout_s)
            except OSError:
                pass
        ex.body_consumed = True

    # -- the upstream's response ----------------------------------------------------------

    def _relay_response(  # noqa: C901
        self, ex: Exchange, sock: socket.socket, exchange: upstream.Exchange, broke: list | None = None
    ) -> None:
        req = ex.request
        if ex.route.redaction is not None:
            exchange = response_transform.redacting(exchange, ex.route.redaction, req.method, upstream.UpstreamBroken)
        resp = exchange.response
        headers = forwarding.response_headers(resp.headers, ex.route)
        headers.extend(ex.decision.response_headers.items())
        headers.append(("x-request-id", ex.request_id))
        headers.extend(cors_headers(ex))
        no_body = req.method == "HEAD" or resp.status in (204, 304)
        if resp.body_length is not None:
            if not no_body or resp.body_length:
                headers.append(("content-length", str(resp.body_length)))
            framing = "length"
        elif req.version == "HTTP/1.1":
            headers.append(("transfer-encoding", "chunked"))
            framing = "chunked"
        else:
            framing = "close"
            ex.keep_alive = False
        if self._answers.must_close(ex):
            headers.append(("connection", "close"))
        # Original reason phrase is dropped: it is cosmetic and a header-injection surface.
        head = http11.render_head(resp.status, headers)
        if no_body:
            ex.status = resp.status
            send(sock, head)
            return
        pieces = exchange.body()
        try:
            # The head leaves with the first piece of the body: one send for a small response.
            first = next(pieces, b"")
        except upstream.UpstreamTimeout as exc:
            ex.keep_alive = False
            if broke is not None:
                broke.append(exc)
            return self._answers.problem(ex, sock, 504, str(exc), "upstream-timeout")
        except upstream.UpstreamBroken as exc:
            ex.keep_alive = False
            if broke is not None:
                broke.append(exc)
            return self._answers.problem(ex, sock, 502, str(exc), "upstream-broken")
        ex.status = resp.status
        ex.bytes_out = len(first)
        chunked = framing == "chunked"
        if chunked:
            send(sock, head + (b"%x\r\n%s\r\n" % (len(first), first) if first else b""))
        else:
            send(sock, head + first)
        if not first:
            if chunked:
                send(sock, b"0\r\n\r\n")
            return
        try:
            for piece in pieces:
                if chunked:
                    send(sock, b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    send(sock, piece)
                ex.bytes_out += len(piece)
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken) as exc:
            # The head is gone already: all that is left is to cut the response short.
            ex.error = str(exc)
            if broke is not None:
                broke.append(exc)
            raise Abort() from None
        if chunked:
            send(sock, b"0\r\n\r\n")
