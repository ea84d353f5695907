"""Fixtures for the `make run` and `make bench` tests: a real Redis, the PDP
under gunicorn and echo stand-ins, each on a free 127.0.0.1 port."""
import secrets
import sys

import pytest

from bench import stack
from tests.support.ports import free_port
from tests.support.processes import Server
from tests.support.redis_server import start_redis


@pytest.fixture(scope="module")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jwt_secret():
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def pdp_server(redis_server, jwt_secret):
    server = stack.start_pdp(stack.pdp_env(redis_server.redis_url, jwt_secret, free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mint(jwt_secret):
    """mint(sub, roles, mfa) -> a token signed with the PDP's secret (pdp token)."""
    def _mint(sub="alice", roles="user", mfa=True):
        return stack.mint_token(jwt_secret, sub=sub, roles=roles, mfa=mfa)
    return _mint


def start_standin(name: str) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "devenv.standins.echo_service", name,
                   "--host", "127.0.0.1", "--port", str(port)], port)


@pytest.fixture(scope="module")
def echo_upstream():
    server = start_standin("bench-upstream")
    yield server
    server.stop()
