"""Minting access tokens: the one place that knows what an access token looks like.

An access token is a JWT whose header says `typ: at+jwt` (RFC 9068), with the
claims sub, roles, plan, mfa, jti, iat, exp (and iss/aud when configured).
`pdp token`, the sign-in endpoint, the tests and the benchmarks all mint
through here, so the verifier (jwt_auth.py) and every minter agree.
"""
from __future__ import annotations

import time
import uuid

import jwt

from .claims import check_subject_claims
from .errors import InvalidCredential

ACCESS_TOKEN_TYPE = "at+jwt"


def sign_access_token(claims: dict, key, algorithm: str = "HS256", kid: str | None = None) -> str:
    """Signs claims as they are, with the access-token header.

    Use mint_access_token for real tokens; this is for callers that need
    exact control over the claims (tests of the verifier's refusals).
    """
    headers = {"typ": ACCESS_TOKEN_TYPE}
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def mint_access_token(key, *, sub: str, roles=(), plan: str = "free", mfa: bool = False,
                      lifetime_s: int = 900, algorithm: str = "HS256", issuer: str | None = None,
                      audience: str | None = None, jti: str | None = None, now: float | None = None,
                      kid: str | None = None) -> str:
    """A signed access token; raises ValueError for claims the verifier would refuse.

    Args:
        key: the HS* secret or the private key of the RS*/ES*/PS* algorithm.
        lifetime_s: seconds from iat to exp.
        issuer, audience: the iss / aud claims, when the gateway is configured with them.
    """
    roles = list(roles)
    try:
        check_subject_claims(sub, roles, plan, mfa)
    except InvalidCredential as err:
        raise ValueError(str(err)) from None
    if lifetime_s <= 0:
        raise ValueError("lifetime_s must be positive")
    issued = int(time.time() if now is None else now)
    claims = {"sub": sub, "roles": roles, "plan": plan, "mfa": mfa,
              "jti": jti or uuid.uuid4().hex, "iat": issued, "exp": issued + int(lifetime_s)}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return sign_access_token(claims, key, algorithm, kid)


def mint_with_settings(settings, *, sub: str, roles=(), plan: str = "free", mfa: bool = False,
                       minutes: int | None = None, jti: str | None = None) -> str:
    """An access token as this gateway's PDP accepts it: JWT_SECRET_KEY, JWT_ALGORITHM, JWT_ISSUER, JWT_AUDIENCE.

    Only HS* algorithms: the PDP holds no private key for the others.
    """
    algorithm = settings.jwt_algorithms[0]
    if not algorithm.startswith("HS"):
        raise ValueError("only HS* tokens can be minted (JWT_ALGORITHM is asymmetric)")
    minutes = minutes or settings.jwt_access_minutes
    return mint_access_token(settings.jwt_secret_key, sub=sub, roles=roles, plan=plan, mfa=mfa,
                             lifetime_s=60 * minutes, algorithm=algorithm, issuer=settings.jwt_issuer,
                             audience=settings.jwt_audience, jti=jti)
