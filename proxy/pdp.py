"""Asking the PDP (`POST /v1/check`, docs/decision-api.md) and caching what it allows."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from servicekit import json_codec

from . import upstream
from .pdp_batch import BatchUnsupported, PdpBatcher
from .pdp_errors import PdpRejected, PdpUnavailable

log = logging.getLogger("lucid.proxy.pdp")
# A question larger than this (a client sending many or long headers) is asked alone: it
# cannot push a batch past the PDP's body limit and fail the decisions batched with it.
_MAX_BATCHED_BYTES = 16384

__all__ = ["Decision", "PdpClient", "PdpRejected", "PdpUnavailable", "VerdictCache", "parse_decision", "verdict_key"]

if TYPE_CHECKING:
    from servicekit.trace_context import TraceContext

    from .upstream_tls import UpstreamTlsSpec


@dataclass(frozen=True)
class Decision:
    allow: bool
    status: int
    reason: str
    decision_id: str = ""
    headers: dict = field(default_factory=dict)
    response_headers: dict = field(default_factory=dict)
    policy_revision: str = ""
    cache_ttl_s: float = 0.0
    cached: bool = False
    lease: dict | None = None  # {"id", "units", "ttl_s"} (proxy/leases.py)
    ignores: frozenset = frozenset()  # request headers the decision did not read

    def but(self, **changes) -> "Decision":
        """dataclasses.replace, for the per-request copies of a leased decision: a
        frozen dataclass's __init__ sets each field through object.__setattr__, which
        was several percent of the proxy's CPU per request."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"Decision has no field(s) {sorted(unknown)}")
        copy = object.__new__(Decision)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


FAIL_OPEN = Decision(allow=True, status=200, reason="pdp unavailable, route fails open", decision_id="fail-open")


def parse_decision(data: bytes) -> Decision:
    """Validates the PDP's answer; anything off is PdpUnavailable (never an accidental allow)."""
    try:
        doc = json_codec.loads(data)
    except ValueError:
        raise PdpUnavailable("PDP answered with invalid JSON") from None
    return decision_from_doc(doc)


def decision_from_doc(doc) -> Decision:
    """A decoded answer (of /v1/check, or one item of /v1/check/batch), validated as parse_decision does."""
    if not isinstance(doc, dict) or not isinstance(doc.get("allow"), bool):
        raise PdpUnavailable("PDP answer lacks a boolean 'allow'")
    status = doc.get("status", 200 if doc["allow"] else 403)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise PdpUnavailable("PDP answer has an invalid 'status'")
    if not doc["allow"] and status < 400:
        status = 403
    headers = _string_map(doc.get("headers"), "headers")
    response_headers = _string_map(doc.get("response_headers"), "response_headers")
    ttl = doc.get("cache_ttl_s", 0) or 0
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl < 0:
        ttl = 0
    return Decision(
        allow=doc["allow"],
        status=status,
        reason=str(doc.get("reason", "")),
        decision_id=str(doc.get("decision_id", "")),
        headers=headers,
        response_headers=response_headers,
        policy_revision=str(doc.get("policy_revision", "")),
        cache_ttl_s=float(ttl),
        lease=_lease(doc.get("lease")) if doc["allow"] else None,
        ignores=_ignores(doc.get("ignores")) if doc["allow"] else frozenset(),
    )


_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]{1,64}")
_NEVER_IGNORED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key", "host"})
# A policy revision answers the same `ignores` list on every allow: validated once.
_IGNORES_SEEN: dict = {}
_IGNORES_SEEN_MAX = 64


def _ignores(value) -> frozenset:
    """Header names the PDP says it did not read; anything malformed means none."""
    try:
        key = tuple(value) if isinstance(value, list) else None
        known = _IGNORES_SEEN.get(key)
    except TypeError:  # unhashable items: malformed, validated (and refused) below
        key, known = None, None
    if known is not None:
        return known
    out = _validated_ignores(value)
    if key is not None:
        if len(_IGNORES_SEEN) >= _IGNORES_SEEN_MAX:
            _IGNORES_SEEN.clear()
        _IGNORES_SEEN[key] = out
    return out


