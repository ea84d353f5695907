"""Minting access tokens (RFC 9068 JWTs, header typ "at+jwt").

The one place that decides what an access token minted by the PDP looks
like: `pdp token`, the sign-in flows, the tests and the benchmarks all mint
here, so the verifier (jwt_auth.py) and every minter agree.
"""

from __future__ import annotations

import time
import uuid

import jwt

from .claims import check_auth_time, check_subject_claims
from .errors import InvalidCredential

ACCESS_TOKEN_TYPE = "at+jwt"


def sign_access_token(claims: dict, key, algorithm: str = "HS256", kid: str | None = None) -> str:
    """Signs claims exactly as given, with the access-token header.

    For callers that need exact control over the claims (tests of the
    verifier's refusals); real tokens come from mint_access_token.
    """
    headers = {"typ": ACCESS_TOKEN_TYPE}
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def mint_access_token(
    key,
    algorithm: str = "HS256",
    *,
    sub: str,
    roles=(),
    plan: str = "free",
    mfa: bool = False,
    lifetime_s: int = 900,
    issuer: str | None = None,
    audience: str | None = None,
    extra_claims: dict | None = None,
    jti: str | None = None,
    now: float | None = None,
    kid: str | None = None,
    auth_time: int | None = None,
) -> tuple[str, dict]:
    """Returns (token, claims); raises ValueError for claims the verifier would refuse.

    Claims: sub, roles (list), plan, mfa, jti, iat, exp, plus iss/aud and
    auth_time (when the session signed in) when given, and extra_claims (e.g.
    sid, amr) that never override those.

    Args:
        key: the HS* secret, or the private key of an RS*/ES*/PS* algorithm.
        lifetime_s: seconds from iat to exp.
    """
    roles = list(roles)
    try:
        check_subject_claims(sub, roles, plan, mfa)
    except InvalidCredential as err:
        raise ValueError(str(err)) from None
    if lifetime_s <= 0:
        raise ValueError("lifetime_s must be positive")
    issued = int(time.time() if now is None else now)
    claims = dict(extra_claims or {})
    claims.update(
        {
            "sub": sub,
            "roles": roles,
            "plan": plan,
            "mfa": mfa,
            "jti": jti or uuid.uuid4().hex,
            "iat": issued,
            "exp": issued + int(lifetime_s),
        }
    )
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if auth_time is not None:
        claims["auth_time"] = auth_time
        try:
            check_auth_time(claims, issued)
        except InvalidCredential as err:
            raise ValueError(str(err)) from None
    return sign_access_token(claims, key, algorithm, kid), claims


def mint_with_settings(
    settings,
    *,
    sub: str,
    roles=(),
    plan: str = "free",
    mfa: bool = False,
    minutes: int | None = None,
    jti: str | None = None,
) -> str:
    """An access token as this gateway's PDP accepts it (JWT_SECRET_KEY, JWT_ALGORITHM, JWT_ISSUER, JWT_AUDIENCE).

    Only HS* algorithms: the PDP holds no private key for the others.
    """
    algorithm = settings.jwt_algorithms[0]
    if not algorithm.startswith("HS"):
        raise ValueError("only HS* tokens can be minted (JWT_ALGORITHM is asymmetric)")
    minutes = minutes or settings.jwt_access_minutes
    token, _ = mint_access_token(
        settings.jwt_secret_key,
        algorithm,
        sub=sub,
        roles=roles,
        plan=plan,
        mfa=mfa,
        lifetime_s=60 * minutes,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jti=jti,
    )
    return token
