"""One client connection, request after request, through the proxy's stages.

The stages are the Gateway's methods of the same names, in this order; any of
them may answer the client itself (proxy/answers.py), and the request stops there:

1. `read_request`: the next request head, read within HEADER_READ_TIMEOUT_S and
   parsed strictly (proxy/http11.py); a bad one is answered and ends the connection.
2. `admit`: at most MAX_ACTIVE requests of this worker go on at once
   (proxy/admission.py); the others wait their turn or are shed (503). A
   WebSocket upgrade holds its turn until its tunnel starts, not after.
3. `route`: CONNECT refused (501), the normalized target, the body size, the
   matching route (proxy/routes.py; TRACE only where a route names it), the
   redirect to HTTPS, the client's address
   (proxy/forwarding.py) and CORS preflights.
4. `decide`: the decision (proxy/decisions.py: the PDP's, or a cached verdict
   or a quota lease's for a request the PDP could not tell apart); 400 or 503
   when there is none, the PDP's answer when it denies.
5. `answer_meta`: the meta endpoints (proxy/meta.py), answered by the proxy itself.
6. `forward`: the upstream's headers, then relaying (proxy/relay.py) or, for
   an allowed WebSocket upgrade, tunnelling (proxy/tunnel.py).
7. `log_access`: the access log line and the request metrics, whatever happened.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import gevent

from servicekit.request_path import AmbiguousPath, normalize_target
from servicekit.trace_context import parse as parse_trace_context
from servicekit.tracing import NoTracer

from . import forwarding, http11, problems
from .accesslog import redact_query
from .answers import Abort, Answers
from .decisions import Decisions
from .pdp import PdpRejected
from .relay import Relay
from .tunnel import Tunnels, is_websocket, tunnel

if TYPE_CHECKING:
    from servicekit.tracing import OtelTracer

    from .accesslog import AccessLog
    from .admission import Admission
    from .cluster import Cluster
    from .config import Config
    from .forwarding import ClientAddress
    from .leases import LeaseStore
    from .meta import MetaEndpoints
    from .metrics import Metrics
    from .pdp import PdpClient, VerdictCache
    from .routes import RouteTable

log = logging.getLogger("lucid.proxy.gateway")


def _nothing() -> None:
    pass


class _Turn:
    """One request's admission turn, given back once (before a tunnel, or when the request ends)."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission):
        self._admission = admission

    def give_back(self) -> None:
        if self._admission is not None:
            self._admission, admission = None, self._admission
            admission.leave()


class Exchange:
    """What the proxy learns about one request, for the stages and the access log."""

    __slots__ = (
        "request",
        "peer_ip",
        "scheme",
        "request_id",
        "path",
        "query",
        "route",
        "decision",
        "client_ip",
        "status",
        "bytes_in",
        "bytes_out",
        "started",
        "pdp_s",
        "upstream_s",
        "upstream_url",
        "body_consumed",
        "keep_alive",
        "forwarded",
        "error",
        "upstream_headers",
        "trace",
        "upstream_trace",
    )

    def __init__(self, request: http11.Request, peer_ip: str, scheme: str, started: float):
        self.request = request
        self.peer_ip = peer_ip
        self.scheme = scheme
        self.started = started
        self.request_id = forwarding.request_id(request.header("x-request-id"))
        self.path = None
        self.query = ""
        self.route = None
        self.decision = None
        self.client_ip = peer_ip
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.pdp_s = None
        self.upstream_s = None
        self.upstream_url = None
        self.body_consumed = not request.has_body()
        self.keep_alive = request.keep_alive
        self.forwarded = None
        self.error = None
        self.upstream_headers = ()
        self.trace = None  # this request's span context (pdp/trace_context.TraceContext)
        self.upstream_trace = None  # the upstream call's, sent to the upstream as traceparent


