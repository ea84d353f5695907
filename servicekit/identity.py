"""The identity headers: what the PDP tells the upstream about the caller.

Only the PDP's decision may set them, so every gateway in front of an upstream
(our proxy, Envoy over gRPC or HTTP ext_authz, nginx auth_request) removes a
client's own copies first. Declared once here; the proxy, the PDP's gRPC
answers and the generated Envoy and nginx configs all read this list (and a
test holds deploy/nginx's hand-written snippets to it).
"""

import re

IDENTITY_HEADERS = frozenset(
    ("x-user-id", "x-user-roles", "x-user-plan", "x-user-mfa", "x-user-sub", "x-user-email", "x-auth-subject")
)


def is_identity_header(name: str) -> bool:
    """A lower-case header name only the PDP may set: the list, and any other x-user-*."""
    return name in IDENTITY_HEADERS or name.startswith("x-user-")


# The headers a PDP decision may set (DECISION_HEADER_NAMES of both services):
# identity for the upstream, RateLimit and the like for the client. The PDP
# denies a decision setting any other; the proxy drops a client's own copies of
# all of them, so a custom name (x-tenant) is as unforgeable as x-user-id.
DECISION_HEADER_NAMES_DEFAULT = (
    "x-user-id,x-user-roles,x-user-plan,x-user-mfa,x-user-email,ratelimit*,retry-after,www-authenticate,allow"
)

# A decision setting these would reframe or retarget the request (smuggling), not describe it.
_FRAMING = frozenset(
    (
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "content-encoding",
    )
)


def parse_header_names(raw: str) -> tuple[str, ...]:
    """DECISION_HEADER_NAMES: comma-separated lower-cased names, a trailing * matching a prefix."""
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    bad = [n for n in names if not re.fullmatch(r"[a-z0-9!#$%&'+.^_`|~-]{1,64}\*?", n)]
    if not names or bad:
        raise ValueError("expected a comma-separated list of header names (a trailing * matches a prefix)")
    matcher = HeaderNames(names)
    framing = sorted(n for n in _FRAMING if matcher.allows(n))
    if framing:
        raise ValueError(f"a decision may not set {', '.join(framing)} (framing, routing and hop-by-hop headers)")
    return names


class HeaderNames:
    """A DECISION_HEADER_NAMES list as a matcher; `ratelimit*` matches a prefix."""

    def __init__(self, names):
        self._exact = frozenset(n for n in names if not n.endswith("*"))
        self._prefixes = tuple(n[:-1] for n in names if n.endswith("*"))

    def allows(self, name: str) -> bool:
        return name in self._exact or name.startswith(self._prefixes)
