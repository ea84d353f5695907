"""Only access tokens are access tokens: typ at+jwt (RFC 9068) and no foreign aud, through the real PDP."""

import base64
import json
import os
import subprocess
import sys
import time

import jwt
import pytest

from pdp.config import ConfigError, load_settings
from tests.pdp.test_jwt import decide


def _header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_minted_access_token_is_accepted(pdp, mint):
    token = mint("alice")
    assert _header(token)["typ"] == "at+jwt"
    assert decide(pdp, token)["allow"] is True


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+JWT+refresh", "application/jwt", "id+jwt"])
def test_a_token_that_does_not_say_it_is_an_access_token_is_401(pdp, mint, typ):
    d = decide(pdp, mint("alice", header_typ=typ))
    assert (d["allow"], d["status"]) == (False, 401)
    assert "not an access token" in d["reason"]
    assert d["response_headers"]["www-authenticate"].startswith("Bearer")


def test_a_seven_day_refresh_style_token_is_not_an_access_token(pdp, jwt_secret):
    # What a gateway that signs refresh tokens as JWTs would hand out: same key, long life.
    now = int(time.time())
    refresh = jwt.encode(
        {"sub": "alice", "roles": ["user"], "type": "refresh", "iat": now, "exp": now + 7 * 86400},
        jwt_secret,
        algorithm="HS256",
    )
    d = decide(pdp, refresh)
    assert (d["allow"], d["status"]) == (False, 401) and "not an access token" in d["reason"]


def test_media_type_spelling_of_at_jwt_is_accepted(pdp, mint):
    # RFC 7515 4.1.9: "application/" may be written, and media types are case-insensitive.
    assert decide(pdp, mint("alice", header_typ="application/AT+JWT"))["allow"] is True


def test_a_token_for_another_audience_is_refused_without_jwt_audience(pdp, mint):
    d = decide(pdp, mint("alice", aud="payments-internal"))
    assert (d["allow"], d["status"]) == (False, 401) and "wrong audience" in d["reason"]
    d = decide(pdp, mint("alice", aud=["payments-internal", "lucid"]))
    assert d["status"] == 401


def test_keycloak_style_types_by_setting(pdp_factory, mint):
    # Keycloak: header typ JWT for every token; the payload's typ tells Bearer from Refresh and ID.
    server = pdp_factory(JWT_ACCESS_TOKEN_TYPES="JWT:Bearer")
    assert decide(server, mint("kc", header_typ="JWT", typ="Bearer"))["allow"] is True
    for claim in ("Refresh", "ID", None):
        d = decide(server, mint("kc", header_typ="JWT", typ=claim))
        assert d["status"] == 401 and "not an access token" in d["reason"]
    assert decide(server, mint("kc"))["status"] == 401  # at+jwt is not in the list any more
    both = pdp_factory(JWT_ACCESS_TOKEN_TYPES="at+jwt, JWT:Bearer")
    assert decide(both, mint("kc"))["allow"] is True
    assert decide(both, mint("kc", header_typ="JWT", typ="Bearer"))["allow"] is True


def test_none_accepts_only_tokens_without_a_typ_header(pdp_factory, mint):
    server = pdp_factory(JWT_ACCESS_TOKEN_TYPES="none")
    assert decide(server, mint("plain", header_typ=None))["allow"] is True
    assert decide(server, mint("plain", header_typ="none"))["status"] == 401
    assert decide(server, mint("plain", header_typ="JWT"))["status"] == 401


def test_bad_token_types_setting_names_the_variable():
    for raw in (",", "JWT:", "at jwt"):
        with pytest.raises(ConfigError) as err:
            load_settings({"JWT_SECRET_KEY": "x" * 40, "JWT_ACCESS_TOKEN_TYPES": raw})
        assert str(err.value).startswith("JWT_ACCESS_TOKEN_TYPES:")


def test_pdp_token_mints_an_access_token_the_pdp_accepts(pdp, jwt_secret):
    done = subprocess.run(
        [sys.executable, "-m", "pdp", "token", "--sub", "cli", "--roles", "user,admin", "--mfa"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "JWT_SECRET_KEY": jwt_secret},
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert _header(token) == {"alg": "HS256", "typ": "at+jwt"}
    claims = jwt.decode(token, jwt_secret, algorithms=["HS256"])
    assert set(claims) == {"sub", "roles", "plan", "mfa", "jti", "iat", "exp"}
    assert (claims["sub"], claims["roles"], claims["mfa"]) == ("cli", ["user", "admin"], True)
    assert decide(pdp, token)["allow"] is True
