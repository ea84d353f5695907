"""The proxy -> PDP link over https: PDP_CA_FILE, PDP_TLS_SERVER_NAME, PDP_CLIENT_CERT/KEY.

The PDP itself serves TLS here: its gunicorn app (`pdp.app:get_app()`, gevent
workers) with --certfile/--keyfile, and --ca-certs/--cert-reqs 2 for the mTLS
front, certificates from a CA made in the test. Verification is on by default;
any handshake or verification failure is a 503 problem+json (fail closed) and
one clear log line, never a plain-text fallback.
"""

import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.proxy.proxy_helpers import get, start_echo, start_proxy
from tests.support.certs import CertAuthority
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv

POLICIES = ROOT / "tests" / "proxy" / "policies"

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - {{name: meta-public, match: {{glob: "/api/v1/meta/{{health,info,version}}"}}, meta: true, fail_mode: open}}
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pdp-pki")
    ca = CertAuthority(directory / "pdp-ca", "pdp CA")
    other_ca = CertAuthority(directory / "other-ca", "someone else CA")
    client_ca = CertAuthority(directory / "client-ca", "proxy client CA")
    return {
        "ca": ca,
        "other_ca": other_ca,
        "client_ca": client_ca,
        "server": ca.issue("pdp.test", dns=("pdp.test",), ips=("127.0.0.1",)),
        "client": client_ca.issue("lucid-proxy", client=True),
        "stranger": other_ca.issue("stranger", client=True),
    }


def start_tls_pdp(env: dict, cert: str, key: str, ca: str, client_ca: str = None, client=None) -> Server:
    """The PDP's app under gunicorn serving HTTPS; returns once /v1/ready answers 200 over TLS."""
    port = free_port()
    argv = python_argv(
        "-m",
        "gunicorn",
        "--worker-class",
        "gevent",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--keep-alive",
        "75",
        "--certfile",
        cert,
        "--keyfile",
        key,
    )
    if client_ca:
        argv += ["--ca-certs", client_ca, "--cert-reqs", "2"]  # ssl.CERT_REQUIRED
    server = Server([*argv, "pdp.app:get_app()"], port, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"https://127.0.0.1:{port}/v1/ready", verify=ca, cert=client, timeout=5).ok:
                return server
        except requests.RequestException:
            pass
        if server.proc.poll() is not None:
            break
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the TLS PDP did not come up:\n{server.output()[-3000:]}")


@pytest.fixture(scope="module")
def pdp_env(redis_server, jwt_secret, tmp_path_factory):
    policy_dir = tmp_path_factory.mktemp("pdp-tls-policies") / "policies"
    shutil.copytree(POLICIES, policy_dir)
    return {
        "JWT_SECRET_KEY": jwt_secret,
        "REDIS_URL": redis_server.redis_url,
        "POLICY_DIR": str(policy_dir),
        "DECISION_HEADER_NAMES": "x-user-id,x-user-roles,x-lucid-subject,ratelimit*,retry-after,www-authenticate,allow",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("pdp-tls-metrics")),
    }