def _validated_ignores(value) -> frozenset:
    if not isinstance(value, list) or len(value) > 200:
        return frozenset()
    out = set()
    for name in value:
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            return frozenset()
        out.add(name)
    return frozenset(out - _NEVER_IGNORED)


def _lease(value):
    """A well-formed lease, or None (a malformed one is ignored: the request is still decided)."""
    if not isinstance(value, dict):
        return None
    lease_id, units, ttl = value.get("id"), value.get("units"), value.get("ttl_s")
    if not isinstance(lease_id, str) or not 0 < len(lease_id) <= 64:
        return None
    if isinstance(units, bool) or not isinstance(units, int) or not 0 < units <= 1_000_000:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 10:
        return None
    return {"id": lease_id, "units": units, "ttl_s": float(ttl)}


# Heads go out as Latin-1: a character beyond it could not be sent (a 500, or a
# dropped connection on a deny), so such an answer is refused like a bad one.
_BAD_NAME_CHAR = re.compile(r"[ :\r\n\x00\u0100-\U0010ffff]")
_BAD_VALUE_CHAR = re.compile(r"[\r\n\x00\u0100-\U0010ffff]")


def _string_map(value, name):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PdpUnavailable(f"PDP answer has an invalid '{name}'")
    out = {}
    for key, val in value.items():
        key = str(key).lower()
        val = str(val)
        # A header the PDP sets must not be able to inject another line.
        if not key or _BAD_NAME_CHAR.search(key) or _BAD_VALUE_CHAR.search(val):
            raise PdpUnavailable(f"PDP answer has an invalid header in '{name}'")
        out[key] = val
    return out


