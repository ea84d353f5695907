"""Access and refresh tokens: shape, rotation, reuse detection with a grace window, logout, status."""

import concurrent.futures
import time

import jwt
import requests

from .stack import SECRET


def test_access_token_is_an_at_jwt_with_the_contract_claims(stack):
    stack.sign_up("claims@example.com")
    tokens = stack.sign_in("claims@example.com")
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "HS256"
    claims = jwt.decode(tokens["access_token"], SECRET, algorithms=["HS256"])
    assert {"sub", "roles", "plan", "mfa", "jti", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 15 * 60 == tokens["expires_in"]
    assert claims["roles"] == ["user"] and claims["plan"] == "free" and claims["mfa"] is False
    assert tokens["refresh_token"].startswith("rt_") and tokens["refresh_token"].count(".") == 1
    assert tokens["refresh_expires_in"] == 7 * 86400


def test_refresh_tokens_are_stored_hashed(stack):
    stack.sign_up("rt-hash@example.com")
    refresh = stack.sign_in("rt-hash@example.com")["refresh_token"]
    secret_part = refresh.split(".")[1].encode()
    for key in stack.redis_client.scan_iter("lucid:auth:*"):
        assert secret_part not in key


def test_status_says_who_how_and_until_when(stack):
    user = stack.sign_up("status@example.com")
    tokens = stack.sign_in("status@example.com")
    status = stack.get("/auth/status", token=tokens["access_token"])
    assert status.status_code == 200
    body = status.json()
    assert body["user_id"] == user["id"] and body["amr"] == ["email"] and body["mfa"] is False
    assert 0 < body["expires_in"] <= 900 and body["expires_at"] > time.time()
    assert stack.get("/auth/status").status_code == 401


def test_auth_time_is_set_at_sign_in_and_survives_refresh_unchanged(stack):
    stack.sign_up("auth-time@example.com")
    before = int(time.time())
    first = stack.sign_in("auth-time@example.com")
    signed_in = jwt.decode(first["access_token"], SECRET, algorithms=["HS256"])["auth_time"]
    assert before <= signed_in <= time.time()
    time.sleep(1.1)  # so that iat moves on and auth_time must not
    refresh = first["refresh_token"]
    for _ in range(2):
        pair = stack.post("/auth/refresh", {"refresh_token": refresh}).json()
        refresh = pair["refresh_token"]
        claims = jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"])
        assert claims["auth_time"] == signed_in < claims["iat"]
    assert stack.get("/auth/status", token=pair["access_token"]).json()["auth_time"] == signed_in


def test_a_session_started_before_auth_time_was_kept_still_refreshes_without_it(stack):
    stack.sign_up("no-auth-time@example.com")
    first = stack.sign_in("no-auth-time@example.com")
    family = jwt.decode(first["access_token"], SECRET, algorithms=["HS256"])["sid"]
    stack.redis_client.hdel(f"lucid:auth:fam:{{{family}}}", "auth_time")  # as an older PDP started it
    pair = stack.post("/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert pair.status_code == 200, pair.text
    assert "auth_time" not in jwt.decode(pair.json()["access_token"], SECRET, algorithms=["HS256"])
    assert stack.get("/users/me", token=pair.json()["access_token"]).status_code == 200


def test_refresh_rotates(stack):
    stack.sign_up("rotate@example.com")
    first = stack.sign_in("rotate@example.com")
    second = stack.post("/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    assert stack.get("/users/me", token=pair["access_token"]).status_code == 200


def test_reuse_after_the_grace_window_revokes_the_family(stack):
    stack.sign_up("reuse@example.com")
    first = stack.sign_in("reuse@example.com")
    second = stack.post("/auth/refresh", {"refresh_token": first["refresh_token"]}).json()
    time.sleep(2.5)  # REFRESH_REUSE_GRACE_S=2 in this stack
    reused = stack.post("/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.headers["Content-Type"] == "application/problem+json"
    assert reused.json()["reason"] == "refresh_token_reused"
    # The whole family is gone, the newest token too.
    newest = stack.post("/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401 and newest.json()["reason"] == "refresh_token_revoked"


def test_twenty_parallel_refreshes_of_one_token_keep_the_user_signed_in(stack):
    stack.sign_up("tabs@example.com")
    first = stack.sign_in("tabs@example.com")

    def refresh(_):
        return requests.post(stack.api + "/auth/refresh", json={"refresh_token": first["refresh_token"]}, timeout=20)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(refresh, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    # Every tab's new token goes on working.
    for answer in answers[:3]:
        assert stack.post("/auth/refresh", {"refresh_token": answer.json()["refresh_token"]}).status_code == 200


def test_malformed_and_unknown_refresh_tokens_are_401(stack):
    for token in ("nope", "rt_" + "0" * 32 + "." + "A" * 43, "eyJhbGciOi.x.y"):
        response = stack.post("/auth/refresh", {"refresh_token": token})
        assert response.status_code == 401
        assert response.json()["reason"] == "invalid_refresh_token"
    assert stack.post("/auth/refresh", {}).status_code == 400


def test_a_refresh_token_is_not_an_access_token(stack):
    stack.sign_up("not-access@example.com")
    refresh = stack.sign_in("not-access@example.com")["refresh_token"]
    assert stack.get("/users/me", token=refresh).status_code == 401


def test_refresh_carries_the_current_roles_and_plan(stack):
    user = stack.sign_up("promoted@example.com")
    first = stack.sign_in("promoted@example.com")
    assert stack.put(f"/users/{user['id']}/plan", {"plan": "pro"}, token=stack.admin_token()).status_code == 200
    pair = stack.post("/auth/refresh", {"refresh_token": first["refresh_token"]}).json()
    assert jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"])["plan"] == "pro"


def test_logout_ends_the_session_and_denylists_the_access_token(stack):
    stack.sign_up("bye@example.com")
    tokens = stack.sign_in("bye@example.com")
    out = stack.post("/auth/logout", token=tokens["access_token"])
    assert out.status_code == 200 and out.json()["sessions_ended"] == 1
    refused = stack.get("/users/me", token=tokens["access_token"])
    assert refused.status_code == 401 and refused.json()["detail"] == "token revoked"
    again = stack.post("/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401 and again.json()["reason"] == "refresh_token_revoked"
    session = stack.db.sessions.find_one({"user_id": tokens["user_id"]})
    assert session["revoked_at"] is not None
    claims = jwt.decode(tokens["access_token"], SECRET, algorithms=["HS256"])
    assert 0 < stack.redis_client.ttl(_denylist_key(claims["jti"])) <= 900 + 60


def test_logout_also_ends_the_sessions_earlier_access_tokens(stack):
    # An attacker holds an access token of the session (copied from a log, a
    # proxy, a shared machine); the user refreshes, then logs out with the new one.
    # Only the token presented at logout was denylisted: the stolen one kept
    # working until it expired (JWT_ACCESS_TOKEN_EXPIRE_MINUTES).
    stack.sign_up("bye-all@example.com")
    stolen = stack.sign_in("bye-all@example.com")
    newer = stack.post("/auth/refresh", {"refresh_token": stolen["refresh_token"]}).json()
    assert stack.get("/users/me", token=stolen["access_token"]).status_code == 200
    assert stack.post("/auth/logout", token=newer["access_token"]).status_code == 200
    refused = stack.get("/users/me", token=stolen["access_token"])
    assert refused.status_code == 401 and refused.json()["detail"] == "token revoked"


def test_refresh_token_reuse_also_ends_the_access_tokens_it_minted(stack):
    # The thief refreshes first with a stolen refresh token; the user's later use
    # of it revokes the family, and now the thief's access token with it.
    stack.sign_up("thief@example.com")
    victim = stack.sign_in("thief@example.com")
    thief = stack.post("/auth/refresh", {"refresh_token": victim["refresh_token"]}).json()
    time.sleep(2.5)  # REFRESH_REUSE_GRACE_S=2 in this stack
    reused = stack.post("/auth/refresh", {"refresh_token": victim["refresh_token"]})
    assert reused.json()["reason"] == "refresh_token_reused"
    for token in (thief["access_token"], victim["access_token"]):
        refused = stack.get("/users/me", token=token)
        assert refused.status_code == 401 and refused.json()["detail"] == "token revoked"


def _denylist_key(jti):
    from pdp.authn.revocation import denylist_key

    return denylist_key("", jti)


def test_logout_needs_an_access_token(stack):
    assert stack.post("/auth/logout").status_code == 401
