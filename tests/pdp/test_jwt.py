"""Strict token checks, end to end through the real PDP."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import redis
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pdp.authn.revocation import denylist_key
from pdp.authn.tokens import sign_access_token


def decide(pdp, token, path="/private/x"):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    resp = requests.post(
        pdp.url + "/v1/check", timeout=5, json={"request": {"method": "GET", "path": path, "headers": headers}}
    )
    assert resp.status_code == 200
    return resp.json()


def b64(doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_valid_token_is_accepted(pdp, mint):
    assert decide(pdp, mint("alice"))["allow"] is True


@pytest.mark.parametrize(
    "claims,why",
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"exp": None}, "missing claim exp"),
        ({"sub": None}, "missing claim sub"),
        ({"roles": "admin"}, "roles must be a list"),
        ({"mfa": "yes"}, "mfa must be true or false"),
        ({"auth_time": str(int(time.time()))}, "auth_time must be a whole number"),
        ({"auth_time": time.time() - 5}, "auth_time must be a whole number"),
        ({"auth_time": True}, "auth_time must be a whole number"),
        # Parameters are computed at collection, maybe many minutes before the test runs: both
        # times are given, in the past, so only their order is wrong.
        ({"iat": int(time.time()) - 60, "auth_time": int(time.time()) - 30}, "auth_time must not be after iat"),
        ({"iat": None, "auth_time": int(time.time()) + 86400}, "auth_time must not be in the future"),
    ],
)
def test_bad_claims_are_401_never_anonymous(pdp, mint, claims, why):
    sub = claims.pop("sub", "alice")
    d = decide(pdp, mint(sub, **claims) if sub else mint(None, **claims))
    assert (d["allow"], d["status"]) == (False, 401)
    assert why in d["reason"]
    assert d["response_headers"]["www-authenticate"].startswith("Bearer")


def test_an_auth_time_at_or_before_iat_is_accepted(pdp, mint):
    now = int(time.time())
    assert decide(pdp, mint("alice", iat=now, auth_time=now))["allow"] is True
    assert decide(pdp, mint("alice", iat=now, auth_time=now - 86400))["allow"] is True


def test_wrong_secret_is_401(pdp, mint):
    d = decide(pdp, mint("alice", secret="y" * 64))
    assert d["status"] == 401 and "signature" in d["reason"]


def test_alg_none_is_rejected(pdp):
    token = b64({"alg": "none", "typ": "at+jwt"}) + "." + b64({"sub": "alice", "exp": int(time.time()) + 60}) + "."
    d = decide(pdp, token)
    assert d["status"] == 401 and "algorithm not allowed" in d["reason"]


def test_algorithm_outside_allow_list_is_rejected(pdp, mint):
    d = decide(pdp, mint("alice", alg="HS512"))
    assert d["status"] == 401 and "algorithm not allowed" in d["reason"]


def test_garbage_and_other_schemes_are_401(pdp):
    assert decide(pdp, "not-a-jwt")["status"] == 401
    resp = requests.post(
        pdp.url + "/v1/check",
        timeout=5,
        json={"request": {"method": "GET", "path": "/private/x", "headers": {"authorization": "Basic YWxpY2U6cHc="}}},
    )
    assert resp.json()["status"] == 401


def test_revoked_jti_is_rejected(pdp, mint, redis_server):
    token = mint("alice", jti="revoke-me", iss="https://issuer.example")
    assert decide(pdp, token)["allow"] is True
    r = redis.Redis.from_url(redis_server.redis_url)
    r.set(denylist_key("https://issuer.example", "revoke-me"), 1, ex=60)
    # "not revoked" answers are reused for JWT_REVOCATION_CACHE_S (1 s by default)
    time.sleep(1.1)
    for _ in range(6):  # every worker now refuses it
        d = decide(pdp, token)
        assert d["status"] == 401 and "revoked" in d["reason"]
    # the same jti from another issuer is a different token
    assert decide(pdp, mint("alice", jti="revoke-me", iss="https://other.example"))["allow"] is True


def test_denylist_down_fails_closed(pdp_factory, mint):
    server = pdp_factory(REDIS_URL="redis://127.0.0.1:1/0")
    d = decide(server, mint("alice", jti="abc"))
    assert (d["allow"], d["status"], d["reason"]) == (False, 503, "auth_unavailable")
    ready = requests.get(server.url + "/v1/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False


def test_issuer_and_audience_enforced_when_set(pdp_factory, mint):
    server = pdp_factory(JWT_ISSUER="https://idp.example", JWT_AUDIENCE="lucid")
    assert decide(server, mint("a", iss="https://idp.example", aud="lucid"))["allow"] is True
    assert "wrong issuer" in decide(server, mint("a", iss="https://evil.example", aud="lucid"))["reason"]
    assert "wrong audience" in decide(server, mint("a", iss="https://idp.example", aud="other"))["reason"]
    assert decide(server, mint("a", aud="lucid"))["status"] == 401  # iss missing


@pytest.fixture(scope="module")
def rsa_keys():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, pem


def test_rs256_with_pem_and_no_key_confusion(pdp_factory, rsa_keys, tmp_path):
    key, pem = rsa_keys
    path = tmp_path / "pub.pem"
    path.write_text(pem)
    server = pdp_factory(JWT_ALGORITHM="RS256", JWT_PUBLIC_KEY=str(path), JWT_SECRET_KEY="")
    now = int(time.time())
    good = sign_access_token({"sub": "rs", "exp": now + 60}, key, "RS256")
    assert decide(server, good)["allow"] is True
    # HS256 signed with the public key as the HMAC secret: the classic confusion attack.
    forged_header = b64({"alg": "HS256", "typ": "at+jwt"})
    forged_body = b64({"sub": "rs", "exp": now + 60})
    import hashlib
    import hmac

    sig = hmac.new(pem.encode(), f"{forged_header}.{forged_body}".encode(), hashlib.sha256).digest()
    forged = f"{forged_header}.{forged_body}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    d = decide(server, forged)
    assert d["status"] == 401 and "algorithm not allowed" in d["reason"]


class _JwksHandler(BaseHTTPRequestHandler):
    jwks = {"keys": []}
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        body = json.dumps(type(self).jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _jwk(private_key, kid):
    doc = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    return {**doc, "kid": kid, "use": "sig", "alg": "ES256"}


def test_jwks_refetched_on_unknown_kid_and_rate_limited(pdp_factory):
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _JwksHandler.jwks = {"keys": [_jwk(k1, "one")]}
    _JwksHandler.hits = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/jwks.json"
        server = pdp_factory(JWT_ALGORITHM="ES256", JWKS_URL=url, JWT_SECRET_KEY="", JWKS_MIN_REFRESH_S="1")
        now = int(time.time())
        t1 = sign_access_token({"sub": "e", "exp": now + 60}, k1, "ES256", kid="one")
        assert decide(server, t1)["allow"] is True
        assert _JwksHandler.hits == 1
        # The IdP rotates in a new key: an unknown kid triggers one refetch.
        _JwksHandler.jwks = {"keys": [_jwk(k1, "one"), _jwk(k2, "two")]}
        t2 = sign_access_token({"sub": "e", "exp": now + 60}, k2, "ES256", kid="two")
        time.sleep(1.1)
        assert decide(server, t2)["allow"] is True
        assert _JwksHandler.hits == 2
        # A flood of unknown kids does not hammer the IdP.
        bogus = sign_access_token({"sub": "e", "exp": now + 60}, k2, "ES256", kid="nope")
        for _ in range(20):
            assert decide(server, bogus)["status"] == 401
        assert _JwksHandler.hits <= 3
    finally:
        httpd.shutdown()


def test_remembered_token_still_expires(pdp_factory, mint):
    server = pdp_factory(JWT_LEEWAY_S="0")
    token = mint("short", exp=int(time.time()) + 2)
    assert decide(server, token)["allow"] is True
    assert decide(server, token)["allow"] is True  # now from the verified-token cache
    time.sleep(2.2)
    d = decide(server, token)
    assert d["status"] == 401 and "expired" in d["reason"]


def test_an_hmac_secret_is_checked_once_and_a_bad_one_every_time(monkeypatch):
    """pyjwt's per-decode key check (a third of an HS256 decode) runs once per
    secret; a secret it refuses (a PEM public key used as an HMAC secret) is
    refused on every token, never remembered as good."""
    from jwt.algorithms import HMACAlgorithm

    from pdp.authn.errors import InvalidCredential
    from pdp.authn.jwt_auth import JwtAuthenticator
    from pdp.authn.keys import SecretKey

    secret = "s3cret-" * 6
    tokens = [
        jwt.encode({"sub": f"u{n}", "exp": int(time.time()) + 60}, secret, algorithm="HS256", headers={"typ": "at+jwt"})
        for n in range(3)
    ]
    forged = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256")
    untyped = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, "k" * 32)
    checks = []
    original = HMACAlgorithm.prepare_key
    monkeypatch.setattr(HMACAlgorithm, "prepare_key", lambda self, key: checks.append(key) or original(self, key))
    auth = JwtAuthenticator(SecretKey(secret), ["HS256"], cache_size=0)
    for n, token in enumerate(tokens):
        assert auth.authenticate(f"Bearer {token}")["sub"] == f"u{n}"
    assert checks == [secret]
    with pytest.raises(InvalidCredential, match="invalid signature"):
        auth.authenticate(f"Bearer {forged}")  # the remembered key still verifies every signature

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    confused = JwtAuthenticator(SecretKey(pem), ["HS256"], cache_size=0)
    checks.clear()
    for _ in range(2):
        with pytest.raises(InvalidCredential):
            confused.authenticate("Bearer " + untyped)
    assert len(checks) == 2


def test_token_segments_are_decoded_as_strictly_as_pyjwt_does():
    """decode_segment replaces pyjwt's per-character alphabet generator (half
    of an HS256 decode) on our decoder: every segment pyjwt refuses is refused
    with the same error, every one it takes decodes to the same bytes."""
    from jwt.api_jws import PyJWS
    from jwt.exceptions import DecodeError

    from pdp.authn.jwt_auth import _decoder, decode_segment

    pyjwt_own = getattr(PyJWS, "_decode_base64url_segment", None)
    if pyjwt_own is None:
        pytest.skip("this pyjwt has no strict segment decode to match")
    assert _decoder()._jws._decode_base64url_segment is decode_segment
    good = [base64.urlsafe_b64encode(bytes(range(n))).rstrip(b"=") for n in range(0, 40)]
    cases = [*good, *(g + b"=" * k for g in good[:12] for k in (1, 2, 3, 4))]
    cases += [b"!!!!", b"ab+c", b"ab/c", b"ab c", b"abc\n", "é".encode(), b"a", b"abcde", b"=", b"==", b"a===", b"ab=c"]
    cases += [b"AB", b"AC", b"AAB", b"AAC", b"QQ", b"QR"]  # non-canonical trailing bits
    for case in cases:
        try:
            expected = pyjwt_own(case, "payload")
        except DecodeError as err:
            with pytest.raises(DecodeError) as ours:
                decode_segment(case, "payload")
            assert str(ours.value) == str(err), case
        else:
            assert decode_segment(case, "payload") == expected, case


def test_a_token_with_junk_in_a_segment_is_refused():
    from pdp.authn.errors import InvalidCredential
    from pdp.authn.jwt_auth import JwtAuthenticator
    from pdp.authn.keys import SecretKey

    secret = "s3cret-" * 6
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, secret, algorithm="HS256", headers={"typ": "at+jwt"})
    head, body, sig = token.split(".")
    auth = JwtAuthenticator(SecretKey(secret), ["HS256"], cache_size=0)
    assert auth.authenticate(f"Bearer {token}")["sub"] == "u"
    for bad in (f"{head}.{body}!.{sig}", f"{head}.{body}.{sig}*", f"{head}=.{body}.{sig}"):
        with pytest.raises(InvalidCredential, match="malformed"):
            auth.authenticate(f"Bearer {bad}")
