"""Egress through a SOCKS5 server (RFC 1928, user/password RFC 1929), e.g. Tor's SocksPort.

`socks5h://` hands the host name to the SOCKS server, which resolves it (the
only way to reach a .onion name, and no DNS leak); `socks5://` resolves
locally and sends the address. A SOCKS failure is an EgressError (an
OSError): the request fails closed with a 502/503, never goes direct.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

log = logging.getLogger("lucid.proxy.egress")
_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class EgressSpecError(ValueError):
    """A bad egress URL; the message names where it came from."""


class EgressError(OSError):
    """The SOCKS server refused, failed, or is unreachable."""


@dataclass(frozen=True)
class Socks5Egress:
    host: str
    port: int
    remote_dns: bool  # socks5h
    username: str = None
    password: str = None

    def __repr__(self):  # never shows the password
        return f"Socks5Egress({self.display})"

    @property
    def display(self) -> str:
        scheme = "socks5h" if self.remote_dns else "socks5"
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def open(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket connected through the SOCKS server to host:port (its timeout left at `timeout`)."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            log.error("SOCKS server %s unreachable: %s", self.display, exc)
            raise EgressError(f"SOCKS server {self.host}:{self.port} unreachable: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(sock, host, port)
            return sock
        except BaseException as exc:
            sock.close()
            if isinstance(exc, EgressError):
                log.error("SOCKS %s to %s:%d: %s", self.display, host, port, exc)
                raise
            if isinstance(exc, OSError):
                log.error("SOCKS %s to %s:%d broke: %s", self.display, host, port, exc)
                raise EgressError(f"SOCKS exchange failed: {exc}") from None
            raise

    def _handshake(self, sock, host, port):  # noqa: C901
        methods = b"\x00\x02" if self.username is not None else b"\x00"
        sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
        version, method = _recv_exact(sock, 2)
        if version != 5:
            raise EgressError("not a SOCKS5 server")
        if method == 0xFF:
            raise EgressError("SOCKS server accepts none of our authentication methods")
        if method == 2:
            if self.username is None:
                raise EgressError("SOCKS server wants a username and password")
            user, password = self.username.encode(), (self.password or "").encode()
            try:
                sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
                _, status = _recv_exact(sock, 2)
            except OSError as exc:  # EgressError too: a server that hangs up on our credentials refused them
                raise EgressError(f"SOCKS authentication failed ({exc})") from None
            if status != 0:
                raise EgressError("SOCKS authentication failed")
        elif method != 0:
            raise EgressError(f"SOCKS server chose an unknown method {method}")
        sock.sendall(b"\x05\x01\x00" + self._address(host) + struct.pack("!H", port))
        version, reply, _, atyp = _recv_exact(sock, 4)
        if version != 5:
            raise EgressError("bad SOCKS reply")
        if reply != 0:
            raise EgressError(f"SOCKS CONNECT to {host}:{port} refused: {_REPLIES.get(reply, f'code {reply}')}")
        skip = {1: 4, 4: 16}.get(atyp)
        if skip is None:
            skip = _recv_exact(sock, 1)[0]
        _recv_exact(sock, skip + 2)  # the bound address and port, unused

    def _address(self, host: str) -> bytes:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is None and not self.remote_dns:
            ip = ipaddress.ip_address(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
        if ip is None:
            name = host.encode("idna")
            if len(name) > 255:
                raise EgressError("host name too long for SOCKS")
            return b"\x03" + bytes([len(name)]) + name
        return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


def _recv_exact(sock, count: int) -> bytes:
    data = b""
    while len(data) < count:
        piece = sock.recv(count - len(data))
        if not piece:
            raise EgressError("SOCKS server closed the connection")
        data += piece
    return data


def parse_egress(value: object, where: str) -> Socks5Egress:
    """`socks5h://[user:pass@]host:port` (or socks5://) -> Socks5Egress; raises EgressSpecError."""
    if not isinstance(value, str) or not value.strip():
        raise EgressSpecError(f"{where}: expected a socks5h:// or socks5:// URL")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("socks5", "socks5h"):
        raise EgressSpecError(f"{where}: expected a socks5h:// or socks5:// URL, got scheme {parts.scheme!r}")
    try:
        port = parts.port
    except ValueError:
        raise EgressSpecError(f"{where}: bad port") from None
    if not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
        raise EgressSpecError(f"{where}: expected socks5h://host:port")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    for label, text in (("username", username), ("password", password)):
        if text is not None and len(text.encode()) > 255:
            raise EgressSpecError(f"{where}: SOCKS {label} longer than 255 bytes")
    return Socks5Egress(parts.hostname, port, parts.scheme == "socks5h", username, password)
