"""The nginx and Envoy configs `make bench` generates are valid and really
enforce our PDP's decisions (short real runs, not load tests)."""
import subprocess

import requests

from bench import configs, stack
from servicekit.identity import IDENTITY_HEADERS
from tests.support.ports import free_port
from tests.support.tools import require_tool

PROTECTED = "/api/v1/sessions"


def _nginx() -> str:
    return stack.find_nginx() or require_tool("nginx")


def _envoy() -> str:
    return stack.find_envoy() or require_tool("envoy")


def _nginx_test(workdir, text):
    conf = configs.write_config(workdir, "nginx.conf", text)
    return subprocess.run([_nginx(), "-t", "-p", str(workdir), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)


def _envoy_validate(workdir, text):
    conf = configs.write_config(workdir, "envoy.yaml", text)
    return subprocess.run([_envoy(), "--mode", "validate", "-c", str(conf), "--disable-hot-restart",
                           "--log-level", "error"], capture_output=True, text=True, timeout=60)


def test_upstream_nginx_config_is_valid(tmp_path):
    done = _nginx_test(tmp_path, configs.upstream_nginx_conf(tmp_path, free_port()))
    assert done.returncode == 0, done.stderr


def test_front_nginx_config_is_valid(tmp_path):
    text = configs.front_nginx_conf(tmp_path, free_port(), free_port(), free_port(), free_port())
    done = _nginx_test(tmp_path, text)
    assert done.returncode == 0, done.stderr


def test_envoy_config_is_valid(tmp_path):
    done = _envoy_validate(tmp_path, configs.envoy_conf(free_port(), free_port(), free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr


def test_envoy_validate_rejects_a_broken_config(tmp_path):
    # Guards the check above: validate mode must really parse the typed configs.
    broken = configs.envoy_conf(free_port(), free_port(), free_port()).replace(
        "path_prefix:", "path_prefx:")
    done = _envoy_validate(tmp_path, broken)
    assert done.returncode != 0


def _assert_chain_enforces(base_url, echo_upstream, mint):
    anonymous = requests.get(base_url + PROTECTED, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    assert "service" not in anonymous.json()          # the upstream was never reached

    spoofed_anonymous = requests.get(base_url + PROTECTED, timeout=5,
                                     headers={"X-User-Id": "admin", "X-User-Roles": "admin"})
    assert spoofed_anonymous.status_code == 401

    # Every identity header, spoofed: those the decision sets are overwritten,
    # the others (this token has no email, and no x-auth-subject) removed.
    token = mint("alice", roles=("user",), mfa=True)
    spoofed = {name: "mallory-admin" for name in IDENTITY_HEADERS}
    allowed = requests.get(base_url + PROTECTED, timeout=5, headers={"Authorization": f"Bearer {token}", **spoofed})
    assert allowed.status_code == 200, allowed.text
    seen = allowed.json()
    assert seen["service"] == "bench-upstream"
    assert seen["path"] == PROTECTED
    assert seen["headers"]["x-user-id"] == "alice"
    assert {name: value for name, value in seen["headers"].items() if "mallory" in value} == {}


def test_envoy_ext_authz_chain_enforces_our_pdp(tmp_path, pdp_server, echo_upstream, mint):
    _envoy()
    envoy = stack.start_envoy(tmp_path, echo_upstream.port, pdp_server.port, concurrency=1)
    try:
        _assert_chain_enforces(envoy.url, echo_upstream, mint)
    finally:
        envoy.stop()


def test_nginx_auth_request_chain_enforces_our_pdp(tmp_path, pdp_server, echo_upstream, mint):
    front = stack.start_front_nginx(tmp_path, echo_upstream.port, pdp_server.port)
    try:
        _assert_chain_enforces(f"http://127.0.0.1:{front.auth_port}", echo_upstream, mint)
    finally:
        front.stop()


def test_both_chains_answer_the_pdps_429_when_a_quota_runs_out(tmp_path, redis_server, jwt_secret,
                                                                 echo_upstream, mint):
    env = stack.pdp_env(redis_server.redis_url, jwt_secret, free_port(), quotas=True)
    env.update({"RATE_LIMIT_REQUESTS_PER_MINUTE": "1", "RATE_LIMIT_BURST_SIZE": "1", "PDP_WORKERS": "1"})
    pdp = stack.start_pdp(env)
    front = envoy = None
    try:
        front = stack.start_front_nginx(tmp_path, echo_upstream.port, pdp.port)
        envoy = stack.start_envoy(tmp_path, echo_upstream.port, pdp.port, concurrency=1)
        chains = {"nginx": f"http://127.0.0.1:{front.auth_port}", "envoy": envoy.url}
        for name, base in chains.items():
            # One user per chain: each starts with a full bucket of one request.
            token = mint(f"quota-{name}-{free_port()}", roles=("user",), mfa=True)
            auth = {"Authorization": f"Bearer {token}"}
            assert requests.get(base + PROTECTED, headers=auth, timeout=5).status_code == 200
            limited = requests.get(base + PROTECTED, headers=auth, timeout=5)
            assert limited.status_code == 429, (name, limited.status_code, limited.text)
            assert limited.headers["Content-Type"].startswith("application/problem+json")
    finally:
        for server in (envoy, front, pdp):
            if server is not None:
                server.stop()
