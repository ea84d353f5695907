"""`make run` (devenv/run.py) starts the whole gateway and stops all of it.

One shared run per module, every port overridden to a free 127.0.0.1 port and
its state in a temporary LUCID_RUN_DIR; the last test sends SIGTERM and checks
that no child and no listening port is left. A second run finds a backend,
Redis, MongoDB and SMTP already answering, uses them, and is stopped by Ctrl-C.
"""
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench import stack
from proxy.routes import DEFAULT_ROUTES_FILE
from tests.support.mongo_server import start_mongo
from tests.support.ports import free_ports
from tests.support.processes import ROOT
from tests.support.smtp_server import start_smtp

from .conftest import start_standin

MAKE_RUN = [sys.executable, "-m", "devenv.run"]   # what `make run` runs
READY_BANNER = "lucid-gateway is up"
_STARTUP_TIMEOUT_S = 120
_STOP_TIMEOUT_S = 30


class RunScript:
    """`make run` (python -m devenv.run) as a child in its own session, output in a file."""

    def __init__(self, run_dir: Path, env: dict):
        self.run_dir = run_dir
        self.env = env
        self.log_path = run_dir.parent / "make-run.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(MAKE_RUN, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**_env_without("JWT_SECRET_KEY", "MONGODB_URI", "SMTP_URL", "TOTP_ENCRYPTION_KEYS",
                                                           "PUBLIC_BASE_URL", "SIGNUP_MODE"), **env},
                                     cwd=ROOT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while READY_BANNER not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"make run exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"make run not ready within {_STARTUP_TIMEOUT_S}s:\n{self.output()}")
            time.sleep(0.2)

    def child_pids(self) -> dict:
        return {p.stem: int(p.read_text()) for p in (self.run_dir / "pids").glob("*.pid")}

    def kill_everything(self) -> None:
        """Last resort for a failed test: no child may outlive the suite."""
        for pid in list(self.child_pids().values()) + [self.proc.pid]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(5)


def _env_without(*names):
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "state"
    # Distinct ports: one handed out twice made SESSION_MANAGEMENT the PDP's own port.
    ports = free_ports((
        "HTTP_PORT", "HTTPS_PORT", "AUTH_PORT", "REDIS", "BLOCKCHAIN_CORE", "SESSION_MANAGEMENT",
        "AUTH_SERVICE", "TRON_PAYMENT", "MONGODB", "SMTP"))
    env = {
        "LUCID_RUN_DIR": str(run_dir),
        "HTTP_PORT": str(ports["HTTP_PORT"]),
        "HTTPS_PORT": str(ports["HTTPS_PORT"]),
        "AUTH_PORT": str(ports["AUTH_PORT"]),
        "REDIS_URL": f"redis://127.0.0.1:{ports['REDIS']}/0",
        "BLOCKCHAIN_CORE_URL": f"http://127.0.0.1:{ports['BLOCKCHAIN_CORE']}",
        "SESSION_MANAGEMENT_URL": f"http://127.0.0.1:{ports['SESSION_MANAGEMENT']}",
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['AUTH_SERVICE']}",
        "TRON_PAYMENT_URL": f"http://127.0.0.1:{ports['TRON_PAYMENT']}",
        "LUCID_MONGODB_PORT": str(ports["MONGODB"]),
        "LUCID_SMTP_PORT": str(ports["SMTP"]),
        "PDP_WORKERS": "1",
    }
    # No JWT_SECRET_KEY (RunScript drops it): make run generates a dev secret into the run dir.
    script = RunScript(run_dir, env)
    script.ports = ports
    try:
        script.wait_ready()
        yield script
    finally:
        if script.proc.poll() is None:
            script.proc.send_signal(signal.SIGTERM)
            try:
                script.proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                script.kill_everything()


@pytest.fixture(scope="module")
def token(gateway):
    secret = (gateway.run_dir / "jwt-secret").read_text().strip()
    return stack.mint_token(secret, sub="alice", roles="user", mfa=True)


def _gateway_url(gateway, path):
    return f"http://127.0.0.1:{gateway.ports['HTTP_PORT']}{path}"


