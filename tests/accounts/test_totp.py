"""TOTP: enrolment confirmed by a first code, both factors for mfa, no replay, lockout, recovery codes."""

import time

import jwt
import pytest
import redis as redis_lib

from pdp.accounts.errors import LockedOut
from pdp.accounts.totp import TotpGuard
from tests.support.redis_server import start_redis

from .stack import away_from_step_edge, code_at, token_for


def enrolled(stack, email):
    """An account with confirmed TOTP: (user, secret, recovery codes); step -1 is used up."""
    away_from_step_edge()
    user = stack.sign_up(email)
    token = stack.sign_in(email)["access_token"]
    enrol = stack.post("/users/me/totp", token=token)
    assert enrol.status_code == 201, enrol.text
    doc = enrol.json()
    confirm = stack.post("/users/me/totp/confirm", {"code": code_at(doc["secret"], -1)}, token=token)
    assert confirm.status_code == 200, confirm.text
    return user, doc["secret"], confirm.json()["recovery_codes"]


def challenge(stack, email):
    response = stack.post("/auth/verify", {"token": stack.magic_token(email)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True and "access_token" not in body and "refresh_token" not in body
    return body["mfa_token"]


def test_enrolment_returns_uri_svg_qr_and_stores_the_secret_encrypted(stack):
    stack.sign_up("enrol@example.com")
    token = stack.sign_in("enrol@example.com")["access_token"]
    doc = stack.post("/users/me/totp", token=token).json()
    assert doc["otpauth_uri"].startswith("otpauth://totp/lucid-gateway:enrol%40example.com?secret=")
    assert doc["qr_svg"].startswith("<svg") and "</svg>" in doc["qr_svg"]
    stored = stack.db.users.find_one({"email": "enrol@example.com"})
    sealed = stored["totp_pending"]["secret"]
    assert sealed.startswith("v1.k1.") and doc["secret"] not in sealed
    assert "totp" not in stored  # not a factor until confirmed


def test_an_unconfirmed_factor_is_not_a_factor(stack):
    stack.sign_up("unconfirmed@example.com")
    token = stack.sign_in("unconfirmed@example.com")["access_token"]
    assert stack.post("/users/me/totp", token=token).status_code == 201
    # Signing in again: no TOTP challenge, and no mfa claim from a factor never confirmed.
    tokens = stack.sign_in("unconfirmed@example.com")
    assert tokens["mfa"] is False and tokens["amr"] == ["email"]


def test_confirmation_needs_a_valid_code(stack):
    stack.sign_up("confirm-code@example.com")
    token = stack.sign_in("confirm-code@example.com")["access_token"]
    secret = stack.post("/users/me/totp", token=token).json()["secret"]
    wrong = stack.post(
        "/users/me/totp/confirm", {"code": "000000" if code_at(secret, 0) != "000000" else "111111"}, token=token
    )
    assert wrong.status_code == 401 and wrong.json()["reason"] == "totp_invalid"
    assert "totp" not in stack.db.users.find_one({"email": "confirm-code@example.com"})
    malformed = stack.post("/users/me/totp/confirm", {"code": "12345"}, token=token)
    assert malformed.status_code == 401 and malformed.json()["reason"] == "totp_invalid"


def test_both_factors_give_mfa_true(stack):
    user, secret, _ = enrolled(stack, "both@example.com")
    mfa_token = challenge(stack, "both@example.com")
    before = int(time.time())
    done = stack.post("/auth/verify", {"mfa_token": mfa_token, "code": code_at(secret, 0)})
    assert done.status_code == 200, done.text
    tokens = done.json()
    assert tokens["mfa"] is True and tokens["amr"] == ["email", "otp"]
    # The session signed in when its second factor was given.
    auth_time = jwt.decode(tokens["access_token"], options={"verify_signature": False})["auth_time"]
    assert before <= auth_time <= time.time()
    status = stack.get("/auth/status", token=tokens["access_token"]).json()
    assert status["mfa"] is True and status["user_id"] == user["id"]
    # The challenge is used up with the sign-in.
    again = stack.post("/auth/verify", {"mfa_token": mfa_token, "code": code_at(secret, 1)})
    assert again.status_code == 401 and again.json()["reason"] == "mfa_token_invalid"


def test_a_code_or_any_earlier_step_is_never_accepted_twice(stack):
    _, secret, _ = enrolled(stack, "replay@example.com")
    first = challenge(stack, "replay@example.com")
    assert stack.post("/auth/verify", {"mfa_token": first, "code": code_at(secret, 0)}).status_code == 200
    second = challenge(stack, "replay@example.com")
    for steps in (0, -1):
        reused = stack.post("/auth/verify", {"mfa_token": second, "code": code_at(secret, steps)})
        assert reused.status_code == 401
        assert reused.json()["reason"] == "totp_reused"
    # A later step still works.
    assert stack.post("/auth/verify", {"mfa_token": second, "code": code_at(secret, 1)}).status_code == 200


def test_wrong_codes_lock_the_account(stack):
    _, secret, _ = enrolled(stack, "lock@example.com")
    mfa_token = challenge(stack, "lock@example.com")
    wrong = "000000" if code_at(secret, 0) != "000000" else "111111"
    answers = [stack.post("/auth/verify", {"mfa_token": mfa_token, "code": wrong}) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[0].json()["reason"] == "totp_invalid"
    assert int(answers[2].headers["Retry-After"]) > 0
    # Locked: even the right code is refused until the lockout ends.
    locked = stack.post("/auth/verify", {"mfa_token": mfa_token, "code": code_at(secret, 0)})
    assert locked.status_code == 429
    assert locked.headers["Content-Type"] == "application/problem+json"


def test_recovery_codes_are_hashed_and_work_once(stack):
    _, secret, codes = enrolled(stack, "recover@example.com")
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = stack.db.users.find_one({"email": "recover@example.com"})["totp"]["recovery"]
    assert all(code not in str(stored) and code.replace("-", "") not in str(stored) for code in codes)
    mfa_token = challenge(stack, "recover@example.com")
    used = stack.post("/auth/verify", {"mfa_token": mfa_token, "recovery_code": codes[0].upper()})
    assert used.status_code == 200 and used.json()["mfa"] is True
    mfa_token = challenge(stack, "recover@example.com")
    again = stack.post("/auth/verify", {"mfa_token": mfa_token, "recovery_code": codes[0]})
    assert again.status_code == 401 and again.json()["reason"] == "recovery_code_invalid"
    assert len(stack.db.users.find_one({"email": "recover@example.com"})["totp"]["recovery"]) == 9


def test_enrolling_twice_is_a_conflict(stack):
    enrolled(stack, "twice@example.com")
    tokens = stack.post(
        "/auth/verify",
        {
            "mfa_token": challenge(stack, "twice@example.com"),
            "code": code_at(stack_secret_of(stack, "twice@example.com"), 0),
        },
    )
    again = stack.post("/users/me/totp", token=tokens.json()["access_token"])
    assert again.status_code == 409
    assert stack.db.users.find_one({"email": "twice@example.com"}).get("totp_pending") is None


def stack_secret_of(stack, email):
    """The secret, opened with the PDP's own key (as the PDP would)."""
    from pdp.accounts.secret_box import SecretBox, parse_keys

    user = stack.db.users.find_one({"email": email})
    return SecretBox(parse_keys(stack.env["TOTP_ENCRYPTION_KEYS"])).open(user["totp"]["secret"], user["_id"])


@pytest.fixture(scope="module")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


def test_each_lockout_in_a_day_is_twice_as_long(redis_server):
    client = redis_lib.Redis.from_url(redis_server.redis_url)
    guard = TotpGuard(client, max_retries=2, find_time_s=60, ban_time_s=1)
    bans = []
    for _ in range(3):
        assert guard.attempt_failed("u_grow", guard.begin_attempt("u_grow")) == 0
        bans.append(guard.attempt_failed("u_grow", guard.begin_attempt("u_grow")))
        with pytest.raises(LockedOut):
            guard.check_not_locked("u_grow")
        time.sleep(bans[-1] + 0.1)
        guard.check_not_locked("u_grow")
    assert bans == [1, 2, 4]


def test_step_acceptance_is_strictly_increasing(redis_server):
    client = redis_lib.Redis.from_url(redis_server.redis_url)
    guard = TotpGuard(client, max_retries=3, find_time_s=60, ban_time_s=1)
    assert guard.accept_step("u_steps", 100)
    assert not guard.accept_step("u_steps", 100)
    assert not guard.accept_step("u_steps", 99)
    assert guard.accept_step("u_steps", 101)


def test_pdp_totp_qr_draws_the_enrolment_uri_in_the_terminal():
    import subprocess
    import sys

    import segno

    from tests.support.processes import ROOT

    uri = "otpauth://totp/lucid-gateway:ann%40example.com?secret=VPLTKG3LKDVOS4GEVLL6WR6HBYHHWSHH&issuer=lucid-gateway"
    done = subprocess.run(
        [sys.executable, "-m", "pdp", "totp-qr", uri], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    width, height = segno.make(uri, error="m").symbol_size(scale=1, border=4)
    # Compact mode: one character per module across, two modules per line down.
    assert {len(line) for line in lines} == {width} and len(lines) == (height + 1) // 2
    refused = subprocess.run(
        [sys.executable, "-m", "pdp", "totp-qr", "https://evil.example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2


def test_removing_totp_needs_an_mfa_session_and_a_fresh_code(stack):
    user, secret, _ = enrolled(stack, "remove@example.com")
    magic_only = stack.post("/auth/verify", {"token": stack.magic_token("remove@example.com")}).json()
    assert magic_only["mfa_required"] is True
    tokens = stack.post("/auth/verify", {"mfa_token": magic_only["mfa_token"], "code": code_at(secret, 0)}).json()
    import requests

    # A session without the second factor may not remove it (a stolen mailbox alone is not enough).
    no_mfa = token_for(user["id"], auth_time=int(time.time()), lifetime_s=60)

    def delete(token, body):
        return requests.delete(
            stack.api + "/users/me/totp",
            json=body,
            timeout=10,
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": stack.client_ip()},
        )

    refused = delete(no_mfa, {"code": code_at(secret, 1)})
    assert refused.status_code == 401 and refused.json()["reason"] == "reauth_required"
    wrong = delete(tokens["access_token"], {"code": "000000" if code_at(secret, 1) != "000000" else "111111"})
    assert wrong.status_code == 401 and wrong.json()["reason"] == "totp_invalid"
    assert "totp" in stack.db.users.find_one({"_id": user["id"]})
    done = delete(tokens["access_token"], {"code": code_at(secret, 1)})
    assert done.status_code == 200 and done.json() == {"totp_enabled": False}
    assert "totp" not in stack.db.users.find_one({"_id": user["id"]})
    record = stack.db.audit.find_one({"target": user["id"], "action": "user.totp.remove"})
    assert record["actor"] == user["id"] and record["before"] == {"totp_enabled": True}
    # Signing in is magic link only again.
    assert stack.sign_in("remove@example.com")["mfa"] is False


def test_a_burst_of_parallel_guesses_gets_max_retries_answers_not_one_each(redis_server):
    # The lock was checked before the guess and the failure counted after it, so
    # 50 guesses sent at once were all checked against the code (and each third
    # one doubled the ban, to a day). Now an attempt is counted before the code is
    # looked at: 3 get an answer, the other 47 a 429 without one.
    import base64
    import collections
    import secrets
    import threading

    import pyotp

    from pdp.accounts.errors import AuthFailed
    from pdp.accounts.secret_box import SecretBox, parse_keys
    from pdp.accounts.service import SignIn
    from pdp.accounts.step_up import StepUp
    from pdp.accounts.throttle import Throttle

    client = redis_lib.Redis.from_url(redis_server.redis_url)
    box = SecretBox(parse_keys("k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()))
    guard = TotpGuard(client, max_retries=3, find_time_s=120, ban_time_s=300)
    # check_code needs no MongoDB for a wrong code: the user document is given.
    signin = SignIn(
        store=None,
        links=None,
        mailer=None,
        issuer=None,
        guard=guard,
        box=box,
        throttle=Throttle(client),
        redis_client=client,
        public_base_url="https://gateway.example",
        service_name="api-gateway",
        step_up=StepUp(600),
    )
    user = {"_id": "u_burst"}
    secret = pyotp.random_base32(32)
    sealed = box.seal(secret, user["_id"])
    valid = {pyotp.TOTP(secret).at(time.time() + 30 * k) for k in (-2, -1, 0, 1, 2)}
    guesses = [f"{i:06d}" for i in range(100) if f"{i:06d}" not in valid][:50]
    start = threading.Barrier(len(guesses))
    answers = collections.Counter()

    def guess(code):
        start.wait()
        try:
            signin.check_code(user, sealed, code)
            answers["accepted"] += 1
        except LockedOut:
            answers["429"] += 1
        except AuthFailed as err:
            answers[err.reason] += 1

    threads = [threading.Thread(target=guess, args=(code,)) for code in guesses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {"totp_invalid": 2, "429": 48}, answers
    assert 0 < client.ttl("lucid:auth:totp:lock:{u_burst}") <= 300  # one lockout, not sixteen doublings