@pytest.fixture(scope="module")
def tls_pdp(pdp_env, pki):
    server = start_tls_pdp(pdp_env, *pki["server"], ca=str(pki["ca"].cert_path))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_pdp(pdp_env, pki):
    server = start_tls_pdp(
        pdp_env,
        *pki["server"],
        ca=str(pki["ca"].cert_path),
        client_ca=str(pki["client_ca"].cert_path),
        client=pki["client"],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app():
    server = start_echo("tls-pdp-app")
    yield server
    server.stop()


@pytest.fixture
def proxy_with(app):
    started = []

    def _start(env):
        proxy = start_proxy(routes=ROUTES.format(app=app.url), env={"PDP_TIMEOUT_MS": "3000", **env})
        started.append(proxy)
        return proxy

    yield _start
    for proxy in started:
        proxy.stop()


def https(server) -> str:
    return f"https://127.0.0.1:{server.port}"


def _auth(mint):
    return {"Authorization": "Bearer " + mint("tls-alice")}


def assert_fails_closed(proxy, mint, *logged):
    response = get(proxy.port, "/app/x", _auth(mint))
    assert response.status == 503, response.body
    assert response.header("content-type") == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 503 and "tls-pdp-app" not in response.body.decode()
    assert get(proxy.port, "/api/v1/meta/health").status == 503  # the PDP probe fails the same way
    deadline = time.monotonic() + 5
    while not all(text in proxy.output() for text in logged) and time.monotonic() < deadline:
        time.sleep(0.1)
    for text in logged:
        assert text in proxy.output(), proxy.output()[-3000:]


def test_verified_against_pdp_ca_file(proxy_with, tls_pdp, pki, mint):
    proxy = proxy_with({"PDP_URL": https(tls_pdp), "PDP_CA_FILE": str(pki["ca"].cert_path)})
    allowed = get(proxy.port, "/app/x", _auth(mint))
    assert allowed.status == 200, allowed.body
    seen = allowed.json()
    assert seen["service"] == "tls-pdp-app" and seen["headers"]["x-user-id"] == "tls-alice"
    # The PDP's own answers travel over the same link: a 401 with its header.
    anonymous = get(proxy.port, "/app/x")
    assert anonymous.status == 401 and anonymous.header("www-authenticate") == "Bearer"
    assert get(proxy.port, "/api/v1/meta/health").status == 200


def test_verification_is_on_by_default_the_system_store_does_not_trust_a_private_ca(proxy_with, tls_pdp, mint):
    proxy = proxy_with({"PDP_URL": https(tls_pdp)})
    assert_fails_closed(
        proxy,
        mint,
        f"TLS handshake with the PDP at {https(tls_pdp)}",
        "failed: certificate verify failed",
        "PDP unreachable over TLS",
    )


def test_a_pdp_signed_by_another_ca_fails_closed(proxy_with, tls_pdp, pki, mint):
    proxy = proxy_with({"PDP_URL": https(tls_pdp), "PDP_CA_FILE": str(pki["other_ca"].cert_path)})
    assert_fails_closed(proxy, mint, "failed: certificate verify failed")


def test_the_name_verified_is_pdp_tls_server_name(proxy_with, tls_pdp, pki, mint):
    named = proxy_with(
        {"PDP_URL": https(tls_pdp), "PDP_CA_FILE": str(pki["ca"].cert_path), "PDP_TLS_SERVER_NAME": "pdp.test"}
    )
    assert get(named.port, "/app/x", _auth(mint)).status == 200
    wrong = proxy_with(
        {"PDP_URL": https(tls_pdp), "PDP_CA_FILE": str(pki["ca"].cert_path), "PDP_TLS_SERVER_NAME": "evil.test"}
    )
    assert_fails_closed(wrong, mint, "(server name evil.test) failed: certificate verify failed")


def test_never_plain_text_an_https_url_to_a_plain_pdp_fails_closed(proxy_with, mint, pki, pdp_env):
    from tests.conftest import start_pdp

    plain = start_pdp({k: v for k, v in pdp_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, workers=1)
    try:
        proxy = proxy_with({"PDP_URL": f"https://127.0.0.1:{plain.port}", "PDP_CA_FILE": str(pki["ca"].cert_path)})
        assert_fails_closed(proxy, mint, "TLS handshake with the PDP at")
    finally:
        plain.stop()


def test_mtls_the_proxy_presents_pdp_client_cert(proxy_with, mtls_pdp, pki, mint):
    client_cert, client_key = pki["client"]
    proxy = proxy_with(
        {
            "PDP_URL": https(mtls_pdp),
            "PDP_CA_FILE": str(pki["ca"].cert_path),
            "PDP_CLIENT_CERT": client_cert,
            "PDP_CLIENT_KEY": client_key,
        }
    )
    allowed = get(proxy.port, "/app/x", _auth(mint))
    assert allowed.status == 200, allowed.body
    assert allowed.json()["headers"]["x-user-id"] == "tls-alice"


@pytest.mark.parametrize("who", ["no client certificate", "one from another CA"])
def test_mtls_a_refused_client_fails_closed(proxy_with, mtls_pdp, pki, mint, who):
    env = {"PDP_URL": https(mtls_pdp), "PDP_CA_FILE": str(pki["ca"].cert_path)}
    if who != "no client certificate":
        env["PDP_CLIENT_CERT"], env["PDP_CLIENT_KEY"] = pki["stranger"]
    proxy = proxy_with(env)
    # TLS 1.3: the PDP refuses the certificate after the client's side of the
    # handshake is done, so the alert arrives with the answer. Still TLS, still 503.
    assert_fails_closed(proxy, mint, "PDP unreachable over TLS")


def _check(env: dict) -> subprocess.CompletedProcess:
    full = {"LISTEN_HOST": "127.0.0.1", "HTTP_PORT": str(free_port()), "HTTPS_PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "proxy", "--check"], env=full, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_good_settings_pass_the_startup_check(pki):
    client_cert, client_key = pki["client"]
    done = _check(
        {
            "PDP_URL": "https://pdp.internal:8443",
            "PDP_CA_FILE": str(pki["ca"].cert_path),
            "PDP_CLIENT_CERT": client_cert,
            "PDP_CLIENT_KEY": client_key,
            "PDP_TLS_SERVER_NAME": "pdp.test",
        }
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"PDP_URL": "http://127.0.0.1:8082", "PDP_CA_FILE": "{ca}"},
            "PDP_CA_FILE: needs an https:// PDP_URL, got PDP_URL=http://127.0.0.1:8082",
        ),
        (
            {"PDP_URL": "http://127.0.0.1:8082", "PDP_CLIENT_CERT": "{cert}", "PDP_CLIENT_KEY": "{key}"},
            "PDP_CLIENT_CERT: needs an https:// PDP_URL",
        ),
        ({"PDP_URL": "https://pdp:8443", "PDP_CLIENT_CERT": "{cert}"}, "PDP_CLIENT_CERT/PDP_CLIENT_KEY: set both"),
        (
            {"PDP_URL": "https://pdp:8443", "PDP_CA_FILE": "/nonexistent/ca.pem"},
            "PDP_CA_FILE: no such file, got '/nonexistent/ca.pem'",
        ),
        ({"PDP_URL": "https://pdp:8443", "PDP_CA_FILE": "{garbage}"}, "PDP_CA_FILE: cannot load the certificates"),
        (
            {"PDP_URL": "https://pdp:8443", "PDP_CLIENT_CERT": "{cert}", "PDP_CLIENT_KEY": "{other_key}"},
            "PDP_CA_FILE/PDP_CLIENT_CERT/PDP_CLIENT_KEY: cannot load the certificates",
        ),
        (
            {"PDP_URL": "https://pdp:8443", "PDP_TLS_SERVER_NAME": "not a name"},
            "PDP_TLS_SERVER_NAME: expected a DNS name",
        ),
    ],
)
def test_bad_settings_stop_the_start_with_one_line_naming_them(pki, tmp_path, env, message):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    paths = {
        "ca": str(pki["ca"].cert_path),
        "cert": pki["client"][0],
        "key": pki["client"][1],
        "other_key": pki["stranger"][1],
        "garbage": str(garbage),
    }
    done = _check({k: v.format(**paths) for k, v in env.items()})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lucid-proxy: ") and message in lines[0], done.stderr