def test_generates_a_dev_secret_and_prints_a_ready_to_paste_curl(gateway):
    secret_file = gateway.run_dir / "jwt-secret"
    assert len(secret_file.read_text().strip()) >= 32
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    out = gateway.output()
    assert "TOKEN=ey" in out
    assert f"http://127.0.0.1:{gateway.ports['AUTH_PORT']}" in out


def test_pdp_answers_forward_auth_with_the_generated_secret(gateway, token):
    pdp = f"http://127.0.0.1:{gateway.ports['AUTH_PORT']}/v1/forward-auth"
    request = {"X-Original-Method": "GET", "X-Original-URI": "/api/v1/sessions"}
    assert requests.get(pdp, headers=request, timeout=5).status_code == 401
    allowed = requests.get(pdp, headers={**request, "Authorization": f"Bearer {token}"}, timeout=5)
    assert allowed.status_code == 200
    assert allowed.headers["X-User-Id"] == "alice"


def test_standins_answer_on_the_seed_cluster_ports(gateway):
    for name in ("BLOCKCHAIN_CORE", "SESSION_MANAGEMENT", "AUTH_SERVICE", "TRON_PAYMENT"):
        seen = requests.get(f"http://127.0.0.1:{gateway.ports[name]}/x", timeout=5).json()
        assert seen["service"] == name.lower().replace("_", "-")


def test_redis_runs_with_its_data_in_the_run_dir(gateway):
    with socket.create_connection(("127.0.0.1", gateway.ports["REDIS"]), timeout=5) as s:
        s.sendall(b"CONFIG GET dir\r\n")
        reply = s.recv(4096).decode()
    assert str(gateway.run_dir / "redis") in reply


def test_public_meta_endpoint_through_the_proxy(gateway):
    answer = requests.get(_gateway_url(gateway, "/api/v1/meta/info"), timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")


def test_authenticated_request_reaches_the_standin_with_identity_and_normalized_path(gateway, token):
    # http.client sends the path byte for byte, so the proxy has to normalize it.
    conn = http.client.HTTPConnection("127.0.0.1", gateway.ports["HTTP_PORT"], timeout=10)
    try:
        conn.request("GET", "/api/v1//sessions/./s-1?page=2", headers={
            "Authorization": f"Bearer {token}", "X-User-Id": "mallory", "X-User-Roles": "admin"})
        resp = conn.getresponse()
        status, body = resp.status, resp.read()
    finally:
        conn.close()
    assert status == 200, body
    seen = json.loads(body)
    assert seen["service"] == "session-management"
    assert seen["path"] == "/api/v1/sessions/s-1"
    assert seen["query"] == {"page": ["2"]}
    assert seen["headers"]["x-user-id"] == "alice"
    assert "admin" not in seen["headers"].get("x-user-roles", "")
    assert seen["headers"]["x-request-id"]


def test_anonymous_request_to_a_protected_route_is_401_problem_json(gateway):
    answer = requests.get(_gateway_url(gateway, "/api/v1/sessions"), timeout=5)
    assert answer.status_code == 401
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["status"] == 401


def test_https_listener_uses_the_generated_self_signed_certificate(gateway):
    cert = gateway.run_dir / "certs" / "gateway.crt"
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", gateway.ports["HTTPS_PORT"]), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /api/v1/meta/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")


def _run_briefly(env: dict, timeout: float = 60):
    return subprocess.run(MAKE_RUN, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, **env})


