"""Step-up re-authentication: changing sign-in factors needs a recent sign-in (auth_time), and mfa on a TOTP account."""

import time

import jwt

from .stack import SECRET, away_from_step_edge, code_at, token_for
from .test_totp import challenge, enrolled


def assert_reauth_required(response, max_age=600):
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "https://lucid-gateway.dev/problems/reauth-required"
    assert body["reason"] == "reauth_required" and body["max_age_s"] == max_age
    assert body["detail"].startswith("sign in again")
    challenge_header = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge_header and f"max_age={max_age}" in challenge_header
    return body


def test_a_fresh_sign_in_enrols_totp(stack):
    away_from_step_edge()
    user = stack.sign_up("fresh-enrol@example.com")
    token = stack.sign_in("fresh-enrol@example.com")["access_token"]
    started = stack.post("/users/me/totp", token=token)
    assert started.status_code == 201, started.text
    confirmed = stack.post("/users/me/totp/confirm", {"code": code_at(started.json()["secret"], -1)}, token=token)
    assert confirmed.status_code == 200, confirmed.text
    assert "totp" in stack.db.users.find_one({"_id": user["id"]})


def test_an_old_sign_in_can_neither_start_nor_confirm_totp_enrolment(stack):
    away_from_step_edge()
    user = stack.sign_up("old-enrol@example.com")
    stale = token_for(user["id"], auth_time=int(time.time()) - 700)
    assert stack.get("/users/me", token=stale).status_code == 200  # ordinary requests still work
    assert_reauth_required(stack.post("/users/me/totp", token=stale))
    assert "totp_pending" not in stack.db.users.find_one({"_id": user["id"]})
    # An enrolment started while fresh cannot be confirmed by a stale session either.
    fresh = token_for(user["id"], auth_time=int(time.time()) - 60)
    secret = stack.post("/users/me/totp", token=fresh).json()["secret"]
    assert_reauth_required(stack.post("/users/me/totp/confirm", {"code": code_at(secret, -1)}, token=stale))
    stored = stack.db.users.find_one({"_id": user["id"]})
    assert "totp" not in stored and "totp_pending" in stored


def test_a_token_without_auth_time_works_but_cannot_change_factors(stack):
    user = stack.sign_up("legacy-session@example.com")
    legacy = token_for(user["id"], auth_time=None)
    assert stack.get("/auth/status", token=legacy).json()["auth_time"] is None
    assert stack.get("/users/me", token=legacy).status_code == 200
    assert_reauth_required(stack.post("/users/me/totp", token=legacy))
    assert "totp_pending" not in stack.db.users.find_one({"_id": user["id"]})


def test_a_session_kept_alive_by_refresh_tokens_cannot_enrol_totp(stack):
    # The review's case: a refresh token keeps a session going for days; its auth_time stays the sign-in's.
    user = stack.sign_up("kept-alive@example.com")
    tokens = stack.sign_in("kept-alive@example.com")
    family = jwt.decode(tokens["access_token"], SECRET, algorithms=["HS256"])["sid"]
    signed_in = int(time.time()) - 3 * 86400
    stack.redis_client.hset(f"lucid:auth:fam:{{{family}}}", "auth_time", signed_in)  # as if started 3 days ago
    refreshed = stack.post("/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json()
    assert jwt.decode(refreshed["access_token"], SECRET, algorithms=["HS256"])["auth_time"] == signed_in
    assert_reauth_required(stack.post("/users/me/totp", token=refreshed["access_token"]))
    assert "totp_pending" not in stack.db.users.find_one({"_id": user["id"]})
    # Signing in again is the way through.
    assert (
        stack.post("/users/me/totp", token=stack.sign_in("kept-alive@example.com")["access_token"]).status_code == 201
    )


def test_on_an_account_with_totp_a_fresh_one_factor_session_is_not_enough(stack):
    user, secret, _ = enrolled(stack, "step-up-mfa@example.com")
    one_factor = token_for(user["id"], auth_time=int(time.time()))
    body = assert_reauth_required(stack.delete("/users/me/totp", {"code": code_at(secret, 0)}, one_factor))
    assert "TOTP" in body["detail"]
    assert "totp" in stack.db.users.find_one({"_id": user["id"]})
    # Both factors, recently: removal goes through (with a fresh code).
    both = stack.post(
        "/auth/verify", {"mfa_token": challenge(stack, "step-up-mfa@example.com"), "code": code_at(secret, 0)}
    )
    old_mfa = token_for(user["id"], auth_time=int(time.time()) - 700, mfa=True)
    assert_reauth_required(stack.delete("/users/me/totp", {"code": code_at(secret, 1)}, old_mfa))
    done = stack.delete("/users/me/totp", {"code": code_at(secret, 1)}, both.json()["access_token"])
    assert done.status_code == 200, done.text


def test_enrolling_totp_ends_the_users_other_sessions(stack):
    away_from_step_edge()
    stack.sign_up("other-sessions@example.com")
    other = stack.sign_in("other-sessions@example.com")  # e.g. a thief's session from before
    mine = stack.sign_in("other-sessions@example.com")
    stranger = stack.sign_in(stack.sign_up("bystander@example.com")["email"])
    secret = stack.post("/users/me/totp", token=mine["access_token"]).json()["secret"]
    confirmed = stack.post("/users/me/totp/confirm", {"code": code_at(secret, -1)}, token=mine["access_token"])
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["other_sessions_ended"] == 1
    # The other session (mfa false, signed in before TOTP) can neither refresh nor use its access token.
    refused = stack.post("/auth/refresh", {"refresh_token": other["refresh_token"]})
    assert refused.status_code == 401 and refused.json()["reason"] == "refresh_token_revoked"
    assert stack.get("/users/me", token=other["access_token"]).status_code == 401
    other_sid = jwt.decode(other["access_token"], SECRET, algorithms=["HS256"])["sid"]
    assert stack.db.sessions.find_one({"_id": other_sid})["revoked_reason"] == "totp_enrolled"
    # The session that confirmed stays, and so do other users' sessions.
    assert stack.get("/users/me", token=mine["access_token"]).status_code == 200
    assert stack.post("/auth/refresh", {"refresh_token": mine["refresh_token"]}).status_code == 200
    assert stack.post("/auth/refresh", {"refresh_token": stranger["refresh_token"]}).status_code == 200
