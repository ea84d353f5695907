"""A PDP on the shipped policies with quotas on, and admin/user tokens, for the admin page's tests."""

import time

import jwt
import pytest

from tests.conftest import SHIPPED_POLICIES, start_pdp


@pytest.fixture(scope="module")
def ui_pdp(redis_server, jwt_secret):
    server = start_pdp(
        {
            "JWT_SECRET_KEY": jwt_secret,
            "REDIS_URL": redis_server.redis_url,
            "POLICY_DIR": str(SHIPPED_POLICIES),
            "RATE_LIMIT_ENABLED": "true",
        },
        workers=1,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(jwt_secret):
    """token(sub, roles) -> an RFC 9068 access token valid for 10 minutes."""

    def _token(sub="root", roles=("admin",), plan="free"):
        now = int(time.time())
        claims = {
            "sub": sub,
            "roles": list(roles),
            "plan": plan,
            "mfa": True,
            "iat": now,
            "exp": now + 600,
            "jti": f"{sub}-{time.monotonic_ns()}",
        }
        return jwt.encode(claims, jwt_secret, algorithm="HS256", headers={"typ": "at+jwt"})

    return _token
