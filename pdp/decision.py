"""The decision: what the policy said, made safe (fail closed) and complete."""

from __future__ import annotations

import dataclasses
import re

from servicekit.identity import HeaderNames

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# CR, LF and every other control character (TAB and DEL included): a value
# holding one could split or fold a header on the way to the backend.
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")


# The matcher is shared with the proxy, which drops a client's copies of these names.
HeaderAllowList = HeaderNames


def _default_allow_list() -> HeaderAllowList:
    from .config import SETTINGS

    return HeaderAllowList(next(s.default_value for s in SETTINGS if s.name == "decision_header_names"))


DEFAULT_HEADERS = _default_allow_list()


@dataclasses.dataclass
class Decision:
    allow: bool
    status: int
    reason: str
    headers: dict = dataclasses.field(default_factory=dict)
    response_headers: dict = dataclasses.field(default_factory=dict)
    quotas: list = dataclasses.field(default_factory=list)
    cache_ttl_s: float = 0.0
    decision_id: str = ""
    policy_revision: str = ""
    eval_ms: float = 0.0
    detail: str = ""  # why a policy's decision was refused (logged, never sent)
    # {"id", "units", "ttl_s"}: further requests' worth of quota reserved for
    # the asker (pdp/quota/leases.py); None without a lease.
    lease: dict | None = None
    # Request headers the decision did not read (pdp/decider.py), on allows.
    ignores: list | None = None

    def to_json(self) -> dict:
        doc = {
            "allow": self.allow,
            "status": self.status,
            "reason": self.reason,
            "decision_id": self.decision_id,
            "policy_revision": self.policy_revision,
            "headers": self.headers,
            "response_headers": self.response_headers,
            "cache_ttl_s": self.cache_ttl_s,
        }
        if self.lease:
            doc["lease"] = self.lease
        if self.ignores:
            doc["ignores"] = self.ignores
        return doc


def deny(status: int, reason: str, **extra) -> Decision:
    return Decision(allow=False, status=status, reason=reason, **extra)


def from_policy(doc, allowed_headers: HeaderAllowList = DEFAULT_HEADERS) -> Decision:
    """Reads data.gateway.decision; anything undefined or malformed is a deny.

    Headers are checked before use: a name outside the allow-list, or a value
    with a control character, denies the whole decision (503 policy_bad_headers)."""
    if not isinstance(doc, dict):
        return deny(403, "policy_undefined")
    allow = doc.get("allow") is True
    status = doc.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        status = 200 if allow else 403
    if allow and status != 200:
        # An allow with an error status is contradictory: trust the status, deny.
        allow = False
    if not allow and status < 400:
        status = 403
    reason = doc.get("reason") if isinstance(doc.get("reason"), str) else ("ok" if allow else "denied")
    try:
        headers = _headers(doc.get("headers"), allowed_headers) if allow else {}
        response_headers = _headers(doc.get("response_headers"), allowed_headers)
    except ValueError as err:
        return deny(503, "policy_bad_headers", detail=str(err))
    quotas = doc.get("quotas") if isinstance(doc.get("quotas"), list) else []
    ttl = doc.get("cache_ttl_s", 0)
    ttl = float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 <= ttl <= 3600 else 0.0
    return Decision(allow, status, reason[:200], headers, response_headers, quotas, ttl)


def _headers(value, allowed: HeaderAllowList) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("headers must be an object")
    out = {}
    for name, val in value.items():
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            val = str(val).lower() if isinstance(val, bool) else None
        if val is None:
            raise ValueError(f"header {name!r} has a non-scalar value")
        name = str(name).lower()
        val = str(val)
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name[:64]!r} is not a valid HTTP header name")
        if not allowed.allows(name):
            raise ValueError(f"header {name!r} is not in DECISION_HEADER_NAMES")
        if _HEADER_VALUE_FORBIDDEN.search(val):
            raise ValueError(f"header {name!r} has a control character in its value")
        if not val.isascii() and max(map(ord, val)) > 0xFF:
            # Header lines go out as Latin-1 (RFC 9110's obs-text); "名" cannot be
            # sent at all. A policy wanting Unicode encodes it (urlquery.encode).
            raise ValueError(f"header {name!r} has a character outside Latin-1 in its value")
        out[name] = val
    return out
