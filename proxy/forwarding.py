"""Which headers cross the proxy, in which direction, and who the client is."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from servicekit.identity import HeaderNames, is_identity_header

from .http11 import valid_host
from .response_transform import rename_headers

if TYPE_CHECKING:
    from .routes import Route

# RFC 9110 7.6.1 connection-specific fields, plus the non-standard ones proxies use.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    )
)
# Set by the proxy from what it saw; never passed through from the client.
PROXY_SET = frozenset(
    (
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
        "expect",
        "content-length",
        "host",
        # W3C trace context: the proxy passes on its own span's (servicekit/trace_context.py).
        "traceparent",
        "tracestate",
    )
)
# Client headers that make a backend (or a framework in it) use another method,
# path, scheme, port or prefix than the one the PDP judged: dropped unless a
# route allows one by name (`client_headers.allow` in the routes file).
TARGET_CHANGING = frozenset(
    (
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-original-method",
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
    )
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")


def request_id(incoming: str | None) -> str:
    """Keeps a well-formed incoming X-Request-ID, else makes one."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return os.urandom(16).hex()


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens = set()
    for name, value in headers:
        if name == "connection":
            tokens.update(t.strip(" \t").lower() for t in value.split(",") if t.strip(" \t"))
    return tokens


class ClientAddress:
    """Resolves the client IP and X-Forwarded-* given the peer and TRUSTED_PROXIES."""

    def __init__(self, trusted_networks: Iterable[str]):
        # One trust decision for the proxy and the PDP's forward-auth (servicekit/client_ip.py).
        from servicekit.client_ip import TrustedProxies

        self._trusted = TrustedProxies(trusted_networks)

    def is_trusted(self, ip: str) -> bool:
        return self._trusted.is_trusted(ip)

    def resolve(
        self, peer_ip: str, headers: Iterable[tuple[str, str]], scheme: str, host: str
    ) -> tuple[str, str, str, str]:
        """Returns (client_ip, x-forwarded-for, x-forwarded-proto, x-forwarded-host).

        An incoming X-Forwarded-For is believed only when the peer is a trusted
        proxy; then the client is the right-most address that is not trusted.
        """
        if not self.is_trusted(peer_ip):
            return peer_ip, peer_ip, scheme, host
        chain = []
        for name, value in headers:
            if name == "x-forwarded-for":
                chain.extend(p.strip(" \t") for p in value.split(",") if p.strip(" \t"))
        client_ip = peer_ip
        for hop in reversed(chain):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage in the chain: stop believing it here
            client_ip = hop
            if not self.is_trusted(hop):
                break
        forwarded_for = ", ".join(chain + [peer_ip])
        proto = scheme
        forwarded_host = host
        for name, value in headers:
            if name == "x-forwarded-proto" and value.strip(" \t").lower() in ("http", "https"):
                proto = value.strip(" \t").lower()
            elif name == "x-forwarded-host" and valid_forwarded_host(value):
                forwarded_host = value.strip(" \t")
        return client_ip, forwarded_for, proto, forwarded_host


def valid_forwarded_host(value: str) -> bool:
    """A trusted proxy's X-Forwarded-Host is believed only when it is a well-formed host[:port]."""
    return valid_host(value.strip(" \t"))


def target_changing(name: str) -> bool:
    """True for a client header dropped by default (see TARGET_CHANGING).

    Also x-envoy-* (Envoy acts on them) and any name with `_`: CGI-style
    servers read `X_User_Id` as `X-User-Id`, so it could pass for a header
    the proxy removed.
    """
    return name in TARGET_CHANGING or name.startswith("x-envoy-") or "_" in name


def client_header_passes(name: str, route: Route | None) -> bool:
    """Whether a client header may reach the PDP and the upstream (identity and proxy-set aside)."""
    if not target_changing(name):
        return True
    return route is not None and name in route.client_headers_allow


def pdp_only(name: str, pdp_settable: HeaderNames) -> bool:
    """Whether only the PDP may set this (lower-case) header: identity, and every
    name its decisions may set (DECISION_HEADER_NAMES), so a client's copy of a
    custom one (x-tenant) cannot pass for the PDP's when a decision leaves it out."""
    return is_identity_header(name) or pdp_settable.allows(name)


def upstream_headers(
    headers: Iterable[tuple[str, str]],
    decision_headers: Mapping[str, str],
    route: Route,
    extra: Iterable[tuple[str, str]],
    pdp_settable: HeaderNames,
) -> list[tuple[str, str]]:
    """Client headers minus hop-by-hop, identity and proxy-set ones, plus the PDP's and ours.

    Args:
        headers: the client's [(lower-case name, value)].
        decision_headers: the PDP's `headers` (identity) to add.
        route: the matched route (request_add / request_remove).
        extra: [(name, value)] the proxy sets (request id, X-Forwarded-*, Host).
        pdp_settable: the names the PDP's decisions may set (config.decision_header_names).
    """
    drop = HOP_BY_HOP | PROXY_SET | connection_tokens(headers) | route.request_remove
    out = []
    for name, value in headers:
        if name in drop or pdp_only(name, pdp_settable) or name in decision_headers:
            continue
        if not client_header_passes(name, route):
            continue
        out.append((name, value))
    out.extend(route.request_add)
    out.extend(decision_headers.items())
    out.extend(extra)
    return out


def response_headers(upstream_headers_: Iterable[tuple[str, str]], route: Route) -> list[tuple[str, str]]:
    """The upstream's headers as the client gets them: hop-by-hop and the route's
    removals (Server, X-Powered-By by default) dropped, renames, then additions."""
    drop = HOP_BY_HOP | connection_tokens(upstream_headers_) | route.response_remove | {"content-length"}
    out = [(n, v) for n, v in upstream_headers_ if n not in drop]
    out = rename_headers(out, route.response_rename)
    out.extend(route.response_add)
    return out
