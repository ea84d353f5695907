"""A bounded schemathesis run of pdp/openapi.yaml against the live PDP.

Every check (no 5xx, status codes, content types, headers and bodies as
documented, bad input rejected, good input accepted, auth not ignored) over
every operation, from the spec the PDP itself serves. The exceptions, each
with its reason, are in tests/api/schemathesis.toml. Bounded: a fixed seed,
at most EXAMPLES cases per operation and a wall-clock timeout.
"""

import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import jwt
import pymongo
import pytest
import requests

from pdp.resources.openapi import load_spec
from tests.accounts.stack import signin_env
from tests.conftest import FIXTURE_POLICIES, start_pdp
from tests.support.mongo_server import start_mongo
from tests.support.redis_server import start_redis
from tests.support.smtp_server import start_smtp

HERE = Path(__file__).resolve().parent
EXAMPLES = 12
TIMEOUT_S = 240
SECRET = "schemathesis-" + "k" * 40


@pytest.fixture
def fuzzed_pdp():
    """Its own Redis (the run writes overrides and plans for random keys), a SecantusDB
    and an SMTP sink, so the sign-in and wallet API is on and answers for real."""
    redis, mongo, mail = start_redis(), start_mongo(), start_smtp()
    server = None
    try:
        env = signin_env(
            redis.redis_url,
            mongo.mongodb_uri,
            mail.smtp_url,
            JWT_SECRET_KEY=SECRET,
            POLICY_DIR=str(FIXTURE_POLICIES),
            RATE_LIMIT_ENABLED="true",
            # One client address sends every case: the per-IP and per-address
            # throttles would answer 429 for most of the run otherwise.
            AUTH_LOGIN_PER_IP_PER_MINUTE="100000",
            AUTH_VERIFY_PER_IP_PER_MINUTE="100000",
            AUTH_LOGIN_PER_EMAIL_PER_HOUR="1000",
        )
        server = start_pdp(env, workers=2)
        server.mongo, server.mail = mongo, mail
        yield server
    finally:
        for process in (server, mail, mongo, redis):
            if process is not None:
                process.stop()


def load_spec_operations() -> list:
    return [(path, m) for path, item in load_spec()["paths"].items() for m in item if m != "parameters"]


def admin_token(sub: str = "schemathesis") -> str:
    """No jti: the run's POST /auth/logout cases cannot revoke the token every other case uses."""
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "roles": ["admin", "user"], "plan": "pro", "mfa": True, "iat": now, "exp": now + 900},
        SECRET,
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )


def fuzz_account(url: str) -> str:
    """An account for the token's sub, so /users/me and its TOTP and wallet routes reach MongoDB."""
    resp = requests.post(
        url + "/api/v1/users",
        json={"email": "fuzz@example.com", "roles": ["admin", "user"]},
        headers={"Authorization": "Bearer " + admin_token()},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_live_pdp_conforms_to_its_spec(fuzzed_pdp, tmp_path):
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        fuzzed_pdp.url + "/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261201",
        # One worker: with two threads, hypothesis' lambda descriptions call ast.parse
        # concurrently, which CPython 3.11 can fail ("AST constructor recursion depth
        # mismatch"), an error of the test tool, not of the API.
        "--workers",
        "1",
        "--request-timeout",
        "5",
        "--max-failures",
        "20",
        "--header",
        "Authorization: Bearer " + admin_token(fuzz_account(fuzzed_pdp.url)),
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path)
    report = run.stdout[-12000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    suite = ElementTree.parse(next(tmp_path.glob("*.xml"))).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    # Every documented operation was exercised, none failed.
    assert int(suite.get("tests")) >= len(load_spec_operations()), report
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0, report
    assert "Traceback" not in fuzzed_pdp.output(), fuzzed_pdp.output()[-4000:]
    # The sign-in API answered from the live MongoDB: sign-ups beyond the fuzz account were stored.
    users = (
        pymongo.MongoClient(fuzzed_pdp.mongo.mongodb_uri, serverSelectionTimeoutMS=3000)
        .get_default_database()["users"]
        .count_documents({})
    )
    assert users > 1, report
    # ... and a sign-in link went out through the SMTP sink (the login example names the fuzz account).
    assert fuzzed_pdp.mail.wait_for("fuzz@example.com", 1, timeout=5), "no magic-link mail arrived"
