"""Shared fixtures: real redis-server, real PDP under gunicorn, real OPA, tokens.

Areas add their own fixtures in tests/<area>/conftest.py.
"""

import os
import secrets
import shutil
import tempfile
import time

import jwt
import pytest

from pdp.authn.tokens import ACCESS_TOKEN_TYPE, sign_access_token
from tests.support.pdp_process import start_pdp as start_pdp_process
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server
from tests.support.redis_server import start_redis
from tests.support.tools import require_tool

FIXTURE_POLICIES = ROOT / "tests" / "fixtures" / "policies"
SHIPPED_POLICIES = ROOT / "policies"


@pytest.fixture(scope="session", autouse=True)
def temp_files_in_the_run_folder(tmp_path_factory):
    """Every temporary file of the run (server logs, route files, the servers' own
    folders, through TMPDIR) goes under pytest's folder for this run, which keeps
    the last three runs for reading after a failure and removes older ones;
    thousands per run piled up in /tmp otherwise."""
    folder = str(tmp_path_factory.mktemp("tmp", numbered=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", folder)
        patch.setattr(tempfile, "tempdir", folder)
        yield folder


@pytest.fixture(scope="session")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jwt_secret():
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def mint(jwt_secret):
    """mint(sub, roles=..., **claims) -> a signed HS256 access token valid for 10 minutes.

    The claims are signed as given (None drops one), so tests can make the
    tokens the verifier must refuse; header_typ=... replaces the header's
    at+jwt (header_typ=None leaves it out)."""

    def _mint(sub="alice", roles=("user",), secret=None, alg="HS256", header_typ=ACCESS_TOKEN_TYPE, **claims):
        now = int(time.time())
        body = {
            "sub": sub,
            "roles": list(roles) if isinstance(roles, (list, tuple)) else roles,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        if header_typ == ACCESS_TOKEN_TYPE:
            return sign_access_token(body, secret or jwt_secret, alg)
        # pyjwt adds typ JWT unless told otherwise; header_typ=None really leaves it out.
        return jwt.encode(body, secret or jwt_secret, algorithm=alg, headers={"typ": header_typ})

    return _mint


@pytest.fixture
def policy_copy(tmp_path):
    """copy(src) -> a writable copy of a policy folder, for reload tests."""

    def _copy(src=FIXTURE_POLICIES):
        dst = tmp_path / "policies"
        shutil.copytree(src, dst)
        return dst

    return _copy


def start_pdp(env: dict, workers: int = 1) -> Server:
    """The real PDP under gunicorn, policy reloads polled every 0.2 s."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each PDP gets its own metrics folder
    return start_pdp_process({"POLICY_RELOAD_INTERVAL_S": "0.2", **env}, workers=workers)


@pytest.fixture
def pdp_factory(redis_server, jwt_secret):
    """pdp_factory(**env) -> a started PDP; stopped after the test."""
    started = []

    def _start(workers=1, **env):
        base = {"JWT_SECRET_KEY": jwt_secret, "REDIS_URL": redis_server.redis_url, "POLICY_DIR": str(FIXTURE_POLICIES)}
        server = start_pdp({**base, **{k: str(v) for k, v in env.items()}}, workers=workers)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pdp(redis_server, jwt_secret):
    """A PDP on the test fixture policies, shared by the tests that only ask it questions."""
    server = start_pdp(
        {"JWT_SECRET_KEY": jwt_secret, "REDIS_URL": redis_server.redis_url, "POLICY_DIR": str(FIXTURE_POLICIES)},
        workers=2,
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def opa_binary():
    return require_tool("opa")


@pytest.fixture
def opa_server(opa_binary):
    port = free_port()
    server = Server([opa_binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"], port)
    yield server
    server.stop()
