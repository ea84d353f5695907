"""TLS to upstreams (https:// endpoints): verified, with SNI, optionally mTLS.

A failed handshake or verification is an UpstreamTlsError (a 502 with one log
line naming the endpoint and the reason); nothing ever falls back to plain
text. The routes file's `tls:` block of a cluster is parsed here, strictly.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

log = logging.getLogger("lucid.proxy.upstream_tls")
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_KEYS = {"ca_file": str, "server_name": str, "client_cert": str, "client_key": str, "min_version": str, "verify": bool}


class TlsSpecError(ValueError):
    """A bad `tls:` block; the message names the key path."""


@dataclass(frozen=True)
class UpstreamTlsSpec:
    ca_file: str = None  # None: the system's trust store
    server_name: str = None  # SNI and the name verified; None: the endpoint's host
    client_cert: str = None  # PEM chain presented to the upstream (mTLS)
    client_key: str = None
    min_version: str = "1.2"
    verify: bool = True  # false only for a lab; still TLS, never plain text


def parse_tls_spec(body: object, where: str) -> UpstreamTlsSpec:  # noqa: C901
    """The `tls:` mapping of a cluster; raises TlsSpecError naming `where.key`."""
    if body is None:
        return UpstreamTlsSpec()
    if not isinstance(body, dict):
        raise TlsSpecError(f"{where}: expected a mapping")
    for key, value in body.items():
        if key not in _KEYS:
            raise TlsSpecError(f"{where}.{key}: unknown key (one of {', '.join(sorted(_KEYS))})")
        kind = _KEYS[key]
        if not isinstance(value, kind) or (kind is str and not value.strip()):
            raise TlsSpecError(f"{where}.{key}: expected {'true or false' if kind is bool else 'a non-empty string'}")
    spec = UpstreamTlsSpec(**body)
    if spec.min_version not in _VERSIONS:
        raise TlsSpecError(f'{where}.min_version: expected "1.2" or "1.3"')
    if bool(spec.client_cert) != bool(spec.client_key):
        raise TlsSpecError(f"{where}: client_cert and client_key go together")
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(spec, key)
        if path and not os.path.isfile(path):
            raise TlsSpecError(f"{where}.{key}: no such file {path!r}")
    try:
        build_context(spec)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSpecError(f"{where}: cannot load the certificates: {exc}") from None
    return spec


def build_context(spec: UpstreamTlsSpec) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=spec.ca_file)
    context.minimum_version = _VERSIONS[spec.min_version]
    if not spec.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if spec.client_cert:
        context.load_cert_chain(spec.client_cert, spec.client_key)
    context.set_alpn_protocols(["http/1.1"])
    return context


class UpstreamTlsError(OSError):
    """The TLS handshake with an upstream failed (untrusted, wrong name, refused client cert...)."""

    tls_failure = True


class UpstreamTls:
    """Wraps connected sockets in TLS for one endpoint (gevent's ssl under the proxy's patching)."""

    def __init__(self, spec: UpstreamTlsSpec, host: str, clock: Callable[[], float] = time.monotonic):
        self.server_name = spec.server_name or host
        self._context = build_context(spec)
        self._clock = clock
        self._logged_at = None
        self._suppressed = 0

    def wrap(self, sock: socket.socket, endpoint: str) -> ssl.SSLSocket:
        """The TLS socket after a complete handshake, or UpstreamTlsError (sock closed)."""
        try:
            return self._context.wrap_socket(sock, server_hostname=self.server_name)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            sock.close()
            if getattr(exc, "verify_message", None):
                reason = f"certificate verify failed: {exc.verify_message}"
            else:
                reason = getattr(exc, "reason", None) or str(exc)
            self._log_failure(endpoint, reason)
            raise UpstreamTlsError(f"TLS handshake failed: {reason}") from None

    def _log_failure(self, endpoint: str, reason: str) -> None:
        """One line per endpoint and second at most: every request of an outage retries the handshake."""
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < 1.0:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more in the last second)" if self._suppressed else ""
        log.error("TLS handshake with %s (server name %s) failed: %s%s", endpoint, self.server_name, reason, more)
        self._logged_at = now
        self._suppressed = 0
