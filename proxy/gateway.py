"""One client connection, request after request: read, normalize, decide, forward.

The stages are named by when they run (proxy.py style): `read_request`,
`before_decision`, `decide`, `before_upstream_connection`, `forward`,
`on_access_log`. Any stage may answer the client itself and stop the chain.
"""
import itertools
import logging
from dataclasses import replace
import socket
import time

import gevent
from gevent.event import AsyncResult

from . import forwarding, http11, problems, response_transform, upstream
from .breaker import BreakerRejected
from servicekit.request_path import AmbiguousPath, normalize_target
from servicekit.trace_context import parse as parse_trace_context
from servicekit.tracing import NoTracer
from .pdp import FAIL_OPEN, PdpRejected, PdpUnavailable, verdict_key

log = logging.getLogger("lucid.proxy.gateway")
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
_BODY_CHUNK = 65536
_TUNNEL_IDLE_S = 3600.0


class ClientBodyError(Exception):
    """Reading the client's body failed: `status` is what to answer if nothing was sent yet."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Abort(Exception):
    """The client connection cannot continue (a write failed or a response was cut)."""


class Exchange:
    """What the proxy learns about one request, for the stages and the access log."""

    __slots__ = ("request", "peer_ip", "scheme", "request_id", "path", "query", "route", "decision",
                 "client_ip", "status", "bytes_in", "bytes_out", "started", "pdp_s", "upstream_s",
                 "upstream_url", "body_consumed", "keep_alive", "forwarded", "error", "upstream_headers",
                 "trace", "upstream_trace")

    def __init__(self, request, peer_ip, scheme, started):
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
        self.trace = None           # this request's span context (pdp/trace_context.TraceContext)
        self.upstream_trace = None  # the upstream call's, sent to the upstream as traceparent


class Gateway:
    """The per-worker request pipeline; everything it needs is passed in."""

    def __init__(self, config, routes, clusters, pdp, verdicts, client_address, meta, metrics, access_log,
                 clock=time.monotonic, tracer=None, leases=None, admission=None):
        self._config = config
        self._routes = routes
        self._clusters = clusters
        self._pdp = pdp
        self._verdicts = verdicts
        self._leases = leases  # proxy/leases.py LeaseStore, or None
        self._admission = admission  # proxy/admission.py Admission, or None
        self._client_address = client_address
        self._meta = meta
        self._metrics = metrics
        self._access_log = access_log
        self._clock = clock
        self._tracer = tracer or NoTracer()
        self.draining = False
        self._inflight = {}  # cache key -> AsyncResult of the PDP call in flight for it
        self._lease_inflight = {}  # cache key -> AsyncResult of the lease request in flight for it
        self._unread = frozenset()  # header names the PDP's current revision does not read
        self._unread_revision = None
        self._pdp_warned_at = float("-inf")
        self._pdp_warnings_suppressed = 0
        self.idle = set()  # sockets waiting for their next request (closed first on drain)

    # -- connection loop ------------------------------------------------------------------

    def serve_connection(self, sock, peer, scheme):
        """Serves requests on one accepted connection until it closes."""
        config = self._config
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(config.keepalive_timeout_s)
        reader = http11.SocketReader(sock)
        peer_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        try:
            while not self.draining:
                self.idle.add(sock)
                try:
                    reader.wait_readable()
                except (http11.ConnectionClosed, OSError):
                    return
                finally:
                    self.idle.discard(sock)
                started = self._clock()
                try:
                    with gevent.Timeout(config.header_read_timeout_s, _HeadTimeout()):
                        head = reader.read_head(config.max_header_bytes)
                    request = http11.parse_request_head(head)
                except _HeadTimeout:
                    self._reject(sock, peer_ip, 408, "the request head was not received in time", "header-timeout")
                    return
                except http11.ProtocolError as exc:
                    self._reject(sock, peer_ip, exc.status, exc.detail, "bad-request")
                    return
                except (http11.ConnectionClosed, OSError):
                    return
                except Exception:  # noqa: BLE001 - a parser bug must still answer, never drop the client
                    log.exception("request head could not be parsed")
                    self._reject(sock, peer_ip, 400, "malformed request head", "bad-request")
                    return
                exchange = Exchange(request, peer_ip, scheme, started)
                try:
                    incoming = parse_trace_context(request.header("traceparent"), request.header("tracestate"))
                    with self._tracer.span("proxy.request", incoming, "server",
                                           {"http.request.method": request.method}) as span:
                        exchange.trace = span.context
                        self._admitted_handle(exchange, sock, reader)
                        span.set("http.response.status_code", exchange.status)
                except _Abort:
                    return
                except Exception:  # noqa: BLE001 - a bug must cost one request, not the worker
                    log.exception("request %s failed", exchange.request_id)
                    if not exchange.status:
                        exchange.keep_alive = False
                        try:
                            self._answer_problem(exchange, sock, 500, "internal error", "internal")
                        except _Abort:
                            pass
                    return
                finally:
                    self.on_access_log(exchange)
                if not exchange.keep_alive or not exchange.body_consumed:
                    return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _reject(self, sock, peer_ip, status, detail, slug):
        """Answers a request that could not even be parsed, and logs it (smuggling attempts show here)."""
        rid = forwarding.request_id(None)
        status, headers, body = problems.problem(status, detail, rid, slug)
        try:
            sock.sendall(http11.render_head(status, headers + [("content-length", str(len(body))),
                                                               ("connection", "close")]) + body)
        except OSError:
            pass
        self._metrics.requests.labels("-", str(status)).inc()
        self._access_log.write({"request_id": rid, "client_ip": peer_ip, "method": None, "path": None,
                                "route": "-", "status": status, "error": detail})

    # -- the pipeline ---------------------------------------------------------------------

    def handle(self, ex, sock, reader):
        req = ex.request
        try:
            ex.path, ex.query = normalize_target(req.target)
        except AmbiguousPath as exc:
            return self._answer_problem(ex, sock, 400, str(exc), "ambiguous-path")
        if req.body_length and req.body_length > self._config.max_body_bytes:
            return self._answer_problem(ex, sock, 413, f"request body exceeds {self._config.max_body_bytes} bytes",
                                        "body-too-large")
        route, miss = self._routes.match(req.method, ex.path)
        if route is None:
            return self._answer_problem(ex, sock, miss, "no route for this method and path", "no-route")
        ex.route = route
        if self._config.http_redirect_to_https and ex.scheme == "http" and not route.meta:
            # Meta endpoints stay on plain HTTP for probes; everything else moves to TLS.
            return self._redirect_to_https(ex, sock)
        host = req.header("host", "")
        ex.client_ip, xff, proto, fwd_host = self._client_address.resolve(ex.peer_ip, req.headers, ex.scheme, host)
        ex.forwarded = (xff, proto, fwd_host)
        if route.cors and req.method == "OPTIONS" and req.header("origin") and \
                req.header("access-control-request-method"):
            return self._answer_preflight(ex, sock)
        try:
            decision = self.decide(ex)
        except PdpRejected as exc:
            return self._answer_problem(ex, sock, 400, str(exc), "unjudgeable-request")
        if decision is None:
            # Retry-After: a shed or a timeout is load, worth retrying in a second.
            return self._answer_problem(ex, sock, 503, "the policy decision point is unavailable", "pdp-unavailable",
                                        extra=[("retry-after", "1")])
        ex.decision = decision
        if not decision.allow:
            return self._answer_problem(ex, sock, decision.status, decision.reason or "denied by policy",
                                        "denied", extra=list(decision.response_headers.items()))
        if route.meta:
            answer = self._meta.handle(req.method, ex.path)
            if answer is None:
                return self._answer_problem(ex, sock, 404, "no such meta endpoint", "no-route")
            status, headers, body = answer
            return self._answer(ex, sock, status, headers + list(decision.response_headers.items()),
                                b"" if req.method == "HEAD" else body)
        with self._tracer.span("proxy.upstream", ex.trace, "client", {"lucid.cluster": route.cluster}) as span:
            ex.upstream_trace = span.context
            return self.forward(ex, sock, reader)

    def _admitted_handle(self, ex, sock, reader):
        """handle() for at most max_active requests of this worker at a time.

        With hundreds of connections, letting every request in at once makes
        each PDP answer wait behind all the others' work in the hub's run
        queue, and timeouts fire under load alone. The others wait here
        instead, cheaply, in order; one that would wait longer than the queue
        budget is shed at once (503, Retry-After), not after waiting.
        WebSocket upgrades, which hold their request for the connection's
        life, do not take a turn."""
        if self._admission is None or self._is_websocket(ex.request):
            return self.handle(ex, sock, reader)
        if not self._admission.enter():
            self._metrics.pdp_errors.labels("shed").inc()
            ex.keep_alive = False
            return self._answer_problem(ex, sock, 503, "too many requests waiting; retry shortly", "overloaded",
                                        extra=[("retry-after", "1")])
        try:
            return self.handle(ex, sock, reader)
        finally:
            self._admission.leave()

    def decide(self, ex):
        """The PDP's decision (or a cached one); None when the PDP failed and the route fails closed."""
        req = ex.request
        # The PDP sees what the upstream will see: no client-made identity,
        # forwarding or target-changing headers, the proxy's own X-Forwarded-* instead.
        headers = {}
        for name, value in req.headers:
            if name in forwarding.PROXY_SET or name in forwarding.IDENTITY_HEADERS or name.startswith("x-user-"):
                if name != "host":
                    continue
            if not forwarding.client_header_passes(name, ex.route):
                continue
            if name in headers:
                headers[name] += ("; " if name == "cookie" else ", ") + value
            else:
                headers[name] = value
        xff, proto, fwd_host = ex.forwarded
        headers.update({"x-forwarded-for": xff, "x-forwarded-proto": proto, "x-forwarded-host": fwd_host})
        doc = {
            "method": req.method,
            "path": ex.path + ("?" + ex.query if ex.query else ""),
            "headers": headers,
            "host": req.header("host", ""),
            "scheme": ex.scheme,
            "client_ip": ex.client_ip,
        }
        cache_key = None
        if self._verdicts is not None or self._leases is not None:
            # One key for reused verdicts and leases: the whole question (client
            # IP, scheme and every header included) except the request id and
            # the headers the PDP said its decisions do not read, so either is
            # only ever reused for a request the PDP could not tell apart from
            # the one it judged.
            cache_key = verdict_key(doc, self._unread)
            cached = self._verdicts.get(cache_key) if self._verdicts is not None else None
            if cached is None and self._leases is not None:
                cached = self._leases.take(cache_key)
                if cached is not None and self._leases.should_renew(cache_key):
                    gevent.spawn(self._renew_lease, doc, cache_key)
            if cached is None:
                cached = self._join_inflight(cache_key)
            if cached is not None:
                self._metrics.cache_hits.inc()
                ex.pdp_s = 0.0
                return cached
        headers["x-request-id"] = ex.request_id
        started = self._clock()
        leading = None
        if cache_key is not None and cache_key not in self._inflight:
            leading = self._inflight[cache_key] = AsyncResult()
        decision = None
        lease_want = self._leases.want(cache_key) if self._leases is not None else 1
        asking = None
        if lease_want > 1 and cache_key not in self._lease_inflight:
            asking = self._lease_inflight[cache_key] = AsyncResult()
        try:
            with self._tracer.span("proxy.pdp_check", ex.trace, "client") as span:
                decision = self._pdp.check(doc, ex.request_id, trace=span.context, lease_want=lease_want)
        except PdpUnavailable as exc:
            ex.pdp_s = self._clock() - started
            self._metrics.pdp_errors.labels(exc.kind).inc()
            ex.error = str(exc)
            self._warn_pdp_unavailable(ex.request_id, exc)
            return FAIL_OPEN if ex.route.fail_open else None
        finally:
            if leading is not None:
                del self._inflight[cache_key]
                leading.set(decision)
            if asking is not None:
                # Woken after this worker recorded the lease (set() wakes them
                # on the hub's next turn, and nothing here yields before that).
                del self._lease_inflight[cache_key]
                asking.set(decision)
        ex.pdp_s = self._clock() - started
        self._metrics.pdp_duration.observe(ex.pdp_s)
        if cache_key is not None:
            cache_key = self._learn_unread(doc, decision, cache_key)
        if self._verdicts is not None:
            self._verdicts.observe(cache_key, decision)
        if self._leases is not None:
            self._leases.observe(cache_key, decision)
            if decision.lease:
                decision = replace(decision, lease=None)  # its units are the followers'
        return decision

    def _renew_lease(self, doc, cache_key):
        """Asks for a hot key's next lease while the current one still serves."""
        doc = {**doc, "headers": {**doc["headers"], "x-request-id": forwarding.request_id(None)}}
        try:
            decision = self._pdp.check(doc, doc["headers"]["x-request-id"], lease_want=self._leases.want(cache_key))
        except (PdpUnavailable, PdpRejected):
            self._leases.renewal_failed(cache_key)
            return
        self._leases.observe(self._learn_unread(doc, decision, cache_key), decision, renewal=True)

    def _learn_unread(self, doc, decision, cache_key):
        """Records the headers this policy revision does not read; the key to
        store the decision under (without them, so the next such request finds it)."""
        revision = decision.policy_revision
        if revision != self._unread_revision:
            self._unread_revision, self._unread = revision, frozenset()
        if decision.ignores and not decision.ignores <= self._unread:
            self._unread = self._unread | decision.ignores
            if len(self._unread) > 1000:  # a client inventing header names: stop learning
                self._unread = decision.ignores
        if not decision.ignores:
            return cache_key
        # Only what this decision itself did not read is left out of its key.
        return verdict_key(doc, self._unread & decision.ignores)

    def _warn_pdp_unavailable(self, request_id, exc):
        """At most one warning per second: an outage must not flood the log (the metric counts all)."""
        now = self._clock()
        if now - self._pdp_warned_at >= 1.0:
            suffix = f" ({self._pdp_warnings_suppressed} more in the last second)" \
                if self._pdp_warnings_suppressed else ""
            log.warning("PDP unavailable for %s: %s%s", request_id, exc, suffix)
            self._pdp_warned_at = now
            self._pdp_warnings_suppressed = 0
        else:
            self._pdp_warnings_suppressed += 1

    def _join_inflight(self, cache_key):
        """Waits for an identical decision already asked of the PDP, and reuses it if it is cacheable.

        A burst of identical requests (one caller, one path) then costs one PDP
        call instead of one each. Keys whose last verdict was not cacheable
        (quota spent) never wait: each of those requests needs its own decision.
        """
        if self._leases is not None and self._leases.expects_lease(cache_key):
            return self._wait_for_lease(cache_key)
        leader = self._inflight.get(cache_key)
        if leader is None or self._verdicts is None or self._verdicts.known_uncacheable(cache_key):
            return None
        shared = leader.wait(self._pdp.max_wait_s)
        if shared is None or not shared.allow or shared.cache_ttl_s <= 0:
            return None
        return replace(shared, cached=True)

    def _wait_for_lease(self, cache_key):
        """A hot key's request while a lease for it is being asked: waits for it.

        More requests may wait than one lease covers; those left over wait for
        the next one (one of them asks), so a hot key has one lease request in
        flight per worker rather than a stampede. None: ask the PDP yourself.
        """
        deadline = self._clock() + self._pdp.max_wait_s
        for _ in range(16):
            asking = self._lease_inflight.get(cache_key)
            if asking is None:
                return None
            shared = asking.wait(max(0.0, deadline - self._clock()))
            taken = self._leases.take(cache_key)
            if taken is not None or shared is None or not shared.allow:
                return taken
        return None

    def forward(self, ex, sock, reader):
        req = ex.request
        route = ex.route
        cluster = self._clusters[route.cluster]
        timeouts = route.timeouts or cluster.spec.timeouts
        xff, proto, fwd_host = ex.forwarded
        # An HTTP/1.0 client may send no Host; the upstream speaks 1.1 and needs one.
        first = cluster.endpoints[0]
        host = req.header("host") or f"{first.host}:{first.port}"
        hop = ex.upstream_trace or ex.trace
        extra = [*(hop.headers() if hop else ()), ("host", host), ("x-request-id", ex.request_id),
                 ("x-forwarded-for", xff), ("x-forwarded-proto", proto), ("x-forwarded-host", fwd_host),
                 ("x-real-ip", ex.client_ip)]
        headers = forwarding.upstream_headers(req.headers, ex.decision.headers, route, extra)
        ex.upstream_headers = headers
        upgrade = self._is_websocket(req) and route.websocket
        if upgrade:
            return self._tunnel(ex, sock, reader, cluster, headers, timeouts)
        body = None
        streamed = False
        target = route.upstream_path(ex.path) + ("?" + ex.query if ex.query else "")
        if req.chunked or req.body_length:
            if (req.header("expect") or "").lower() == "100-continue":
                self._send(sock, b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body, streamed = self._buffer_body(ex, sock, reader)
            except ClientBodyError as exc:
                ex.keep_alive = False
                return self._answer_problem(ex, sock, exc.status, exc.detail, "bad-body")
            if not streamed:
                headers.append(("content-length", str(sum(len(p) for p in body))))
            elif req.chunked:
                headers.append(("transfer-encoding", "chunked"))
            else:
                headers.append(("content-length", str(req.body_length)))
        elif req.method in ("POST", "PUT", "PATCH"):
            headers.append(("content-length", "0"))
        head = _request_head(req.method, target, headers)
        if streamed and cluster.streaming_bodies >= self._config.streamed_bodies_per_cluster:
            # Each streamed body holds a pooled upstream connection for as long
            # as its client takes: a few slow clients must not take them all.
            ex.keep_alive = False
            return self._answer_problem(ex, sock, 503, f"cluster {cluster.name}: too many request bodies "
                                        "streaming at once", "body-streams-full", extra=[("retry-after", "1")])
        if streamed:
            cluster.streaming_bodies += 1
        try:
            return self._send_upstream(ex, sock, cluster, head, body, req.chunked and streamed, timeouts)
        finally:
            if streamed:
                cluster.streaming_bodies -= 1

    def _send_upstream(self, ex, sock, cluster, head, body, chunked, timeouts):
        req = ex.request
        try:
            probe = cluster.breaker.acquire(timeouts.connect_s)
        except BreakerRejected as exc:
            return self._answer_problem(ex, sock, 503, f"cluster {cluster.name}: {exc.reason}", "circuit-open")
        success = False
        cluster.active_requests += 1
        retrying = False
        try:
            idempotent = req.method in IDEMPOTENT
            attempts_left = cluster.spec.retry_attempts if idempotent else 0
            tried = []
            last_error = None
            while True:
                endpoint = cluster.pick(ex.upstream_headers, exclude=tried)
                if endpoint is None:
                    if tried:
                        return self._answer_problem(ex, sock, 502, f"cluster {cluster.name}: could not connect "
                                                    f"to any upstream ({last_error})", "upstream-connect")
                    return self._answer_problem(ex, sock, 503, f"cluster {cluster.name}: no healthy upstream",
                                                "no-upstream")
                ex.upstream_url = endpoint.url
                endpoint.outstanding += 1
                try:
                    started = self._clock()
                    exchange = upstream.send_request(
                        endpoint.pool, head, body, chunked, timeouts.connect_s, timeouts.read_s,
                        retry_stale=idempotent and body is None, clock=self._clock)
                except upstream.ConnectFailed as exc:
                    last_error = exc
                    endpoint.outstanding -= 1
                    endpoint.record(False)
                    tried.append(endpoint)
                    if attempts_left > 0 and cluster.may_retry():
                        attempts_left -= 1
                        if not retrying:
                            retrying = True
                            cluster.active_retries += 1
                        self._metrics.retries.labels(cluster.name).inc()
                        continue
                    return self._answer_problem(ex, sock, 502, f"cluster {cluster.name}: connect failed ({exc})",
                                                "upstream-connect")
                except upstream.UpstreamTimeout as exc:
                    endpoint.outstanding -= 1
                    endpoint.record(False)
                    return self._answer_problem(ex, sock, 504, f"cluster {cluster.name}: {exc}", "upstream-timeout")
                except upstream.UpstreamBroken as exc:
                    endpoint.outstanding -= 1
                    endpoint.record(False)
                    return self._answer_problem(ex, sock, 502, f"cluster {cluster.name}: {exc}", "upstream-broken")
                except ClientBodyError as exc:
                    endpoint.outstanding -= 1
                    ex.keep_alive = False
                    success = True  # not the upstream's fault
                    return self._answer_problem(ex, sock, exc.status, exc.detail, "bad-body")
                break
            ex.upstream_s = self._clock() - started
            self._metrics.upstream_duration.labels(cluster.name).observe(ex.upstream_s)
            try:
                success = exchange.response.status < 500
                endpoint.record(success)
                self._relay_response(ex, sock, exchange)
            finally:
                exchange.finish()
                endpoint.outstanding -= 1
        finally:
            cluster.active_requests -= 1
            if retrying:
                cluster.active_retries -= 1
            cluster.breaker.release(success, probe)

    # -- helpers --------------------------------------------------------------------------

    def _buffer_body(self, ex, sock, reader):
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

    def _client_body(self, ex, sock, reader):
        """The client's body as pieces, counted against MAX_BODY_BYTES, within BODY_READ_TIMEOUT_S."""
        req = ex.request
        config = self._config
        limit = config.max_body_bytes
        source = http11.iter_chunked_body(reader, _BODY_CHUNK) if req.chunked else \
            http11.iter_fixed_body(reader, req.body_length, _BODY_CHUNK)
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
            raise ClientBodyError(408, f"the request body was not received within "
                                  f"{config.body_read_timeout_s:g} s") from None
        except (http11.ConnectionClosed, OSError):
            raise ClientBodyError(400, "the client stopped sending its body") from None
        finally:
            try:
                sock.settimeout(config.keepalive_timeout_s)
            except OSError:
                pass
        ex.body_consumed = True

    def _relay_response(self, ex, sock, exchange):
        req = ex.request
        if ex.route.redaction is not None:
            exchange = response_transform.redacting(exchange, ex.route.redaction, req.method, upstream.UpstreamBroken)
        resp = exchange.response
        headers = forwarding.response_headers(resp.headers, ex.route)
        headers.extend(ex.decision.response_headers.items())
        headers.append(("x-request-id", ex.request_id))
        headers.extend(self._cors_headers(ex))
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
        if not ex.keep_alive or not ex.body_consumed or self.draining:
            ex.keep_alive = False
            headers.append(("connection", "close"))
        # Original reason phrase is dropped: it is cosmetic and a header-injection surface.
        head = http11.render_head(resp.status, headers)
        if no_body:
            ex.status = resp.status
            self._send(sock, head)
            return
        pieces = exchange.body()
        try:
            # The head leaves with the first piece of the body: one send for a small response.
            first = next(pieces, b"")
        except upstream.UpstreamTimeout as exc:
            ex.keep_alive = False
            return self._answer_problem(ex, sock, 504, str(exc), "upstream-timeout")
        except upstream.UpstreamBroken as exc:
            ex.keep_alive = False
            return self._answer_problem(ex, sock, 502, str(exc), "upstream-broken")
        ex.status = resp.status
        ex.bytes_out = len(first)
        if framing == "chunked":
            self._send(sock, head + (b"%x\r\n%s\r\n" % (len(first), first) if first else b""))
        else:
            self._send(sock, head + first)
        if not first:
            if framing == "chunked":
                self._send(sock, b"0\r\n\r\n")
            return
        try:
            for piece in pieces:
                if framing == "chunked":
                    self._send(sock, b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self._send(sock, piece)
                ex.bytes_out += len(piece)
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken) as exc:
            # The head is gone already: all that is left is to cut the response short.
            ex.error = str(exc)
            raise _Abort() from None
        if framing == "chunked":
            self._send(sock, b"0\r\n\r\n")

    def _tunnel(self, ex, sock, reader, cluster, headers, timeouts):
        """A WebSocket upgrade the PDP allowed: hand the bytes through both ways."""
        headers = headers + [("connection", "Upgrade"), ("upgrade", ex.request.header("upgrade"))]
        target = ex.route.upstream_path(ex.path) + ("?" + ex.query if ex.query else "")
        endpoint = cluster.pick(headers)
        if endpoint is None:
            return self._answer_problem(ex, sock, 503, f"cluster {cluster.name}: no healthy upstream", "no-upstream")
        ex.upstream_url = endpoint.url
        try:
            up = endpoint.open_connection()
        except OSError as exc:
            endpoint.record(False)
            return self._answer_problem(ex, sock, 502, f"cluster {cluster.name}: connect failed ({exc})",
                                        "upstream-connect")
        try:
            up.settimeout(timeouts.read_s)
            up.sendall(_request_head(ex.request.method, target, headers))
            up_reader = http11.SocketReader(up)
            resp = http11.parse_response_head(up_reader.read_head(65536), "GET")
            ex.status = resp.status
            if resp.status != 101:
                body = b"".join(http11.response_body(up_reader, resp)) if resp.body_length != 0 else b""
                out = forwarding.response_headers(resp.headers, ex.route) + [("content-length", str(len(body))),
                                                                             ("connection", "close")]
                ex.keep_alive = False
                self._send(sock, http11.render_head(resp.status, out) + body)
                return
            raw_headers = [(n, v) for n, v in resp.headers]
            self._send(sock, http11.render_head(101, raw_headers))
            ex.keep_alive = False
            up.settimeout(_TUNNEL_IDLE_S)
            sock.settimeout(_TUNNEL_IDLE_S)
            _pump_both_ways(reader, sock, up_reader, up)
        except socket.timeout:
            if not ex.status:
                return self._answer_problem(ex, sock, 504, "upstream did not answer the upgrade", "upstream-timeout")
        except (OSError, http11.ProtocolError, http11.ConnectionClosed) as exc:
            if not ex.status:
                return self._answer_problem(ex, sock, 502, f"upgrade failed: {exc}", "upstream-broken")
        finally:
            up.close()

    @staticmethod
    def _is_websocket(req):
        if req.method != "GET" or (req.header("upgrade") or "").lower() != "websocket":
            return False
        return "upgrade" in forwarding.connection_tokens(req.headers)

    def _cors_headers(self, ex):
        cors = ex.route.cors if ex.route else None
        origin = ex.request.header("origin")
        if not cors or not origin or not cors.allows(origin):
            return []
        out = [("access-control-allow-origin", origin if cors.allow_credentials or "*" not in cors.allow_origins
                else "*"), ("vary", "Origin")]
        if cors.allow_credentials:
            out.append(("access-control-allow-credentials", "true"))
        if cors.expose_headers:
            out.append(("access-control-expose-headers", ", ".join(cors.expose_headers)))
        return out

    def _answer_preflight(self, ex, sock):
        cors = ex.route.cors
        headers = []
        if cors.allows(ex.request.header("origin")):
            headers = self._cors_headers(ex) + [
                ("access-control-allow-methods", ", ".join(cors.allow_methods)),
                ("access-control-allow-headers", ", ".join(cors.allow_headers)),
                ("access-control-max-age", str(cors.max_age_s)),
            ]
        return self._answer(ex, sock, 204, headers, b"")

    def _redirect_to_https(self, ex, sock):
        # PUBLIC_HOST, never the client's Host: a forged Host must not make the
        # gateway send anyone elsewhere. The normalized target, never the raw one.
        location = f"https://{self._config.public_host}{ex.path}{'?' + ex.query if ex.query else ''}"
        return self._answer(ex, sock, 308, [("location", location)], b"")

    def _answer_problem(self, ex, sock, status, detail, slug, extra=()):
        if status >= 500 and not ex.error:
            ex.error = detail
        status, headers, body = problems.problem(status, detail, ex.request_id, slug)
        return self._answer(ex, sock, status, headers + list(extra), body)

    def _answer(self, ex, sock, status, headers, body):
        """A response the proxy makes itself (never streamed)."""
        headers = list(headers)
        headers.append(("x-request-id", ex.request_id))
        headers.extend(self._cors_headers(ex))
        headers.append(("content-length", str(len(body))))
        if not ex.body_consumed or not ex.keep_alive or self.draining:
            # An unread body would be taken for the next request: close instead.
            ex.keep_alive = False
            headers.append(("connection", "close"))
        ex.status = status
        ex.bytes_out = len(body)
        self._send(sock, http11.render_head(status, headers) + body)

    @staticmethod
    def _send(sock, data):
        try:
            sock.sendall(data)
        except OSError:
            raise _Abort() from None

    def on_access_log(self, ex):
        route_name = ex.route.name if ex.route else "-"
        status = ex.status or 499
        elapsed = self._clock() - ex.started
        self._metrics.requests.labels(route_name, str(status)).inc()
        self._metrics.duration.labels(route_name).observe(elapsed)
        decision = ex.decision
        self._access_log.write({
            "request_id": ex.request_id, "trace_id": ex.trace.trace_id if ex.trace else None,
            "client_ip": ex.client_ip, "method": ex.request.method,
            "path": (ex.path or "-") + ("?" + _redact(ex.query) if ex.query else ""),
            "route": route_name, "status": status, "bytes_in": ex.bytes_in, "bytes_out": ex.bytes_out,
            "total_ms": round(elapsed * 1000, 3),
            "upstream_ms": round(ex.upstream_s * 1000, 3) if ex.upstream_s is not None else None,
            "pdp_ms": round(ex.pdp_s * 1000, 3) if ex.pdp_s is not None else None,
            "decision_id": decision.decision_id if decision else None,
            "cached": decision.cached if decision else False,
            "subject": decision.headers.get("x-user-id") if decision else None,
            "upstream": ex.upstream_url, "error": ex.error,
        })


class _HeadTimeout(Exception):
    pass


def _redact(query):
    from .accesslog import redact_query
    return redact_query(query)


def _request_head(method, target, headers):
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def _pump_both_ways(client_reader, client_sock, up_reader, up_sock):
    """gevent's portforwarder loop: two forwarders, first to finish ends both."""

    def pump(reader, dst):
        try:
            while True:
                data = reader.read_some(65536)
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
