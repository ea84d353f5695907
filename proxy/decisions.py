"""The decide stage's decisions: asked of the PDP, reused, or shared.

For each request the gateway asks `Decisions.decide`, which answers with the
first of:

- a cached verdict (proxy/pdp.py VerdictCache) or a unit of a quota lease
  (proxy/leases.py) for a request the PDP could not tell apart from the one it
  judged: one key for both, the whole question except the request id and the
  headers the PDP said its decisions do not read;
- the answer to an identical question already in flight, so that a burst of
  identical requests costs one PDP call (never for a key whose last verdict was
  not cacheable: each of those needs its own decision);
- the PDP's answer (proxy/pdp.py PdpClient), or, when it is unavailable, the
  route's fail mode (a warning at most once a second).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent.event import AsyncResult

from servicekit.identity import HeaderNames

from . import forwarding
from .pdp import FAIL_OPEN, Decision, PdpRejected, PdpUnavailable, verdict_key

if TYPE_CHECKING:
    from servicekit.tracing import NoTracer, OtelTracer

    from .gateway import Exchange
    from .leases import LeaseStore
    from .metrics import Metrics
    from .pdp import PdpClient, VerdictCache

log = logging.getLogger("lucid.proxy.decisions")

# What a request waiting for an identical PDP call in flight gets when that call had no
# answer (PDP unavailable, or the wait ran out): it fails too instead of asking again.
_NO_ANSWER = object()
_CREDENTIALS = frozenset(("authorization", "cookie"))


class Decisions:
    """One worker's decisions: the PDP client, the verdict cache and the quota leases, and who waits for whom."""

    def __init__(
        self,
        pdp: PdpClient,
        verdicts: VerdictCache | None,
        leases: LeaseStore | None,
        metrics: Metrics,
        clock: Callable[[], float],
        tracer: NoTracer | OtelTracer,
        pdp_settable: HeaderNames,
    ):
        self._pdp = pdp
        self._pdp_settable = pdp_settable  # DECISION_HEADER_NAMES: a client's copies are not judged
        self._verdicts = verdicts  # proxy/pdp.py VerdictCache, or None
        self._leases = leases  # proxy/leases.py LeaseStore, or None
        self._metrics = metrics
        self._clock = clock
        self._tracer = tracer
        self._inflight = {}  # cache key -> AsyncResult of the PDP call in flight for it
        self._lease_inflight = {}  # cache key -> AsyncResult of the lease request in flight for it
        self._unread = frozenset()  # header names the PDP's current revision does not read
        self._unread_revision = None
        self._pdp_warned_at = float("-inf")
        self._pdp_warnings_suppressed = 0

    def _pdp_sets(self, name: str) -> bool:
        """A header only the PDP may set: the client's copy is not judged. Credentials
        still are, even when a decision may replace them upstream."""
        return name not in _CREDENTIALS and forwarding.pdp_only(name, self._pdp_settable)

    def question(self, ex: Exchange) -> dict:
        """What the PDP is asked about the exchange's request (its check document)."""
        req = ex.request
        # The PDP sees what the upstream will see: no client-made identity,
        # forwarding or target-changing headers, the proxy's own X-Forwarded-* instead.
        headers = {}
        # Headers the client names in Connection end at this hop (RFC 9110 7.6.1):
        # the upstream never gets them, so the PDP must not judge them either
        # (`X-Scope: own` + `Connection: x-scope` would be allowed as scoped and
        # forwarded unscoped). Hop-by-hop ones stay: the tunnel sends Upgrade on.
        nominated = forwarding.connection_tokens(req.headers) - forwarding.HOP_BY_HOP
        for name, value in req.headers:
            if name != "host" and (name in forwarding.PROXY_SET or name in nominated or self._pdp_sets(name)):
                continue
            if not forwarding.client_header_passes(name, ex.route):
                continue
            if name in headers:
                headers[name] += ("; " if name == "cookie" else ", ") + value
            else:
                headers[name] = value
        xff, proto, fwd_host = ex.forwarded
        headers.update({"x-forwarded-for": xff, "x-forwarded-proto": proto, "x-forwarded-host": fwd_host})
        return {
            "method": req.method,
            "path": ex.path + ("?" + ex.query if ex.query else ""),
            "headers": headers,
            "host": req.header("host", ""),
            "scheme": ex.scheme,
            "client_ip": ex.client_ip,
        }

    def decide(self, ex: Exchange) -> Decision | None:
        """The decision for the exchange's request; None when the PDP failed and the route fails closed.

        Raises PdpRejected when the PDP says the request cannot be judged (400).
        """
        doc = self.question(ex)
        cache_key = None
        if self._verdicts is not None or self._leases is not None:
            # One key for reused verdicts and leases: the whole question (client
            # IP, scheme and every header included) except the request id and
            # the headers the PDP said its decisions do not read, so either is
            # only ever reused for a request the PDP could not tell apart from
            # the one it judged.
            cache_key = verdict_key(doc, self._unread)
            waited = self._clock()
            cached = self._reused(doc, cache_key)
            if cached is _NO_ANSWER:
                # The identical decision this request waited for got no answer (or the wait
                # used up the deadline): asking again would wait out a second deadline.
                ex.pdp_s = self._clock() - waited
                ex.error = "PDP unavailable: the same decision, asked just before, got no answer in time"
                return FAIL_OPEN if ex.route.fail_open else None
            if cached is not None:
                self._metrics.cache_hits.inc()
                ex.pdp_s = 0.0
                return cached
        doc["headers"]["x-request-id"] = ex.request_id
        return self._ask(ex, doc, cache_key)

    def _reused(self, doc: dict, cache_key: bytes) -> Decision | None:
        """A cached verdict, a lease's unit, or an identical request's decision in flight (None: ask)."""
        cached = self._verdicts.get(cache_key) if self._verdicts is not None else None
        if cached is None and self._leases is not None:
            cached = self._leases.take(cache_key)
            if cached is not None and self._leases.should_renew(cache_key):
                gevent.spawn(self._renew_lease, doc, cache_key)
        if cached is None:
            cached = self._join_inflight(cache_key)
        return cached

    def _ask(self, ex: Exchange, doc: dict, cache_key: bytes | None) -> Decision | None:
        """The PDP's decision, shared with identical requests that wait for it and learned from."""
        started = self._clock()
        leading = None
        if cache_key is not None and cache_key not in self._inflight:
            leading = self._inflight[cache_key] = AsyncResult()
        decision = None
        lease_want = self._leases.want(cache_key) if self._leases is not None else 1
        asking = None
        if lease_want > 1 and cache_key not in self._lease_inflight:
            asking = self._lease_inflight[cache_key] = AsyncResult()
        unavailable = False
        try:
            with self._tracer.span("proxy.pdp_check", ex.trace, "client") as span:
                decision = self._pdp.check(doc, ex.request_id, trace=span.context, lease_want=lease_want)
        except PdpUnavailable as exc:
            unavailable = True
            ex.pdp_s = self._clock() - started
            self._metrics.pdp_errors.labels(exc.kind).inc()
            ex.error = str(exc)
            self._warn_pdp_unavailable(ex.request_id, exc)
            return FAIL_OPEN if ex.route.fail_open else None
        finally:
            outcome = _NO_ANSWER if unavailable else decision  # None: rejected, or an error
            if leading is not None:
                del self._inflight[cache_key]
                leading.set(outcome)
            if asking is not None:
                # Woken after this worker recorded the lease (set() wakes them
                # on the hub's next turn, and nothing here yields before that).
                del self._lease_inflight[cache_key]
                asking.set(outcome)
        ex.pdp_s = self._clock() - started
        self._metrics.pdp_duration.observe(ex.pdp_s)
        if cache_key is not None:
            cache_key = self._learn_unread(doc, decision, cache_key)
        if self._verdicts is not None:
            self._verdicts.observe(cache_key, decision)
        if self._leases is not None:
            self._leases.observe(cache_key, decision)
            if decision.lease:
                decision = decision.but(lease=None)  # its units are the followers'
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
            suffix = (
                f" ({self._pdp_warnings_suppressed} more in the last second)" if self._pdp_warnings_suppressed else ""
            )
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
        if shared is _NO_ANSWER or (shared is None and not leader.ready()):
            return _NO_ANSWER  # the PDP did not answer it in time: neither would it this one
        if shared is None or not shared.allow or shared.cache_ttl_s <= 0:
            return None
        return shared.but(cached=True)

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
            if taken is not None:
                return taken
            if shared is _NO_ANSWER or (shared is None and not asking.ready()):
                return _NO_ANSWER  # the lease request got no answer in time
            if shared is None or not shared.allow:
                return None
        return None
