"""MongoDB, SMTP or Redis down: 503 problem+json naming it, readiness says which, nothing half-written."""

import time

import pymongo
import requests

from tests.support.mongo_server import start_mongo
from tests.support.smtp_server import start_smtp

from .stack import Stack, away_from_step_edge, code_at, totp_key


def _ready(stack):
    return requests.get(stack.url + "/v1/ready", timeout=20), requests.get(stack.url + "/v1/ready/auth", timeout=20)


def _assert_503(response, dependency):
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["dependency"] == dependency


def test_mongodb_down_is_503_and_readiness_says_mongodb():
    s = Stack()
    try:
        s.sign_up("before@example.com")
        port, workdir = s.mongo.port, s.mongo.workdir
        s.mongo.stop()
        _assert_503(s.post("/users", {"email": "during@example.com"}), "mongodb")
        _assert_503(s.post("/auth/login", {"email": "before@example.com"}), "mongodb")
        ready, auth = _ready(s)
        assert ready.status_code == 200  # decisions do not need MongoDB
        assert ready.json()["checks"]["mongodb"] is False and ready.json()["auth"]["down"] == ["mongodb"]
        assert auth.status_code == 503 and auth.json()["down"] == ["mongodb"]
        s.mongo = start_mongo(port, workdir)
        assert s.post("/auth/login", {"email": "before@example.com"}).status_code == 202
        # Each PDP worker's MongoDB client finds the server again on its own heartbeat.
        deadline = time.monotonic() + 30
        while _ready(s)[1].status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ready(s)[1].status_code == 200
    finally:
        s.stop()


def test_smtp_down_is_503_and_no_token_is_stored_without_its_mail():
    s = Stack()
    try:
        s.sign_up("mailless@example.com")
        s.mail.stop()
        _assert_503(s.post("/auth/login", {"email": "mailless@example.com"}), "smtp")
        # Unknown addresses answer the same, so an outage does not tell who has an account.
        _assert_503(s.post("/auth/login", {"email": "ghost@example.com"}), "smtp")
        assert list(s.redis_client.scan_iter("lucid:auth:ml:*")) == []
        ready, auth = _ready(s)
        assert ready.json()["checks"]["smtp"] is False and auth.json()["down"] == ["smtp"]
        s.mail = start_smtp(s.mail.port, str(s.mail.dir))
        assert s.post("/auth/login", {"email": "mailless@example.com"}).status_code == 202
        assert len(list(s.redis_client.scan_iter("lucid:auth:ml:*"))) == 1
    finally:
        s.stop()


def test_redis_down_is_503_not_a_sign_in():
    s = Stack()
    try:
        s.sign_up("noredis@example.com")
        token = s.magic_token("noredis@example.com")
        s.redis.stop()
        _assert_503(s.post("/auth/verify", {"token": token}), "redis")
        _assert_503(s.post("/auth/login", {"email": "noredis@example.com"}), "redis")
        assert s.db.sessions.count_documents({}) == 0
    finally:
        s.stop()


def test_unique_indexes_exist_before_any_user_when_mongodb_comes_up_late():
    s = Stack()
    try:
        port, workdir = s.mongo.port, s.mongo.workdir
        s.mongo.stop()
        # The PDP starts while MongoDB is down (decisions need no MongoDB) ...
        s.restart_pdp()
        _assert_503(s.post("/users", {"email": "early@example.com"}), "mongodb")
        s.mongo = start_mongo(port, workdir)
        # ... and creates the unique indexes before its first user.
        assert s.post("/users", {"email": "early@example.com"}).status_code == 201
        assert s.post("/users", {"email": "early@example.com"}).status_code == 409
        db = pymongo.MongoClient(s.mongo.mongodb_uri).get_default_database()
        indexes = db.users.index_information()
        assert indexes["email_unique"]["unique"] and indexes["wallet_address_unique"]["unique"]
        assert db.users.count_documents({}) == 1
    finally:
        s.stop()


def test_totp_keys_rotate_and_secrets_are_resealed_on_use():
    s = Stack()
    try:
        away_from_step_edge()
        s.sign_up("rotate-key@example.com")
        token = s.sign_in("rotate-key@example.com")["access_token"]
        secret = s.post("/users/me/totp", token=token).json()["secret"]
        assert s.post("/users/me/totp/confirm", {"code": code_at(secret, -1)}, token=token).status_code == 200
        old = s.env["TOTP_ENCRYPTION_KEYS"]
        s.restart_pdp(TOTP_ENCRYPTION_KEYS=totp_key().replace("k1:", "k2:") + "," + old)
        mfa = s.post("/auth/verify", {"token": s.magic_token("rotate-key@example.com")}).json()["mfa_token"]
        done = s.post("/auth/verify", {"mfa_token": mfa, "code": code_at(secret, 0)})
        assert done.status_code == 200 and done.json()["mfa"] is True
        sealed = s.db.users.find_one({"email": "rotate-key@example.com"})["totp"]["secret"]
        assert sealed.startswith("v1.k2.")
    finally:
        s.stop()


def test_a_bad_setting_stops_startup_with_one_line():
    import subprocess
    import sys

    from tests.support.processes import ROOT

    env = {
        "PATH": "/usr/bin:/bin",
        "JWT_SECRET_KEY": "x" * 40,
        "MONGODB_URI": "mongodb://127.0.0.1:1/x",
        "SMTP_URL": "smtp://127.0.0.1:1",
        "PUBLIC_BASE_URL": "http://gw.example",
        "TOTP_ENCRYPTION_KEYS": "k1:c2VjcmV0LWJ1dC1zaG9ydA",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "configuration error: TOTP_ENCRYPTION_KEYS:" in lines[0], done.stderr
    assert "c2VjcmV0" not in done.stderr
    del env["PUBLIC_BASE_URL"]
    env["TOTP_ENCRYPTION_KEYS"] = "k1:" + "A" * 43
    done = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "PUBLIC_BASE_URL: required" in done.stderr


def test_a_mail_the_server_refuses_leaves_no_usable_token(stack):
    # The mail sink refuses messages to @reject.invalid at DATA, after RCPT was accepted.
    import time as _time

    stack.sign_up("bounced@reject.invalid")
    assert stack.post("/auth/login", {"email": "bounced@reject.invalid"}).status_code == 202
    deadline = _time.monotonic() + 10
    keys = ["pending"]
    while keys and _time.monotonic() < deadline:
        _time.sleep(0.2)
        keys = [
            k
            for k in stack.redis_client.scan_iter("lucid:auth:ml:*")
            if stack.redis_client.get(k) and b"bounced@reject.invalid" in stack.redis_client.get(k)
        ]
    assert keys == []
    assert stack.mail.wait_for("bounced@reject.invalid", timeout=0) == []
