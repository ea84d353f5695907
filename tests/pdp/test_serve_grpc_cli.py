"""`pdp serve-grpc` at startup: a bad setting, a broken policy or a taken port is
one line and exit 2; SIGTERM stops every process with exit 0."""

import signal
import socket
import subprocess
import sys

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, children

FIXTURES = ROOT / "tests" / "fixtures" / "policies"


def _env(redis_server, jwt_secret, **extra):
    return {
        "JWT_SECRET_KEY": jwt_secret,
        "REDIS_URL": redis_server.redis_url,
        "POLICY_DIR": str(FIXTURES),
        "PDP_BIND_HOST": "127.0.0.1",
        "PATH": "/usr/bin:/bin",
        **extra,
    }


def _run(env):
    return subprocess.run(
        [sys.executable, "-m", "pdp", "serve-grpc"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )


def test_a_bad_port_setting_is_one_line(redis_server, jwt_secret):
    done = _run(_env(redis_server, jwt_secret, PDP_GRPC_PORT="70000"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "PDP_GRPC_PORT" in done.stderr


def test_a_broken_policy_is_one_line(redis_server, jwt_secret, tmp_path):
    (tmp_path / "broken.rego").write_text("package gateway\n\ndecision := {\n")
    done = _run(_env(redis_server, jwt_secret, POLICY_DIR=str(tmp_path), PDP_GRPC_PORT=str(free_port())))
    assert done.returncode == 2 and "POLICY_DIR" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_taken_port_is_one_line(redis_server, jwt_secret):
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(_env(redis_server, jwt_secret, PDP_GRPC_PORT=str(port), PDP_GRPC_WORKERS="1"))
    assert done.returncode == 2
    assert "PDP_GRPC_PORT: cannot listen on 127.0.0.1:" in done.stderr


def test_two_processes_answer_and_sigterm_stops_them(redis_server, jwt_secret):
    port = free_port()
    server = Server(
        [sys.executable, "-m", "pdp", "serve-grpc"],
        port,
        env=_env(redis_server, jwt_secret, PDP_GRPC_PORT=str(port), PDP_GRPC_WORKERS="2"),
        ready_timeout=60,
    )
    try:
        http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/public/x")
        request = external_auth_pb2.CheckRequest(
            attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http)
            )
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)
        assert answer.HasField("ok_response") and answer.status.code == 0  # /public is open to anyone
        assert len(children(server.proc.pid)) == 2
    finally:
        server.signal(signal.SIGTERM)
        try:
            code = server.proc.wait(20)
        finally:
            server.stop()  # whatever happened above, nothing is left running
    assert code == 0, server.output()[-2000:]


def test_pdp_serve_with_grpc_enabled_serves_both_and_stops_both(redis_server, jwt_secret):
    from tests.support.pdp_process import start_pdp

    grpc_port = free_port()
    env = _env(redis_server, jwt_secret, PDP_GRPC_ENABLED="true", PDP_GRPC_PORT=str(grpc_port), PDP_GRPC_WORKERS="1")
    env.pop("PATH")
    pdp = start_pdp(env, workers=1)
    try:
        import requests

        assert requests.get(pdp.url + "/v1/health", timeout=5).status_code == 200
        from tests.support.ports import wait_for_port

        wait_for_port(grpc_port, timeout=60)
        http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/private/x")
        request = external_auth_pb2.CheckRequest(
            attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http)
            )
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)
        assert answer.denied_response.status.code == 401  # /private needs a token
    finally:
        pdp.signal(signal.SIGTERM)
        try:
            code = pdp.proc.wait(30)
        finally:
            pdp.stop()
    assert code == 0, pdp.output()[-2000:]
    with socket.socket() as probe:  # the gRPC server went with it
        assert probe.connect_ex(("127.0.0.1", grpc_port)) != 0


def test_a_grpc_failure_stops_the_whole_pdp(redis_server, jwt_secret):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _env(
            redis_server,
            jwt_secret,
            PDP_GRPC_ENABLED="true",
            PDP_GRPC_PORT=str(taken.getsockname()[1]),
            AUTH_PORT=str(free_port()),
            PDP_WORKERS="1",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "pdp", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, out
    assert "PDP_GRPC_PORT: cannot listen" in out
    assert (
        "the ext_authz gRPC server stopped (exit 1), so the PDP stopped too" in out
    )  # 2 workers: the supervisor says 1
