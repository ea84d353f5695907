"""Asking the PDP (`POST /v1/check`, docs/decision-api.md) and caching what it allows."""
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field

from . import upstream


class PdpUnavailable(Exception):
    """No usable decision (down, slow, malformed answer): fail closed unless the route opts out.

    `kind` is one of: deadline, queue, unreachable, bad_answer, status (a metric label).
    """

    def __init__(self, message: str, kind: str = "bad_answer"):
        super().__init__(message)
        self.kind = kind


class PdpRejected(Exception):
    """The PDP refused the question itself as malformed (400/413): the client's request is at fault."""


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


FAIL_OPEN = Decision(allow=True, status=200, reason="pdp unavailable, route fails open",
                     decision_id="fail-open")


def parse_decision(data: bytes) -> Decision:
    """Validates the PDP's answer; anything off is PdpUnavailable (never an accidental allow)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise PdpUnavailable("PDP answered with invalid JSON") from None
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
        allow=doc["allow"], status=status, reason=str(doc.get("reason", "")),
        decision_id=str(doc.get("decision_id", "")), headers=headers,
        response_headers=response_headers, policy_revision=str(doc.get("policy_revision", "")),
        cache_ttl_s=float(ttl),
    )


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
        if not key or any(c in key for c in " :\r\n\0") or any(c in val for c in "\r\n\0"):
            raise PdpUnavailable(f"PDP answer has an invalid header in '{name}'")
        out[key] = val
    return out


class PdpClient:
    """Pooled keep-alive connections to the PDP, one deadline per decision."""

    def __init__(self, base_url: str, timeout_s: float, pool_size: int, queue_s: float = 1.0):
        host, port = upstream.split_host_port(base_url)
        self._pool = upstream.make_pool(base_url, pool_size, timeout_s, timeout_s)
        self._host = f"{host}:{port}"
        self._timeout_s = timeout_s
        # A burst queues for a pooled connection (bounded) instead of piling onto the PDP.
        self._queue_s = queue_s
        self.max_wait_s = self._queue_s + timeout_s  # the longest one check() can take
        self.base_url = base_url

    def _head(self, method, path, length=None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        if length is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def check(self, request_doc: dict, request_id: str = None, trace=None) -> Decision:
        body = json.dumps({"request": request_doc}, separators=(",", ":")).encode("utf-8")
        head = self._head("POST", "/v1/check", len(body))
        if request_id:
            head = head[:-2] + f"X-Request-ID: {request_id}\r\n\r\n".encode("latin-1")
        if trace is not None:
            lines = "".join(f"{name}: {value}\r\n" for name, value in trace.headers())
            head = head[:-2] + (lines + "\r\n").encode("latin-1")
        try:
            status, _, data = upstream.simple_request(self._pool, head, body, self._timeout_s, self._queue_s)
        except upstream.UpstreamTimeout as exc:
            kind = "queue" if "no free connection" in str(exc) else "deadline"
            raise PdpUnavailable(f"PDP unreachable: {exc}", kind) from None
        except upstream.UpstreamBroken as exc:
            raise PdpUnavailable(f"PDP unreachable: {exc}", "unreachable") from None
        if status in (400, 413, 431):
            raise PdpRejected(f"the request cannot be judged ({status} from the PDP)")
        if status != 200:
            raise PdpUnavailable(f"PDP answered {status}", "status")
        return parse_decision(data)

    def probe(self, path: str = "/v1/health", timeout_s: float = 1.0) -> int:
        """Status of a PDP health endpoint (for /meta/health); raises PdpUnavailable."""
        try:
            status, _, _ = upstream.simple_request(self._pool, self._head("GET", path), b"", timeout_s)
        except (upstream.UpstreamTimeout, upstream.UpstreamBroken) as exc:
            raise PdpUnavailable(str(exc), "unreachable") from None
        return status


def verdict_key(request_doc: dict) -> bytes:
    """Digest of a whole /v1/check question: the cache key, and the cache never stores tokens.

    Everything the decision could read is in it (method, path and query, host,
    scheme, client IP, every header sent, credentials included), so a verdict
    is never served for a request that differs in any of them. Fields are
    joined with LF, which none of them can contain (the parser refuses it), so
    two different questions never join to the same text.
    """
    parts = [request_doc["method"], request_doc["path"], request_doc["host"], request_doc["scheme"],
             request_doc["client_ip"]]
    for name, value in request_doc["headers"].items():
        parts.append(name)
        parts.append(value)
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).digest()


class VerdictCache:
    """Bounded LRU of cacheable allow verdicts; emptied when the policy revision changes."""

    def __init__(self, max_entries: int, clock):
        self._max = max_entries
        self._clock = clock
        self._entries = OrderedDict()
        self.revision = None
        self.hits = 0
        self._uncacheable = OrderedDict()  # keys whose last verdict could not be cached (bounded)

    def get(self, key):
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

    def observe(self, key, decision: Decision) -> None:
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

    def known_uncacheable(self, key) -> bool:
        return key in self._uncacheable

    def __len__(self):
        return len(self._entries)
