"""The HTTPS listener's TLS context: TLS 1.3 minimum by default, certificates reloadable.

cert-manager (and a Kubernetes secret volume) renews by rewriting the files,
so each worker polls them (`watch`) and reloads on a change, with no signal
and no rollout; SIGHUP still reloads at once. A new pair is loaded into a
fresh context, swapped in only when it loaded whole: a half-written or
mismatched pair keeps the last good one.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gevent

log = logging.getLogger("lucid.proxy.tls")
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# Only forward-secret AEAD suites when 1.2 is allowed.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class ServerTls:
    """Owns the current SSLContext; `reload()` swaps in a new one for new handshakes."""

    def __init__(self, cert_path: str, key_path: str, min_version: str):
        self._cert_path = cert_path
        self._key_path = key_path
        self._min_version = min_version
        self.context = self._build()
        self._seen = self._signature()

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[self._min_version]
        context.set_ciphers(_TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(self._cert_path, self._key_path)
        return context

    def reload(self) -> bool:
        """Re-reads the certificate and key; keeps the old pair if the new one is bad."""
        try:
            context = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("certificate reload failed, keeping the previous one: %s", exc)
            return False
        self.context = context
        log.warning("certificate reloaded from %s", self._cert_path)
        return True

    def _signature(self):
        """What changes when either file is rewritten or its symlink swapped."""
        out = []
        for path in (self._cert_path, self._key_path):
            try:
                st = os.stat(path)
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def check_files(self) -> bool:
        """Reloads when the files changed since the last look; True if a new pair is now served."""
        current = self._signature()
        if current == self._seen:
            return False
        self._seen = current  # a bad write is reported once, retried on the next change
        if None in current:
            log.error(
                "certificate reload skipped, keeping the previous one: %s or %s is missing",
                self._cert_path,
                self._key_path,
            )
            return False
        return self.reload()

    def watch(self, interval_s: float) -> gevent.Greenlet | None:
        """A greenlet polling the files every interval_s (None when interval_s is 0)."""
        if interval_s <= 0:
            return None
        import gevent

        def loop():
            while True:
                gevent.sleep(interval_s)
                try:
                    self.check_files()
                except Exception:  # the watcher must outlive any surprise
                    log.exception("certificate watch failed")

        return gevent.spawn(loop)
