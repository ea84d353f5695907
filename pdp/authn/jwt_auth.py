"""Bearer JWT verification with pyjwt: strict by default.

- only the algorithms in JWT_ALGORITHM (an allow-list; never `none`), and a
  single key family, so HS/RS key confusion cannot happen;
- exp required; exp/nbf/iat checked with a small leeway; iss only when
  JWT_ISSUER is set;
- aud: JWT_AUDIENCE is required when set, and a token naming an audience is
  refused when it is not (a token meant for another service is not ours);
- only access tokens: the header's typ (and, for IdPs that mark access tokens
  in a claim, the typ claim) must be one of JWT_ACCESS_TOKEN_TYPES, so a
  refresh or ID token signed with the same key is refused;
- a revoked jti (Redis denylist keyed by iss+jti) is rejected;
- auth_time, when present, is whole seconds, not after iat, not in the future.
"""

from __future__ import annotations

import binascii
import time
from collections import OrderedDict

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode

from .claims import check_auth_time, check_subject_claims
from .errors import AuthUnavailable, InvalidCredential
from .revocation import denylist_digest
from .token_types import DEFAULT_TOKEN_TYPES, describe_types, is_access_token, parse_token_types

_MAX_TOKEN_BYTES = 8192
ANONYMOUS = {"authenticated": False, "roles": []}


class _Lru(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self._size = size

    def put(self, key, value) -> None:
        if self._size <= 0:
            return
        self[key] = value
        self.move_to_end(key)
        if len(self) > self._size:
            self.popitem(last=False)


class _HmacKeyCheckedOnce(HMACAlgorithm):
    """pyjwt checks an HMAC secret on every decode (a JSON parse that fails, PEM
    and DER sniffing): a third of its time per HS256 token. A secret that passed
    is remembered, so the same check runs once per key; a refused one is refused
    again each time."""

    _MAX_KEYS = 64

    def __init__(self, hash_alg):
        super().__init__(hash_alg)
        self._prepared: dict = {}

    def prepare_key(self, key):
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)
            if len(self._prepared) < self._MAX_KEYS:
                self._prepared[key] = prepared
        return prepared


