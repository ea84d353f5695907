"""Minting access tokens (RFC 9068 JWTs, header typ "at+jwt").

The one place that decides what an access token minted by the PDP looks
like: `pdp token` and the sign-in flows both call mint_access_token.
"""
from __future__ import annotations

import time
import uuid

import jwt

ACCESS_TOKEN_TYPE = "at+jwt"


def mint_access_token(key, algorithm: str, *, sub: str, roles, plan: str, mfa: bool,
                      lifetime_s: int, issuer: str | None = None, audience: str | None = None,
                      extra_claims: dict | None = None, jti: str | None = None,
                      now: float | None = None) -> tuple[str, dict]:
    """Returns (token, claims).

    Claims: sub, roles (list), plan, mfa, jti, iat, exp, plus iss/aud when
    given and extra_claims (e.g. sid, amr) that never override those.
    """
    issued = int(time.time() if now is None else now)
    claims = dict(extra_claims or {})
    claims.update({"sub": sub, "roles": list(roles), "plan": plan, "mfa": bool(mfa),
                   "jti": jti or uuid.uuid4().hex, "iat": issued, "exp": issued + int(lifetime_s)})
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"typ": ACCESS_TOKEN_TYPE})
    return token, claims
