"""SecretBox: AES-256-GCM for TOTP secrets at rest, with key rotation.

TOTP_ENCRYPTION_KEYS is "id:key,id:key,...": each key 32 bytes in base64url
(`python -c "import secrets;print(secrets.token_urlsafe(32))"`). The first key
seals; every listed key opens. A sealed value is "v1.<id>.<nonce>.<ciphertext>"
(base64url), and the user id is the associated data, so a secret copied onto
another account does not open. To rotate: put a new key first, keep the old
ones after it; secrets are resealed under the new key when next used
(docs/auth.md), and an old key can be dropped once no user document names it.
"""

from __future__ import annotations

import base64
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_keys(raw: str) -> tuple[tuple[str, bytes], ...]:
    """Parses TOTP_ENCRYPTION_KEYS; raises ValueError with a message safe to print (no key material)."""
    keys = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise ValueError("expected id:base64url-key pairs separated by commas (id: letters, digits, _ or -)")
        try:
            key = _b64d(encoded.strip())
        except (ValueError, TypeError):
            key = b""
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} is not 32 bytes of base64url")
        if key_id in dict(keys):
            raise ValueError(f"key id {key_id!r} is listed twice")
        keys.append((key_id, key))
    if not keys:
        raise ValueError("expected at least one id:key")
    return tuple(keys)


class SecretBox:
    def __init__(self, keys: tuple[tuple[str, bytes], ...]):
        self._current_id, current = keys[0]
        self._current = AESGCM(current)
        self._all = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def current_key_id(self) -> str:
        return self._current_id

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._current.encrypt(nonce, plaintext.encode(), context.encode())
        return f"v1.{self._current_id}.{_b64e(nonce)}.{_b64e(sealed)}"

    def open(self, sealed: str, context: str) -> str:
        """Raises ValueError when the value is damaged, for another context, or its key is gone."""
        try:
            version, key_id, nonce, data = sealed.split(".")
            box = self._all[key_id]
            if version != "v1":
                raise ValueError
            return box.decrypt(_b64d(nonce), _b64d(data), context.encode()).decode()
        except (KeyError, ValueError, InvalidTag, AttributeError):
            raise ValueError("sealed secret cannot be opened with the configured keys") from None

    def needs_reseal(self, sealed: str) -> bool:
        return not sealed.startswith(f"v1.{self._current_id}.")