@pytest.mark.parametrize("setting, value, message", [
    # the services' own lines (servicekit.settings, the tables of proxy/config.py and pdp/config.py)
    ("HTTP_PORT", "80x80", "HTTP_PORT: expected an integer from 1 to 65535, got '80x80'"),
    ("SSL_ENABLED", "maybe", "SSL_ENABLED: expected true or false, got 'maybe'"),
    ("AUTH_PORT", "0", "AUTH_PORT: expected an integer from 1 to 65535, got '0'"),
    # the proxy's routes loader, for the URLs the routes file takes from the environment
    ("BLOCKCHAIN_CORE_URL", "http://127.0.0.1:80a",
     f"{DEFAULT_ROUTES_FILE}: clusters.blockchain_core.endpoints: expected an http:// or https:// URL, "
     "got 'http://127.0.0.1:80a' (a string) (from ${BLOCKCHAIN_CORE_URL})"),
    ("TRON_PAYMENT_URL", "http://127.0.0.1:8087,ftp://pay",
     f"{DEFAULT_ROUTES_FILE}: clusters.tron_payment.endpoints: expected an http:// or https:// URL, "
     "got 'ftp://pay' (a string) (from ${TRON_PAYMENT_URL})"),
    # make run's own
    ("RUN_STOP_GRACE_S", "soon", "RUN_STOP_GRACE_S: expected a number from 0.1 to 3600, got 'soon'"),
])
def test_a_bad_setting_stops_startup_with_one_line_naming_it(tmp_path, setting, value, message):
    done = _run_briefly({"LUCID_RUN_DIR": str(tmp_path / "state"), setting: value})
    assert done.returncode == 2
    assert done.stderr.strip() == f"run: {message}"     # one line, and nothing was started
    assert not (tmp_path / "state").exists()