_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def decode_segment(segment: bytes, name: str) -> bytes:
    """pyjwt's strict base64url segment decode (PyJWS._decode_base64url_segment,
    as in pyjwt 2.15), the same checks in the same order, but with the alphabet checked by
    bytes.translate in C instead of a generator over every character: that
    generator was half of an HS256 decode (about 40 of 80 us per new token).

    Up to two '=' of padding (then a length that is a multiple of 4), no
    character outside the base64url alphabet, and a canonical encoding
    (re-encoding gives the same bytes back); anything else is DecodeError."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4 != 0):
        raise DecodeError(f"Invalid {name} padding")
    if len(stripped) % 4 == 1 or stripped.translate(None, _BASE64URL_ALPHABET):
        raise DecodeError(f"Invalid {name} padding")
    try:
        decoded = base64url_decode(stripped)
    except (TypeError, binascii.Error) as err:
        raise DecodeError(f"Invalid {name} padding") from err
    if base64url_encode(decoded) != stripped:
        raise DecodeError(f"Invalid {name} padding")
    return decoded


def _decoder() -> jwt.PyJWT:
    """A PyJWT of our own whose HS* algorithms check their key once and whose
    segments are decoded by decode_segment (pyjwt's module-level decoder is
    left as it is, for anyone else in the process)."""
    decoder = jwt.PyJWT()
    jws = getattr(decoder, "_jws", None)  # pyjwt >= 2.10 keeps its PyJWS here
    if jws is not None:
        if hasattr(jws, "_decode_base64url_segment"):  # newer pyjwt: its own strict check, in Python
            jws._decode_base64url_segment = decode_segment
        for name, hash_alg in (
            ("HS256", HMACAlgorithm.SHA256),
            ("HS384", HMACAlgorithm.SHA384),
            ("HS512", HMACAlgorithm.SHA512),
        ):
            jws.unregister_algorithm(name)
            jws.register_algorithm(name, _HmacKeyCheckedOnce(hash_alg))
    return decoder


class JwtAuthenticator:
    def __init__(
        self,
        keys,
        algorithms,
        denylist=None,
        issuer=None,
        audience=None,
        leeway_s: int = 30,
        revocation_fail_open: bool = False,
        cache_size: int = 10000,
        revocation_cache_s: float = 1.0,
        clock=time.time,
        token_types=DEFAULT_TOKEN_TYPES,
    ):
        self._keys = keys
        self._algorithms = list(algorithms)
        self._token_types = parse_token_types(token_types)
        self._denylist = denylist
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._fail_open = revocation_fail_open
        # A token's signature never changes its verdict, so a verified token is
        # remembered by its exact string; only its time claims are checked again.
        # (pyjwt spends ~150 us per decode validating base64 in Python.)
        self._verified = _Lru(cache_size)
        # "Not revoked" answers are reused for revocation_cache_s: a revocation
        # takes effect within that time, and a busy subject costs one Redis call per window.
        self._not_revoked = _Lru(cache_size)
        self._revocation_cache_s = revocation_cache_s
        self._clock = clock
        self._jwt = _decoder()

    def authenticate(self, authorization: str | None) -> dict:
        """The subject for input.subject; raises InvalidCredential or AuthUnavailable."""
        subject, pending = self.authenticate_deferred(authorization)
        if pending is not None:
            pending.resolve()
        return subject

    def authenticate_deferred(self, authorization: str | None):
        """authenticate, except for a revocation lookup only Redis can answer: it comes
        back as a PendingRevocation (else None) for the caller to fold into a Redis call
        of its own (the decider's quota spend) or resolve(), before anything is spent.

        Returns (subject, PendingRevocation | None); raises InvalidCredential or AuthUnavailable."""
        if not authorization:
            return ANONYMOUS, None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidCredential("unsupported authorization scheme")
        token = token.strip()
        if len(token) > _MAX_TOKEN_BYTES:
            raise InvalidCredential("token too large")
        cached = self._verified.get(token)
        if cached is not None:
            claims, subject = cached
            self._check_times(claims)
        else:
            claims = self._verify(token)
            subject = _subject(claims)
            self._verified.put(token, (claims, subject))
        return subject, self._revocation_lookup(claims)

    def _check_times(self, claims: dict) -> None:
        now = self._clock()
        if now > claims["exp"] + self._leeway:
            raise InvalidCredential("token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and now < nbf - self._leeway:
            raise InvalidCredential("token not yet valid")

    def _revocation_lookup(self, claims: dict):
        """None when the token is known not revoked here (raises when it is revoked,
        or offline with no answer); else the online lookup still to do."""
        jti = claims.get("jti")
        if jti is None or self._denylist is None:
            return None
        key = (str(claims.get("iss", "")), jti)
        until = self._not_revoked.get(key)
        if until is not None and until > time.monotonic():
            return None
        digest = denylist_digest(*key)
        try:
            revoked = self._denylist.local_verdict(digest)
        except AuthUnavailable:
            if not self._fail_open:
                raise
            return None
        if revoked is None:
            return PendingRevocation(self, key, self._denylist.online_key(digest))
        self._settle(key, revoked)
        return None

    def _resolve(self, key: tuple) -> None:
        try:
            revoked = self._denylist.is_revoked(*key)
        except AuthUnavailable:
            if not self._fail_open:
                raise
            return
        self._settle(key, revoked)

    def _settle(self, key: tuple, revoked: bool) -> None:
        if revoked:
            self._not_revoked.pop(key, None)
            raise InvalidCredential("token revoked")
        if self._revocation_cache_s > 0:
            self._not_revoked.put(key, time.monotonic() + self._revocation_cache_s)

    def _verify(self, token: str) -> dict:  # noqa: C901
        if getattr(self._keys, "one_key", False):
            # One key whatever the header says (JWT_SECRET_KEY, one PEM): pyjwt reads the
            # header once, inside decode_complete, and refuses an alg outside the list there.
            key, algorithms = self._keys.key_for({}), self._algorithms
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                raise InvalidCredential("malformed token") from None
            alg = header.get("alg")
            if alg not in self._algorithms:
                raise InvalidCredential("algorithm not allowed")
            key, algorithms = self._keys.key_for(header), [alg]
        # verify_aud stays on without JWT_AUDIENCE: pyjwt then refuses any token that names an audience.
        options = {"require": ["exp", "sub"], "verify_aud": True, "verify_iss": self._issuer is not None}
        try:
            decoded = self._jwt.decode_complete(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=options,
            )
        except jwt.InvalidAlgorithmError:
            raise InvalidCredential("algorithm not allowed") from None
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidCredential("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidCredential("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidCredential("wrong issuer") from None
        except jwt.MissingRequiredClaimError as err:
            raise InvalidCredential(f"missing claim {err.claim}") from None
        except jwt.InvalidSignatureError:
            raise InvalidCredential("invalid signature or token") from None
        except jwt.DecodeError:
            raise InvalidCredential("malformed token") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidCredential("invalid signature or token") from None
        claims, header = decoded["payload"], decoded["header"]
        if not isinstance(claims, dict):
            raise InvalidCredential("malformed token")
        # After the signature check: the header is now known to be the signer's.
        if not is_access_token(header, claims, self._token_types):
            raise InvalidCredential("not an access token (typ must be " + describe_types(self._token_types) + ")")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise InvalidCredential("jti must be a string")
        if not isinstance(claims.get("exp"), (int, float)):
            raise InvalidCredential("exp must be a number")
        check_auth_time(claims, self._clock(), self._leeway)
        return claims


class PendingRevocation:
    """The online half of one token's revocation check, not yet done.

    redis_key is the denylist key whose existence means revoked: a Redis call
    of the caller's own may look it up (EXISTS) and report the answer with
    settle(). Otherwise, or when that call fails, resolve() does the whole
    lookup (the denylist's own call, then its offline view). Either raises
    InvalidCredential for a revoked token."""

    __slots__ = ("_authn", "_key", "redis_key", "settled")

    def __init__(self, authn: JwtAuthenticator, key: tuple, redis_key: str):
        self._authn, self._key, self.redis_key = authn, key, redis_key
        self.settled = False

    def resolve(self) -> None:
        """The lookup, unless an answer was already settled (then nothing)."""
        if not self.settled:
            self.settled = True
            self._authn._resolve(self._key)

    def settle(self, revoked: bool) -> None:
        """The answer of a folded EXISTS; raises InvalidCredential when revoked."""
        self.settled = True
        self._authn._settle(self._key, revoked)


def _subject(claims: dict) -> dict:
    sub = claims.get("sub")
    roles = claims.get("roles", [])
    plan = claims.get("plan", "free")
    mfa = claims.get("mfa", False)
    check_subject_claims(sub, roles, plan, mfa)
    return {
        "authenticated": True,
        "sub": sub,
        "roles": sorted(set(roles)),
        "plan": plan,
        "mfa": mfa,
        "iss": claims.get("iss"),
        "claims": claims,
    }
