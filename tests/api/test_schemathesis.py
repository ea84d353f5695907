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
import pytest

from pdp.resources.openapi import load_spec

from tests.conftest import FIXTURE_POLICIES, start_pdp
from tests.support.redis_server import start_redis

HERE = Path(__file__).resolve().parent
EXAMPLES = 12
TIMEOUT_S = 240
SECRET = "schemathesis-" + "k" * 40


@pytest.fixture
def fuzzed_pdp():
    """Its own Redis: the run writes overrides and plans for random keys."""
    redis = start_redis()
    server = start_pdp({"JWT_SECRET_KEY": SECRET, "REDIS_URL": redis.redis_url,
                        "POLICY_DIR": str(FIXTURE_POLICIES), "RATE_LIMIT_ENABLED": "true"}, workers=2)
    yield server
    server.stop()
    redis.stop()


def load_spec_operations() -> list:
    return [(path, m) for path, item in load_spec()["paths"].items() for m in item if m != "parameters"]


def admin_token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "schemathesis", "roles": ["admin"], "iat": now, "exp": now + 900, "jti": "st"},
                      SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


def test_live_pdp_conforms_to_its_spec(fuzzed_pdp, tmp_path):
    argv = [str(Path(sys.executable).with_name("schemathesis")), "--no-color",
            "--config-file", str(HERE / "schemathesis.toml"),
            "run", fuzzed_pdp.url + "/v1/openapi.json", "--checks", "all",
            "--max-examples", str(EXAMPLES), "--seed", "20261201",
            # One worker: with two threads, hypothesis' lambda descriptions call ast.parse
            # concurrently, which CPython 3.11 can fail ("AST constructor recursion depth
            # mismatch"), an error of the test tool, not of the API.
            "--workers", "1",
            "--request-timeout", "5", "--max-failures", "20",
            "--header", "Authorization: Bearer " + admin_token(),
            "--report", "junit", "--report-dir", str(tmp_path)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path)
    report = run.stdout[-12000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    suite = ElementTree.parse(next(tmp_path.glob("*.xml"))).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    # Every documented operation was exercised, none failed.
    assert int(suite.get("tests")) >= len(load_spec_operations()), report
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0, report
    assert "Traceback" not in fuzzed_pdp.output(), fuzzed_pdp.output()[-4000:]