class Gateway:
    """The per-worker request pipeline; everything it needs is passed in."""

    def __init__(
        self,
        config: Config,
        routes: RouteTable,
        clusters: Mapping[str, Cluster],
        pdp: PdpClient,
        verdicts: VerdictCache | None,
        client_address: ClientAddress,
        meta: MetaEndpoints,
        metrics: Metrics,
        access_log: AccessLog,
        clock: Callable[[], float] = time.monotonic,
        tracer: NoTracer | OtelTracer | None = None,
        leases: LeaseStore | None = None,
        admission: Admission | None = None,
    ):
        self._config = config
        self._routes = routes
        self._clusters = clusters
        self._admission = admission  # proxy/admission.py Admission, or None
        self._client_address = client_address
        self._meta = meta
        self._metrics = metrics
        self._access_log = access_log
        self._clock = clock
        self._tracer = tracer or NoTracer()
        self._answers = Answers()
        self._decisions = Decisions(
            pdp, verdicts, leases, metrics, clock, self._tracer, pdp_settable=config.decision_header_names
        )
        self._relay = Relay(config, metrics, self._answers, clock)
        self._tunnels = Tunnels(config.max_tunnels)
        self.idle = set()  # sockets waiting for their next request (closed first on drain)

    def swap_routes(self, routes: RouteTable) -> None:
        """A reloaded route table (SIGHUP): requests matched from now on use it."""
        self._routes = routes

    @property
    def draining(self) -> bool:
        """Set when the worker stops: no new request on a connection, every response closes it."""
        return self._answers.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._answers.draining = value

    # -- the connection -------------------------------------------------------------------

    def serve_connection(self, sock: socket.socket, peer: tuple | str, scheme: str) -> None:
        """Serves requests on one accepted connection until it closes, or until the
        worker drains: its first request is answered even then (connection: close)."""
        config = self._config
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(config.keepalive_timeout_s)
        reader = http11.SocketReader(sock)
        peer_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        first = True
        try:
            while first or not self._answers.draining:
                first = False
                self.idle.add(sock)
                try:
                    reader.wait_readable()
                except (http11.ConnectionClosed, OSError):
                    return
                finally:
                    self.idle.discard(sock)
                started = self._clock()
                request = self.read_request(sock, reader, peer_ip)
                if request is None:
                    return
                exchange = Exchange(request, peer_ip, scheme, started)
                try:
                    incoming = parse_trace_context(request.header("traceparent"), request.header("tracestate"))
                    with self._tracer.span(
                        "proxy.request", incoming, "server", {"http.request.method": request.method}
                    ) as span:
                        exchange.trace = span.context
                        self.admit(exchange, sock, reader)
                        span.set("http.response.status_code", exchange.status)
                except Abort:
                    return
                except Exception:  # noqa: BLE001 - a bug must cost one request, not the worker
                    log.exception("request %s failed", exchange.request_id)
                    if not exchange.status:
                        exchange.keep_alive = False
                        try:
                            self._answers.problem(exchange, sock, 500, "internal error", "internal")
                        except Abort:
                            pass
                    return
                finally:
                    self.log_access(exchange)
                if not exchange.keep_alive or not exchange.body_consumed:
                    return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    # -- the stages -----------------------------------------------------------------------

    def read_request(self, sock: socket.socket, reader: http11.SocketReader, peer_ip: str) -> http11.Request | None:
        """The next request head; None when the connection ends (a bad head has been answered and logged)."""
        config = self._config
        try:
            with gevent.Timeout(config.header_read_timeout_s, _HeadTimeout()):
                head = reader.read_head(config.max_header_bytes)
            return http11.parse_request_head(head)
        except _HeadTimeout:
            self._reject(sock, peer_ip, 408, "the request head was not received in time", "header-timeout")
        except http11.ProtocolError as exc:
            self._reject(sock, peer_ip, exc.status, exc.detail, "bad-request")
        except (http11.ConnectionClosed, OSError):
            pass
        except Exception:  # noqa: BLE001 - a parser bug must still answer, never drop the client
            log.exception("request head could not be parsed")
            self._reject(sock, peer_ip, 400, "malformed request head", "bad-request")
        return None

    def _reject(self, sock, peer_ip, status, detail, slug):
        """Answers a request that could not even be parsed, and logs it (smuggling attempts show here)."""
        rid = forwarding.request_id(None)
        status, headers, body = problems.problem(status, detail, rid, slug)
        try:
            sock.sendall(
                http11.render_head(status, headers + [("content-length", str(len(body))), ("connection", "close")])
                + body
            )
        except OSError:
            pass
        self._metrics.count_request("-", status)
        self._access_log.write(
            {
                "request_id": rid,
                "client_ip": peer_ip,
                "method": None,
                "path": None,
                "route": "-",
                "status": status,
                "error": detail,
            }
        )

    def admit(self, ex: Exchange, sock: socket.socket, reader: http11.SocketReader) -> None:
        """The stages after this one for at most max_active requests of this worker at a time.

        With hundreds of connections, letting every request in at once makes
        each PDP answer wait behind all the others' work in the hub's run
        queue, and timeouts fire under load alone. The others wait here
        instead, cheaply, in order; one that would wait longer than the queue
        budget is shed at once (503, Retry-After), not after waiting.
        A WebSocket upgrade takes a turn too (its route, decision and meta
        stages load the PDP like any request) and gives it back before its
        tunnel starts: a tunnel lasts as long as its client wants."""
        if self._admission is None:
            return self._admitted(ex, sock, reader, _nothing)
        if not self._admission.enter():
            self._metrics.pdp_errors.labels("admission").inc()  # not "shed": that is the PDP client's own
            ex.keep_alive = False
            return self._answers.problem(
                ex, sock, 503, "too many requests waiting; retry shortly", "overloaded", extra=[("retry-after", "1")]
            )
        turn = _Turn(self._admission)
        try:
            return self._admitted(ex, sock, reader, turn.give_back)
        finally:
            turn.give_back()

    def _admitted(self, ex, sock, reader, give_back_turn):
        """The stages from `route` on; each but the last returns True when it has answered."""
        if self.route(ex, sock) or self.decide(ex, sock) or self.answer_meta(ex, sock):
            return
        self.forward(ex, sock, reader, give_back_turn)

    def route(self, ex: Exchange, sock: socket.socket) -> bool:
        """Finds the request's route; answers what needs no decision (True then)."""
        req = ex.request
        if req.method == "CONNECT":
            # A reverse proxy opens no tunnels. Refused before the target is read, so
            # `CONNECT host:443` and `CONNECT /path` get the same answer; the bytes a
            # client would send next are meant for a tunnel, so the connection closes.
            ex.keep_alive = False
            return self._stop(ex, sock, 501, "CONNECT is not served: this is a reverse proxy", "method-not-implemented")
        try:
            ex.path, ex.query = normalize_target(req.target)
        except AmbiguousPath as exc:
            return self._stop(ex, sock, 400, str(exc), "ambiguous-path")
        if req.body_length and req.body_length > self._config.max_body_bytes:
            return self._stop(
                ex, sock, 413, f"request body exceeds {self._config.max_body_bytes} bytes", "body-too-large"
            )
        route, miss = self._routes.match(req.method, ex.path)
        if route is None:
            if miss == 405 and req.method == "TRACE":
                return self._stop(ex, sock, 405, "TRACE is served only on a route whose methods name it", "no-route")
            return self._stop(ex, sock, miss, "no route for this method and path", "no-route")
        ex.route = route
        if self._config.http_redirect_to_https and ex.scheme == "http" and not route.meta:
            # Meta endpoints stay on plain HTTP for probes; everything else moves to TLS.
            return self._redirect_to_https(ex, sock)
        host = req.header("host", "")
        ex.client_ip, xff, proto, fwd_host = self._client_address.resolve(ex.peer_ip, req.headers, ex.scheme, host)
        ex.forwarded = (xff, proto, fwd_host)
        if (
            route.cors
            and req.method == "OPTIONS"
            and req.header("origin")
            and req.header("access-control-request-method")
        ):
            return self._answer_preflight(ex, sock)
        return False

    def decide(self, ex: Exchange, sock: socket.socket) -> bool:
        """Sets the request's decision; answers when there is none or it denies (True then)."""
        try:
            decision = self._decisions.decide(ex)
        except PdpRejected as exc:
            return self._stop(ex, sock, 400, str(exc), "unjudgeable-request")
        if decision is None:
            # Retry-After: a shed or a timeout is load, worth retrying in a second.
            return self._stop(
                ex,
                sock,
                503,
                "the policy decision point is unavailable",
                "pdp-unavailable",
                extra=[("retry-after", "1")],
            )
        ex.decision = decision
        if not decision.allow:
            return self._stop(
                ex,
                sock,
                decision.status,
                decision.reason or "denied by policy",
                "denied",
                extra=list(decision.response_headers.items()),
            )
        return False

    def answer_meta(self, ex: Exchange, sock: socket.socket) -> bool:
        """Answers a meta route's request itself (True then)."""
        if not ex.route.meta:
            return False
        req = ex.request
        answer = self._meta.handle(req.method, ex.path)
        if answer is None:
            return self._stop(ex, sock, 404, "no such meta endpoint", "no-route")
        status, headers, body = answer
        self._answers.answer(
            ex,
            sock,
            status,
            headers + list(ex.decision.response_headers.items()),
            b"" if req.method == "HEAD" else body,
        )
        return True

    def forward(
        self,
        ex: Exchange,
        sock: socket.socket,
        reader: http11.SocketReader,
        give_back_turn: Callable[[], None] = _nothing,
    ) -> None:
        """The request to its cluster and the answer back: relayed, or tunnelled for a WebSocket
        upgrade (whose admission turn is given back first, with `give_back_turn`)."""
        route = ex.route
        cluster = self._clusters.get(route.cluster)
        if cluster is None:  # the route was matched before a reload removed its cluster
            self._stop(ex, sock, 503, f"cluster {route.cluster}: removed by a routes reload", "no-upstream")
            return None
        timeouts = route.timeouts or cluster.spec.timeouts
        if route.websocket and is_websocket(ex.request):
            return self._tunnel(ex, sock, reader, cluster, timeouts, give_back_turn)
        with self._tracer.span("proxy.upstream", ex.trace, "client", {"lucid.cluster": route.cluster}) as span:
            ex.upstream_trace = span.context
            headers = ex.upstream_headers = self._upstream_headers(ex, cluster)
            return self._relay.relay(ex, sock, reader, cluster, headers, timeouts)

    def _tunnel(self, ex, sock, reader, cluster, timeouts, give_back_turn) -> None:
        """An upgrade within MAX_TUNNELS, refused before the upstream is contacted when they are all open."""
        if not self._tunnels.take():
            ex.keep_alive = False
            self._stop(
                ex,
                sock,
                503,
                f"too many WebSocket tunnels open ({self._tunnels.limit}); retry shortly",
                "tunnels-full",
                extra=[("retry-after", "1")],
            )
            return
        try:
            give_back_turn()  # the turn was for the stages; a tunnel lasts as long as its client wants
            with self._tracer.span("proxy.upstream", ex.trace, "client", {"lucid.cluster": ex.route.cluster}) as span:
                ex.upstream_trace = span.context
                headers = ex.upstream_headers = self._upstream_headers(ex, cluster)
                tunnel(ex, sock, reader, cluster, headers, timeouts, self._answers)
        finally:
            self._tunnels.give_back()

    def log_access(self, ex: Exchange) -> None:
        """The access log line and the request metrics."""
        route_name = ex.route.name if ex.route else "-"
        status = ex.status or 499
        elapsed = self._clock() - ex.started
        self._metrics.count_request(route_name, status, elapsed)
        if not self._access_log.enabled:
            return  # the record is not built for nobody
        decision = ex.decision
        self._access_log.write(
            {
                "request_id": ex.request_id,
                "trace_id": ex.trace.trace_id if ex.trace else None,
                "client_ip": ex.client_ip,
                "method": ex.request.method,
                "path": (ex.path or "-") + ("?" + redact_query(ex.query) if ex.query else ""),
                "route": route_name,
                "status": status,
                "bytes_in": ex.bytes_in,
                "bytes_out": ex.bytes_out,
                "total_ms": round(elapsed * 1000, 3),
                "upstream_ms": round(ex.upstream_s * 1000, 3) if ex.upstream_s is not None else None,
                "pdp_ms": round(ex.pdp_s * 1000, 3) if ex.pdp_s is not None else None,
                "decision_id": decision.decision_id if decision else None,
                "cached": decision.cached if decision else False,
                "subject": decision.headers.get("x-user-id") if decision else None,
                "upstream": ex.upstream_url,
                "error": ex.error,
            }
        )

    # -- what the stages answer -----------------------------------------------------------

    def _stop(self, ex, sock, status, detail, slug, extra=()) -> bool:
        """A problem answer: the request stops at this stage."""
        self._answers.problem(ex, sock, status, detail, slug, extra)
        return True

    def _redirect_to_https(self, ex, sock) -> bool:
        # PUBLIC_HOST, never the client's Host: a forged Host must not make the
        # gateway send anyone elsewhere. The normalized target, never the raw one.
        location = f"https://{self._config.public_host}{ex.path}{'?' + ex.query if ex.query else ''}"
        self._answers.answer(ex, sock, 308, [("location", location)], b"")
        return True

    def _answer_preflight(self, ex, sock) -> bool:
        # Answers.answer adds the allowed origin's CORS headers (once).
        cors = ex.route.cors
        headers = []
        if cors.allows(ex.request.header("origin")):
            headers = [
                ("access-control-allow-methods", ", ".join(cors.allow_methods)),
                ("access-control-allow-headers", ", ".join(cors.allow_headers)),
                ("access-control-max-age", str(cors.max_age_s)),
            ]
        self._answers.answer(ex, sock, 204, headers, b"")
        return True

    def _upstream_headers(self, ex, cluster) -> list[tuple[str, str]]:
        """The client's headers as the upstream gets them, with the PDP's and the proxy's own."""
        req = ex.request
        xff, proto, fwd_host = ex.forwarded
        # An HTTP/1.0 client may send no Host; the upstream speaks 1.1 and needs one.
        host = req.header("host") or cluster.endpoints[0].authority
        hop = ex.upstream_trace or ex.trace
        extra = [
            *(hop.headers() if hop else ()),
            ("host", host),
            ("x-request-id", ex.request_id),
            ("x-forwarded-for", xff),
            ("x-forwarded-proto", proto),
            ("x-forwarded-host", fwd_host),
            ("x-real-ip", ex.client_ip),
        ]
        return forwarding.upstream_headers(
            req.headers, ex.decision.headers, ex.route, extra, self._config.decision_header_names
        )


class _HeadTimeout(Exception):
    pass
