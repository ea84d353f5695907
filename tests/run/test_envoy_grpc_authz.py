"""Envoy 1.40's gRPC ext_authz filter against `pdp serve-grpc` (real processes).

Envoy -> Authorization/Check -> our decision -> OkHttpResponse (identity
headers set, the client's own removed, quota headers on the response) or
DeniedHttpResponse (the decided status, problem+json). The PDP down is a
503 from Envoy (failure_mode_allow: false), never a pass.
"""
import concurrent.futures
import json
import os
import signal
import subprocess
import time
import uuid

import grpc
import pytest
import requests
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from bench import configs, stack
from tests.support.hostile_paths import assert_upstream_got_only_what_was_judged, load_corpus, raw_get
from tests.support.ports import free_port
from tests.support.sockets import established
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def grpc_pdp(redis_server, jwt_secret):
    env = stack.pdp_env(redis_server.redis_url, jwt_secret, free_port(), quotas=True)
    env.update({"PDP_GRPC_WORKERS": "1", "RATE_LIMIT_REQUESTS_PER_MINUTE": "2", "RATE_LIMIT_BURST_SIZE": "2",
                "DECISION_LOG": "on", "LOG_LEVEL": "info"})
    server = stack.start_pdp_grpc(env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def envoy(tmp_path_factory, grpc_pdp, echo_upstream):
    if not stack.find_envoy():
        require_tool("envoy")
    server = stack.start_envoy_grpc(tmp_path_factory.mktemp("envoy"), echo_upstream.port, grpc_pdp.port,
                                    concurrency=1)
    yield server
    server.stop()


@pytest.fixture
def fresh_user():
    # A new user per test: quotas (2 a minute here) are per user.
    return lambda roles=("user",): (f"u{uuid.uuid4().hex[:12]}", roles)


def _token(mint, sub, roles=("user",)):
    return "Bearer " + mint(sub, roles=roles, mfa=True, plan="free")


def test_envoy_accepts_the_grpc_config(tmp_path):
    if not stack.find_envoy():
        require_tool("envoy")
    conf = configs.write_config(tmp_path, "envoy.yaml", configs.envoy_grpc_conf(free_port(), free_port(), free_port()))
    done = subprocess.run([stack.find_envoy(), "--mode", "validate", "-c", str(conf), "--disable-hot-restart",
                           "--log-level", "error"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_allow_sets_identity_and_removes_the_clients_own(envoy, mint, fresh_user):
    sub, _ = fresh_user()
    resp = requests.get(envoy.url + "/api/v1/sessions", timeout=5, headers={
        "Authorization": _token(mint, sub), "X-User-Id": "mallory", "X-User-Roles": "admin",
        "X-User-Email": "boss@example.com", "X-User-Anything": "x"})
    assert resp.status_code == 200, resp.text
    seen = resp.json()
    assert seen["service"] == "bench-upstream"
    assert seen["headers"]["x-user-id"] == sub
    assert seen["headers"]["x-user-roles"] == "user"
    # Identity headers the decision did not set are removed, not passed through.
    assert "x-user-email" not in seen["headers"]
    assert "x-user-anything" not in seen["headers"]
    # Quota headers of the allowed request travel to the client.
    assert "ratelimit" in resp.headers and "ratelimit-policy" in resp.headers


def test_anonymous_is_a_401_problem(envoy):
    resp = requests.get(envoy.url + "/api/v1/sessions", timeout=5, headers={"X-User-Id": "admin"})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    problem = resp.json()
    assert problem["status"] == 401 and "service" not in problem   # the upstream was never reached


def test_invalid_token_is_a_401(envoy):
    resp = requests.get(envoy.url + "/api/v1/sessions", timeout=5, headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status_code == 401
    assert resp.json()["detail"].startswith("invalid_token")


def test_policy_deny_is_a_403_problem(envoy, mint, fresh_user):
    sub, _ = fresh_user()
    resp = requests.get(envoy.url + "/api/v1/users/someone-else", timeout=5,
                        headers={"Authorization": _token(mint, sub)})
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == 403
    assert resp.headers["x-lucid-decision-id"]


def test_quota_exhausted_is_a_429_with_its_headers(envoy, mint, fresh_user):
    sub, _ = fresh_user()
    auth = {"Authorization": _token(mint, sub)}
    statuses = [requests.get(envoy.url + "/api/v1/sessions", headers=auth, timeout=5) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429], [r.text for r in statuses]
    limited = statuses[-1]
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["type"].endswith("/quota-exceeded")
    assert "retry-after" in limited.headers or "ratelimit" in limited.headers


@pytest.mark.parametrize("target,expected", load_corpus())
def test_hostile_paths_reach_the_upstream_only_as_judged(envoy, grpc_pdp, mint, target, expected):
    """The upstream receives exactly the path the policy allowed, or nothing.

    Envoy normalizes the path before asking (normalize_path, merge_slashes),
    so the PDP and the upstream see the same path; a few targets our proxy
    refuses (`/../x`, a backslash, `"`) Envoy turns into a harmless path
    first, and that path is what is judged and sent. Escaped slashes, NUL,
    bad escapes and fragments are refused by Envoy or by the PDP."""
    # An admin, so that the policy allows every path of the API it knows.
    status, body = raw_get(envoy.port, target, _token(mint, f"adm{uuid.uuid4().hex[:12]}", ("admin",)))
    assert_upstream_got_only_what_was_judged(status, body, grpc_pdp.output(), target, expected)


def test_pdp_outage_fails_closed(tmp_path, echo_upstream, mint):
    """failure_mode_allow: false: nothing listens on the gRPC port, Envoy answers 503."""
    dead_port = free_port()
    server = stack.start_envoy_grpc(tmp_path, echo_upstream.port, dead_port, concurrency=1)
    try:
        resp = requests.get(server.url + "/api/v1/sessions", timeout=10,
                            headers={"Authorization": _token(mint, "alice")})
        assert resp.status_code == 503
        assert b"bench-upstream" not in resp.content
    finally:
        server.stop()


def _envoy_connections_to(envoy_pid: int, port: int) -> int:
    return sum(1 for holders in established(f"( dport = :{port} )") if envoy_pid in holders)


def test_envoy_spreads_checks_over_several_connections(tmp_path, grpc_pdp, echo_upstream, mint):
    """The pdp_grpc cluster caps streams per connection, so Checks in flight open
    more connections, which SO_REUSEPORT can hand to different PDP processes
    (one connection per Envoy worker left all but one process idle).

    The PDP is paused (SIGSTOP) while 3 connections' worth of requests wait: the
    kernel still completes Envoy's connects, so their count is what Envoy opened."""
    in_flight = configs.GRPC_STREAMS_PER_CONNECTION * 3
    envoy = stack.start_envoy_grpc(tmp_path, echo_upstream.port, grpc_pdp.port, concurrency=1, timeout="10s")
    tokens = [_token(mint, f"spread{i}-{uuid.uuid4().hex[:8]}") for i in range(in_flight)]
    session = requests.Session()
    session.get(envoy.url + "/api/v1/sessions", headers={"Authorization": tokens[0]}, timeout=10)  # one connection up
    paused = grpc_pdp.proc.pid
    os.kill(paused, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
            answers = [pool.submit(requests.get, envoy.url + "/api/v1/sessions", timeout=20,
                                   headers={"Authorization": token}) for token in tokens]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _envoy_connections_to(envoy.proc.pid, grpc_pdp.port) < 3:
                time.sleep(0.05)
            opened = _envoy_connections_to(envoy.proc.pid, grpc_pdp.port)
            os.kill(paused, signal.SIGCONT)
            statuses = [answer.result().status_code for answer in answers]
    finally:
        os.kill(paused, signal.SIGCONT)
        envoy.stop()
    assert opened >= 3, f"{in_flight} Checks in flight went over {opened} connection(s)"
    assert statuses == [200] * in_flight


def _check(port, method="GET", path="/api/v1/sessions", headers=None, principal="", raw=False):
    http_request = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method, path=path, host="gw.test", scheme="https")
    for name, value in (headers or {}).items():
        if raw:
            from envoy.config.core.v3 import base_pb2
            http_request.header_map.headers.append(base_pb2.HeaderValue(key=name, raw_value=value.encode()))
        else:
            http_request.headers[name] = value
    source = attribute_context_pb2.AttributeContext.Peer(principal=principal)
    source.address.socket_address.address = "127.0.0.9"
    request = external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext(
        source=source, request=attribute_context_pb2.AttributeContext.Request(http=http_request)))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=5)


def test_raw_header_map_is_read_like_headers(grpc_pdp, mint):
    # Envoy's encode_raw_headers sends header_map with raw bytes instead of the map.
    answer = _check(grpc_pdp.port, headers={"authorization": _token(mint, f"raw{uuid.uuid4().hex[:12]}")}, raw=True)
    assert answer.status.code == 0 and answer.HasField("ok_response")
    names = {h.header.key for h in answer.ok_response.headers}
    assert "x-user-id" in names


def test_malformed_check_is_a_400_deny(grpc_pdp):
    answer = _check(grpc_pdp.port, method="G E T")
    assert answer.HasField("denied_response")
    assert answer.denied_response.status.code == 400
    assert json.loads(answer.denied_response.body)["status"] == 400


def test_principal_and_peer_address_reach_the_decision_log(grpc_pdp):
    _check(grpc_pdp.port, path="/api/v1/health-of-nothing", principal="spiffe://cluster.local/ns/a/sa/b")
    log = grpc_pdp.output()
    lines = [json.loads(line) for line in log.splitlines() if "spiffe://cluster.local/ns/a/sa/b" in line]
    assert lines, log[-2000:]
    request = lines[-1]["input"]["request"]
    assert request["client_principal"] == "spiffe://cluster.local/ns/a/sa/b"
    assert request["client_ip"] == "127.0.0.9"
