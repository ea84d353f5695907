"""Bearer JWT verification with pyjwt: strict by default.

- only the algorithms in JWT_ALGORITHM (an allow-list; never `none`), and a
  single key family, so HS/RS key confusion cannot happen;
- exp required; exp/nbf/iat checked with a small leeway; iss and aud only
  when JWT_ISSUER / JWT_AUDIENCE are set;
- a revoked jti (Redis denylist keyed by iss+jti) is rejected.
"""
from __future__ import annotations

import jwt

from .errors import AuthUnavailable, InvalidCredential

_MAX_TOKEN_BYTES = 8192
ANONYMOUS = {"authenticated": False, "roles": []}


class JwtAuthenticator:
    def __init__(self, keys, algorithms, denylist=None, issuer=None, audience=None,
                 leeway_s: int = 30, revocation_fail_open: bool = False):
        self._keys = keys
        self._algorithms = list(algorithms)
        self._denylist = denylist
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._fail_open = revocation_fail_open

    def authenticate(self, authorization: str | None) -> dict:
        """The subject for input.subject; raises InvalidCredential or AuthUnavailable."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidCredential("unsupported authorization scheme")
        token = token.strip()
        if len(token) > _MAX_TOKEN_BYTES:
            raise InvalidCredential("token too large")
        claims = self._verify(token)
        return _subject(claims)

    def _verify(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidCredential("malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidCredential("algorithm not allowed")
        key = self._keys.key_for(header)
        options = {"require": ["exp", "sub"], "verify_aud": self._audience is not None,
                   "verify_iss": self._issuer is not None}
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=self._audience,
                                issuer=self._issuer, leeway=self._leeway, options=options)
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
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidCredential("invalid signature or token") from None
        jti = claims.get("jti")
        if jti is not None and self._denylist is not None:
            if not isinstance(jti, str):
                raise InvalidCredential("jti must be a string")
            try:
                revoked = self._denylist.is_revoked(str(claims.get("iss", "")), jti)
            except AuthUnavailable:
                if not self._fail_open:
                    raise
                revoked = False
            if revoked:
                raise InvalidCredential("token revoked")
        return claims


def _subject(claims: dict) -> dict:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 256:
        raise InvalidCredential("sub must be a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidCredential("roles must be a list of strings")
    plan = claims.get("plan", "free")
    if not isinstance(plan, str):
        raise InvalidCredential("plan must be a string")
    mfa = claims.get("mfa", False)
    if not isinstance(mfa, bool):
        raise InvalidCredential("mfa must be true or false")
    return {"authenticated": True, "sub": sub, "roles": sorted(set(roles)), "plan": plan,
            "mfa": mfa, "iss": claims.get("iss"), "claims": claims}
