"""Fixtures for the `make run` and `make bench` tests: the PDP on the shipped
policies and echo stand-ins, each on a free 127.0.0.1 port. Redis, the JWT
secret and `mint` come from tests/conftest.py."""
import sys

import pytest

from bench import stack
from tests.support.ports import free_port
from tests.support.processes import Server


@pytest.fixture(scope="module")
def pdp_server(redis_server, jwt_secret):
    """The PDP as the bench runs it: shipped policies, quotas and decision log off."""
    server = stack.start_pdp(stack.pdp_env(redis_server.redis_url, jwt_secret, free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logging_pdp(redis_server, jwt_secret):
    """One PDP worker with its decision log on: what each request was judged as."""
    env = stack.pdp_env(redis_server.redis_url, jwt_secret, free_port())
    env.update({"PDP_WORKERS": "1", "DECISION_LOG": "on", "LOG_LEVEL": "info"})
    server = stack.start_pdp(env)
    yield server
    server.stop()


def start_standin(name: str) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "devenv.standins.echo_service", name,
                   "--host", "127.0.0.1", "--port", str(port)], port)


@pytest.fixture(scope="module")
def echo_upstream():
    server = start_standin("bench-upstream")
    yield server
    server.stop()
