"""Where verification keys come from: a shared secret, a PEM, or a JWKS URL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import jwt
import requests

from .errors import AuthUnavailable, InvalidCredential


class SecretKey:
    """HS* verification with JWT_SECRET_KEY."""

    one_key = True  # key_for ignores the header

    def __init__(self, secret: str):
        self._secret = secret

    def key_for(self, header: dict):
        return self._secret


class PemKey:
    """RS*/ES*/PS* verification with one PEM public key (inline or a file path)."""

    one_key = True

    def __init__(self, pem_or_path: str):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        text = pem_or_path if "-----BEGIN" in pem_or_path else Path(pem_or_path).read_text()
        try:
            self._key = load_pem_public_key(text.encode())
        except ValueError:
            raise ValueError("JWT_PUBLIC_KEY: not a PEM public key") from None

    def key_for(self, header: dict):
        return self._key


class JwksKeys:
    """Keys from a JWKS URL, by kid; refetched on an unknown kid, at most once per min_refresh_s."""

    def __init__(self, url: str, min_refresh_s: float = 30.0, timeout_s: float = 2.0, clock=time.monotonic):
        self._url = url
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, object] = {}
        self._last_fetch = None
        self._lock = threading.Lock()
        self.fetches = 0

    def key_for(self, header: dict):
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidCredential("token has no kid")
        key = self._keys.get(kid)
        if key is None:
            self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidCredential("unknown kid")
        return key

    def _refresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last_fetch is not None and now - self._last_fetch < self._min_refresh_s:
                return  # rate-limited: an unknown kid must not make us hammer the IdP
            self._last_fetch = now
            self.fetches += 1
            try:
                resp = requests.get(self._url, timeout=self._timeout_s)
                resp.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(resp.json())
            except (requests.RequestException, ValueError, jwt.PyJWKSetError) as err:
                if not self._keys:
                    raise AuthUnavailable(f"JWKS unavailable: {err.__class__.__name__}") from None
                return  # keep serving the keys we have
            self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