class PdpClient:
    """Pooled keep-alive connections to the PDP, one deadline per decision.

    Admission: a decision waits for a pooled connection (the pool is kept small,
    so the PDP works on a few decisions at a time instead of all of them slowly),
    but only when it can expect one in time. From the number already waiting and
    the recent time a decision takes, check() predicts the wait; beyond queue_s
    it sheds at once (PdpUnavailable kind "shed": 503 with Retry-After) rather
    than queue and fail after waiting out a deadline. The rate is measured only
    while every connection is busy, so an idle spell never inflates it.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        pool_size: int,
        queue_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        tls_spec: UpstreamTlsSpec | None = None,
        batch_max: int = 1,
        batches_in_flight: int = 1,
        batch_stall_s: float = 0.3,
        spawn: Callable | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_stall: Callable[[], None] | None = None,
    ):
        host, port = upstream.split_host_port(base_url)
        # https://: verified TLS (tls_spec: CA bundle, SNI name, client certificate; None: the
        # system's trust store). A failed handshake is PdpUnavailable "tls", never plain text.
        self._pool = upstream.make_pool(
            base_url, pool_size, timeout_s, timeout_s, tls_spec=tls_spec, label=f"the PDP at {base_url}"
        )
        self._host = upstream.authority(host, port)
        self._timeout_s = timeout_s
        # A burst queues for a pooled connection (bounded) instead of piling onto the PDP.
        self._queue_s = queue_s
        self._pool_size = pool_size
        self._clock = clock
        self._waiting = 0  # check() calls waiting for a connection or an answer
        self._interval_s = 0.0  # moving average of the time between answers while saturated
        self._last_answer = None
        self.shed = 0
        self.max_wait_s = self._queue_s + timeout_s  # the longest one check() can take
        self.base_url = base_url
        # batch_max > 1: concurrent decisions share POST /v1/check/batch exchanges, at most
        # batches_in_flight (and one per pooled connection) at a time, more while those
        # have stalled for batch_stall_s (proxy/pdp_batch.py).
        self.batcher = None
        if batch_max > 1:
            if spawn is None:
                import gevent

                spawn = gevent.spawn
            slots = max(1, min(batches_in_flight, pool_size))
            self.batcher = PdpBatcher(
                self._exchange_batch,
                batch_max,
                slots,
                spawn,
                on_batch,
                max_slots=pool_size,
                stall_s=batch_stall_s,
                clock=clock,
                on_stall=on_stall,
            )

    def _admit(self) -> None:
        """Sheds when the queue ahead would take longer than queue_s to drain."""
        ahead = self._waiting - self._pool_size + 1
        if ahead > 0 and ahead * self._interval_s > self._queue_s:
            self.shed += 1
            raise PdpUnavailable("PDP busy: shed before queueing", "shed")

    def _answered(self) -> None:
        now = self._clock()
        if self._waiting >= self._pool_size and self._last_answer is not None:
            self._interval_s += (now - self._last_answer - self._interval_s) * 0.1
        self._last_answer = now

    def _head(self, method, path, length=None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        if length is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def check(
        self, request_doc: dict, request_id: str | None = None, trace: TraceContext | None = None, lease_want: int = 1
    ) -> Decision:
        question = {"request": request_doc}
        if lease_want > 1:
            question["lease"] = {"want": lease_want}
        self._admit()
        self._waiting += 1
        try:
            if self.batcher is not None:
                answer = self._ask_batched(question, request_id, trace)
                if answer is not None:
                    self._answered()
                    return _decision_from_item(answer)
            decision = self._ask_alone(question, request_id, trace)
            self._answered()
            return decision
        finally:
            self._waiting -= 1

    def _ask_batched(self, question: dict, request_id, trace) -> dict | None:
        """The batch answer for one question; None: ask it alone (too large to batch, or no batch endpoint)."""
        item = {**question, "request_id": request_id} if request_id else dict(question)
        if trace is not None:
            item.update(trace.headers())  # in a batch, an item carries what a lone check sends as headers
        body = json_codec.dumps(item)
        if len(body) > _MAX_BATCHED_BYTES:
            return None
        try:
            return self.batcher.ask(body, self._queue_s, self._timeout_s)
        except BatchUnsupported:
            return None

    def _ask_alone(self, question: dict, request_id, trace) -> Decision:
        body = json_codec.dumps(question)
        head = self._head("POST", "/v1/check", len(body))
        if request_id:
            head = head[:-2] + f"X-Request-ID: {request_id}\r\n\r\n".encode("latin-1")
        if trace is not None:
            lines = "".join(f"{name}: {value}\r\n" for name, value in trace.headers())
            head = head[:-2] + (lines + "\r\n").encode("latin-1")
        status, data = self._exchange(head, body)
        if status in (400, 413, 431):
            raise PdpRejected(f"the request cannot be judged ({status} from the PDP)")
        if status != 200:
            raise PdpUnavailable(f"PDP answered {status}", "status")
        return parse_decision(data)

    def _exchange(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        try:
            status, _, data = upstream.simple_request(self._pool, head, body, self._timeout_s, self._queue_s)
        except upstream.UpstreamTimeout as exc:
            kind = "queue" if "no free connection" in str(exc) else "deadline"
            raise PdpUnavailable(f"PDP unreachable: {exc}", kind) from None
        except upstream.UpstreamBroken as exc:
            if exc.tls:
                raise PdpUnavailable(f"PDP unreachable over TLS: {exc}", "tls") from None
            raise PdpUnavailable(f"PDP unreachable: {exc}", "unreachable") from None
        return status, data

    def _exchange_batch(self, bodies: list) -> list:
        """One POST /v1/check/batch (proxy/pdp_batch.py's exchange): the items' answers, in order."""
        body = b'{"checks":[' + b",".join(bodies) + b"]}"
        status, data = self._exchange(self._head("POST", "/v1/check/batch", len(body)), body)
        if status in (404, 405):
            if self.batcher is not None:  # batches already queued learn it too: say it once
                self.batcher = None  # an older PDP: from now on, one decision per exchange
                log.warning(
                    "the PDP at %s has no /v1/check/batch (answered %d): asking one decision at a time",
                    self.base_url,
                    status,
                )
            raise BatchUnsupported(f"PDP answered {status} to /v1/check/batch")
        if status != 200:
            raise PdpUnavailable(f"PDP answered {status} to a batch", "status")
        try:
            answers = json_codec.loads(data).get("decisions")
        except (ValueError, AttributeError):
            answers = None
        if not isinstance(answers, list) or len(answers) != len(bodies):
            raise PdpUnavailable("PDP batch answer is not one decision per question")
        return answers

    def return_lease(self, lease_id: str, unused: int) -> bool:
        """Gives a lease's unused units back; False when the PDP did not take them."""
        body = json_codec.dumps({"lease": lease_id, "unused": unused})
        try:
            status, _, _ = upstream.simple_request(
                self._pool, self._head("POST", "/v1/lease/return", len(body)), body, self._timeout_s, self._queue_s
            )
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken):
            return False
        return status == 200

    def return_lease_later(self, lease_id: str, unused: int) -> None:
        """return_lease in its own greenlet: ending a lease never makes a request wait."""
        import gevent

        gevent.spawn(self.return_lease, lease_id, unused)

    def probe(self, path: str = "/v1/health", timeout_s: float = 1.0) -> int:
        """Status of a PDP health endpoint (for /meta/health); raises PdpUnavailable."""
        try:
            status, _, _ = upstream.simple_request(self._pool, self._head("GET", path), b"", timeout_s)
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken) as exc:
            raise PdpUnavailable(str(exc), "unreachable") from None
        return status


