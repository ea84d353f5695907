"""Who the client is: TRUSTED_PROXIES and the X-Real-IP / X-Forwarded-For they set.

Shared by the PDP's forward-auth endpoints, its sign-in API and the proxy. A forwarded address is believed only from a
peer in TRUSTED_PROXIES: anyone else could make every request wear a new IP,
and a per-IP limit (login attempts) would mean nothing.
"""

from __future__ import annotations

import ipaddress


def parse_cidr_list(raw: str) -> tuple:
    """`10.0.0.0/8, 127.0.0.1` -> networks; ValueError naming the bad entry."""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR such as 10.0.0.0/8") from None
    return tuple(networks)


def canonical_ip(value) -> str | None:
    """The address in its canonical spelling, or None when value is not a plain IPv4/IPv6 address.

    A zone (`fe80::1%eth0`) is refused too: its text is free-form.
    """
    if not isinstance(value, str) or "%" in value or not 2 <= len(value) <= 45:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class TrustedProxies:
    """Which peers may tell us the client's address."""

    def __init__(self, networks=()):
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def is_trusted(self, ip) -> bool:
        if not self._networks or not isinstance(ip, str):
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._networks)

    def client_from_chain(self, peer_ip: str, chain) -> str:
        """The right-most address of an X-Forwarded-For chain that is not a trusted proxy.

        The chain is walked from the peer leftwards while each hop is trusted;
        garbage in the chain stops the walk (the last good hop is the client).
        """
        client = peer_ip
        if not self.is_trusted(peer_ip):
            return client
        for hop in reversed(list(chain)):
            if canonical_ip(hop) is None:
                break
            client = hop
            if not self.is_trusted(hop):
                break
        return client


def forwarded_for_chain(values) -> list:
    """The hops of one or more X-Forwarded-For header values, left to right."""
    chain = []
    for value in values:
        chain.extend(p.strip(" \t") for p in value.split(",") if p.strip(" \t"))
    return chain