def test_a_busy_port_stops_startup_and_stops_what_was_already_started(tmp_path):
    ports = free_ports(("REDIS", "BLOCKCHAIN_CORE", "SESSION_MANAGEMENT", "AUTH_SERVICE", "TRON_PAYMENT",
                        "MONGODB", "SMTP"))
    redis_port = ports["REDIS"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        done = _run_briefly({
            "LUCID_RUN_DIR": str(tmp_path / "state"), "AUTH_PORT": str(busy_port),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "BLOCKCHAIN_CORE_URL": f"http://127.0.0.1:{ports['BLOCKCHAIN_CORE']}",
            "SESSION_MANAGEMENT_URL": f"http://127.0.0.1:{ports['SESSION_MANAGEMENT']}",
            "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['AUTH_SERVICE']}",
            "TRON_PAYMENT_URL": f"http://127.0.0.1:{ports['TRON_PAYMENT']}",
            "LUCID_MONGODB_PORT": str(ports["MONGODB"]), "LUCID_SMTP_PORT": str(ports["SMTP"]),
        })
    assert done.returncode == 2, done.stderr
    assert f"port {busy_port} (AUTH_PORT) is already in use" in done.stderr
    # Redis and the stand-ins (in the routes file's order) had started before the PDP's port was checked.
    assert "stopping redis auth-service session-management blockchain-core tron-payment " in done.stderr
    assert not _listening(redis_port)
    assert not _listening(ports["BLOCKCHAIN_CORE"])


def test_reuses_a_running_redis_and_stops_everything_else_when_a_child_dies(tmp_path, redis_server):
    # One run for two behaviours, to keep the suite short: a Redis already
    # answering at REDIS_URL is reused (and left running), and a child that
    # dies makes make run stop the rest and exit 1.
    ports = free_ports(("HTTP_PORT", "HTTPS_PORT", "AUTH_PORT", "A", "B", "C", "D"))
    script = RunScript(tmp_path / "state", {
        "LUCID_RUN_DIR": str(tmp_path / "state"), "HTTP_PORT": str(ports["HTTP_PORT"]),
        "HTTPS_PORT": str(ports["HTTPS_PORT"]), "AUTH_PORT": str(ports["AUTH_PORT"]),
        "REDIS_URL": redis_server.redis_url,
        "BLOCKCHAIN_CORE_URL": f"http://127.0.0.1:{ports['A']}",
        "SESSION_MANAGEMENT_URL": f"http://127.0.0.1:{ports['B']}",
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['C']}",
        "TRON_PAYMENT_URL": f"http://127.0.0.1:{ports['D']}", "PDP_WORKERS": "1",
    })
    try:
        script.wait_ready()
        assert "already running, reused" in script.output()
        assert "redis" not in script.child_pids()
        os.kill(script.child_pids()["tron-payment"], signal.SIGKILL)
        code = script.proc.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        script.kill_everything()
        pytest.fail("make run went on after a child died")
    assert code == 1
    assert "tron-payment exited unexpectedly; stopping the rest" in script.output()
    assert [name for name, port in ports.items() if _listening(port)] == []
    assert _listening(redis_server.port)        # not ours to stop


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_sign_in_mail_lands_in_run_mail_with_a_link_to_the_gateway(gateway):
    out = gateway.output()
    assert "mongodb    mongodb://127.0.0.1:" in out and "SecantusDB started here" in out
    assert "mail/*.eml" in out
    api = _gateway_url(gateway, "/api/v1")
    # AUTH_SERVICE_URL is set to a stand-in in this run; the PDP answers /api/v1/users directly.
    pdp = f"http://127.0.0.1:{gateway.ports['AUTH_PORT']}/api/v1"
    created = requests.post(pdp + "/users", json={"email": "runner@example.com"}, timeout=10)
    assert created.status_code == 201, created.text
    assert requests.post(pdp + "/auth/login", json={"email": "runner@example.com"}, timeout=10).status_code == 202
    deadline = time.monotonic() + 10
    while not list((gateway.run_dir / "mail").glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.1)
    mail = next((gateway.run_dir / "mail").glob("*.eml")).read_text()
    link = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1/auth/magic\?token=[A-Za-z0-9_-]+", mail)
    assert link and link.group(1) == _gateway_url(gateway, "")
    assert api.startswith(link.group(1))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_sigterm_stops_every_child_and_frees_every_port(gateway):
    # Keep this test last in the module: it ends the shared run.
    children = gateway.child_pids()
    expected = {"redis", "pdp", "blockchain-core", "session-management", "auth-service", "tron-payment",
                "mongodb", "smtp", "proxy"}
    assert expected <= set(children)

    gateway.proc.send_signal(signal.SIGTERM)
    try:
        code = gateway.proc.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        gateway.kill_everything()
        pytest.fail(f"make run did not stop within {_STOP_TIMEOUT_S}s")
    assert code == 0, gateway.output()

    # Each child led its own process group: an empty group means it and
    # everything it forked (gunicorn workers) are gone.
    deadline = time.monotonic() + 5
    while any(_group_alive(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [name for name, pid in children.items() if _group_alive(pid)] == []
    assert [name for name, port in gateway.ports.items() if _listening(port)] == []


# --- a second run: what already answers is used, and Ctrl-C stops the rest ---------------------


def _processes() -> dict:
    """pid -> (ppid, session id, start time, state) of every process now, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[19]), fields[0])
    return found


def _descendants(root: int) -> dict:
    """pid -> start time of every process below root."""
    procs, found, frontier = _processes(), {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _sid, start, _state) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


@pytest.fixture(scope="module")
def reusing_run(tmp_path_factory, redis_server):
    """make run where a backend, Redis, MongoDB and an SMTP server already answer on loopback."""
    work = tmp_path_factory.mktemp("reusing")
    own_service = start_standin("users-own-service")   # "your service on 127.0.0.1:3000"
    mongo = start_mongo()
    mail = start_smtp()
    ports = free_ports(("HTTP_PORT", "HTTPS_PORT", "AUTH_PORT", "B", "C", "D"))
    run = RunScript(work / "state", {
        "LUCID_RUN_DIR": str(work / "state"), "HTTP_PORT": str(ports["HTTP_PORT"]),
        "HTTPS_PORT": str(ports["HTTPS_PORT"]), "AUTH_PORT": str(ports["AUTH_PORT"]),
        "REDIS_URL": redis_server.redis_url,
        "BLOCKCHAIN_CORE_URL": own_service.url,
        "SESSION_MANAGEMENT_URL": f"http://127.0.0.1:{ports['B']}",
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['C']}",
        "TRON_PAYMENT_URL": f"http://127.0.0.1:{ports['D']}",
        # Unset MONGODB_URI and SMTP_URL: make run's own addresses, where these already answer.
        "LUCID_MONGODB_PORT": str(mongo.port), "LUCID_SMTP_PORT": str(mail.port), "PDP_WORKERS": "1",
    })
    run.ports, run.own_service, run.mongo, run.mail = ports, own_service, mongo, mail
    try:
        run.wait_ready()
        yield run
    finally:
        if run.proc.poll() is None:
            run.kill_everything()
        for server in (own_service, mongo, mail):
            server.stop()


def test_a_backend_already_answering_on_loopback_is_used_and_no_standin_is_started(reusing_run):
    out, port = reusing_run.output(), reusing_run.own_service.port
    assert f"blockchain-core: http://127.0.0.1:{port} (answers already, used as is)" in out
    assert f"  redis      {reusing_run.env['REDIS_URL']}  (already running, reused)" in out
    assert f"  mongodb    mongodb://127.0.0.1:{reusing_run.mongo.port}/lucid_gateway  (already running, reused)" in out
    assert f"  mail       smtp://127.0.0.1:{reusing_run.mail.port}  (already running, reused)" in out
    children = set(reusing_run.child_pids())
    assert children == {"pdp", "proxy", "session-management", "auth-service", "tron-payment"}

    secret = (reusing_run.run_dir / "jwt-secret").read_text().strip()
    token = stack.mint_token(secret, sub="alice", roles="user", mfa=True)
    answer = requests.get(f"http://127.0.0.1:{reusing_run.ports['HTTP_PORT']}/api/v1/chain/info",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["service"] == "users-own-service"     # the proxy reached the user's service


def test_ctrl_c_leaves_no_child_process_and_what_was_there_before_keeps_running(reusing_run):
    # Keep this test last: it ends the second run.
    below = _descendants(reusing_run.proc.pid)
    sessions = set(reusing_run.child_pids().values())
    assert len(below) > len(sessions)       # gunicorn's and the proxy's workers are in there too

    reusing_run.proc.send_signal(signal.SIGINT)   # what Ctrl-C sends (the children have their own sessions)
    try:
        code = reusing_run.proc.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        reusing_run.kill_everything()
        pytest.fail(f"make run did not stop within {_STOP_TIMEOUT_S}s")
    assert code == 0, reusing_run.output()
    assert reusing_run.output().rstrip().endswith("run: stopped")

    left = {pid: info for pid, info in _processes().items() if info[3] != "Z"
            and (below.get(pid) == info[2] or info[1] in sessions)}
    assert left == {}
    assert list((reusing_run.run_dir / "pids").glob("*.pid")) == []
    for server in (reusing_run.own_service, reusing_run.mongo, reusing_run.mail):
        assert _listening(server.port)        # not ours to stop


def test_no_child_outlives_make_run_killed_with_sigkill(tmp_path, redis_server):
    # SIGKILL leaves make run no chance to stop anything: the kernel asks each
    # child to stop instead (PR_SET_PDEATHSIG, devenv/processes.py).
    ports = free_ports(("HTTP_PORT", "AUTH_PORT", "A", "B", "C", "D", "MONGODB", "SMTP"))
    run = RunScript(tmp_path / "state", {
        "LUCID_RUN_DIR": str(tmp_path / "state"), "HTTP_PORT": str(ports["HTTP_PORT"]), "SSL_ENABLED": "false",
        "AUTH_PORT": str(ports["AUTH_PORT"]), "REDIS_URL": redis_server.redis_url,
        "BLOCKCHAIN_CORE_URL": f"http://127.0.0.1:{ports['A']}",
        "SESSION_MANAGEMENT_URL": f"http://127.0.0.1:{ports['B']}",
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['C']}",
        "TRON_PAYMENT_URL": f"http://127.0.0.1:{ports['D']}", "LUCID_MONGODB_PORT": str(ports["MONGODB"]),
        "LUCID_SMTP_PORT": str(ports["SMTP"]), "PDP_WORKERS": "1",
    })
    children = {}
    try:
        run.wait_ready()
        children = run.child_pids()
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(5)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while any(_group_alive(pid) for pid in children.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [name for name, pid in children.items() if _group_alive(pid)] == []
        assert [name for name, port in ports.items() if _listening(port)] == []
    finally:
        run.kill_everything()