def _decision_from_item(answer) -> Decision:
    """One item of a batch answer: a decision, or the problem that item alone was (400: the client's fault)."""
    problem = answer.get("problem") if isinstance(answer, dict) else None
    if problem is not None:
        status = problem.get("status") if isinstance(problem, dict) else None
        if status in (400, 413, 431):
            raise PdpRejected(f"the request cannot be judged ({status} from the PDP)")
        raise PdpUnavailable(f"PDP answered {status} for a batched decision", "status")
    return decision_from_doc(answer)


def verdict_key(request_doc: dict, unread: frozenset = frozenset()) -> bytes:
    """Digest of a /v1/check question (the request id aside): the key of reused
    verdicts and of quota leases, so neither is ever used for a request the
    decision could tell apart from the one it judged. Never stores tokens.

    Everything is in it except the headers in `unread`: those the PDP said
    (`ignores`, for this policy revision) its decisions do not read, such as a
    tracing header that differs on every request. Credentials never are.
    Fields are joined with LF, which none of them can contain (the parser
    refuses it in a head), so two different questions never join to the same text.
    """
    parts = [
        request_doc["method"],
        request_doc["path"],
        request_doc["host"],
        request_doc["scheme"],
        request_doc["client_ip"],
    ]
    for name, value in request_doc["headers"].items():
        if name in unread:
            continue
        parts.append(name)
        parts.append(value)
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).digest()


class VerdictCache:
    """Bounded LRU of cacheable allow verdicts; emptied when the policy revision changes."""

    def __init__(self, max_entries: int, clock: Callable[[], float]):
        self._max = max_entries
        self._clock = clock
        self._entries = OrderedDict()
        self.revision = None
        self.hits = 0
        self._uncacheable = OrderedDict()  # keys whose last verdict could not be cached (bounded)

    def get(self, key: bytes) -> Decision | None:
        if not self._max:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, decision = entry
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return decision

    def observe(self, key: bytes, decision: Decision) -> None:
        """Records the PDP's revision (dropping all on a change) and stores the verdict if cacheable."""
        if decision.policy_revision and decision.policy_revision != self.revision:
            self._entries.clear()
            self._uncacheable.clear()
            self.revision = decision.policy_revision
        if not self._max:
            return
        if not decision.allow or decision.cache_ttl_s <= 0:
            self._uncacheable[key] = True
            self._uncacheable.move_to_end(key)
            while len(self._uncacheable) > self._max:
                self._uncacheable.popitem(last=False)
            return
        self._uncacheable.pop(key, None)
        cached = Decision(**{**decision.__dict__, "cached": True})
        self._entries[key] = (self._clock() + decision.cache_ttl_s, cached)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def known_uncacheable(self, key: bytes) -> bool:
        return key in self._uncacheable

    def __len__(self):
        return len(self._entries)
