"""The HTTPS listener's TLS context: TLS 1.3 minimum by default, certificates reloadable."""
import logging
import ssl

log = logging.getLogger("proxy.tls")
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# Only forward-secret AEAD suites when 1.2 is allowed.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class ServerTls:
    """Owns one SSLContext; `reload()` swaps the certificate in place for new handshakes."""

    def __init__(self, cert_path: str, key_path: str, min_version: str):
        self._cert_path = cert_path
        self._key_path = key_path
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = _VERSIONS[min_version]
        self.context.set_ciphers(_TLS12_CIPHERS)
        self.context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        self.context.set_alpn_protocols(["http/1.1"])
        self.context.load_cert_chain(cert_path, key_path)

    def reload(self) -> bool:
        """Re-reads the certificate and key; keeps the old pair if the new one is bad."""
        try:
            self.context.load_cert_chain(self._cert_path, self._key_path)
        except (OSError, ssl.SSLError) as exc:
            log.error("certificate reload failed, keeping the previous one: %s", exc)
            return False
        log.warning("certificate reloaded from %s", self._cert_path)
        return True
