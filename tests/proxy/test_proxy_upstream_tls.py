"""HTTPS upstreams: verified against a CA bundle, SNI, optional client certificate.

A real TLS upstream (tests/proxy/echo_server.py with its own CA made here)
behind the real proxy. Every handshake or verification failure is a 502
problem+json and one log line; nothing falls back to plain text.
"""

import json
import subprocess
import sys
import time

import pytest

from tests.proxy.proxy_helpers import ECHO, get, start_echo, start_proxy, write_routes
from tests.support.certs import CertAuthority
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv


def start_tls_echo(name, cert, key, client_ca=None):
    port = free_port()
    env = {"ECHO_TLS_CERT": cert, "ECHO_TLS_KEY": key}
    if client_ca:
        env["ECHO_TLS_CLIENT_CA"] = str(client_ca)
    return Server(python_argv(ECHO, str(port), name), port, env=env)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(directory / "server-ca", "upstream CA")
    other_ca = CertAuthority(directory / "other-ca", "someone else CA")
    client_ca = CertAuthority(directory / "client-ca", "client CA")
    server = ca.issue("upstream.test", dns=("upstream.test", "localhost"), ips=("127.0.0.1",))
    client = client_ca.issue("lucid-proxy", client=True)
    return {"ca": ca, "other_ca": other_ca, "client_ca": client_ca, "server": server, "client": client}


@pytest.fixture(scope="module")
def tls_upstream(pki):
    server = start_tls_echo("tls-app", *pki["server"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_upstream(pki):
    server = start_tls_echo("mtls-app", *pki["server"], client_ca=pki["client_ca"].cert_path)
    yield server
    server.stop()


def routes(endpoint, tls_block=""):
    return f"""
clusters:
  app:
    endpoints: ["{endpoint}"]
{tls_block}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


@pytest.fixture
def proxy_for():
    started = []

    def _start(text):
        proxy = start_proxy(routes=text)
        started.append(proxy)
        return proxy

    yield _start
    for proxy in started:
        proxy.stop()


def test_verified_against_the_clusters_ca_bundle(proxy_for, tls_upstream, pki):
    proxy = proxy_for(routes(f"https://127.0.0.1:{tls_upstream.port}", f"    tls: {{ca_file: {pki['ca'].cert_path}}}"))
    response = get(proxy.port, "/hello")
    assert response.status == 200, response.body
    assert response.json()["service"] == "tls-app"


def test_server_name_is_sent_as_sni_and_verified(proxy_for, tls_upstream, pki):
    proxy = proxy_for(
        routes(
            f"https://127.0.0.1:{tls_upstream.port}",
            f"    tls: {{ca_file: {pki['ca'].cert_path}, server_name: upstream.test}}",
        )
    )
    response = get(proxy.port, "/sni")
    assert response.status == 200, response.body
    assert response.json()["sni"] == "upstream.test"


def test_a_name_the_certificate_does_not_carry_is_a_502(proxy_for, tls_upstream, pki):
    proxy = proxy_for(
        routes(
            f"https://127.0.0.1:{tls_upstream.port}",
            f"    tls: {{ca_file: {pki['ca'].cert_path}, server_name: evil.test}}",
        )
    )
    response = get(proxy.port, "/x")
    assert response.status == 502
    assert response.header("content-type") == "application/problem+json"
    assert "TLS handshake failed" in response.json()["detail"]
    assert "tls-app" not in response.body.decode()
    assert "TLS handshake with https://127.0.0.1" in proxy.output() and "evil.test" in proxy.output()


def test_an_untrusted_upstream_is_a_502_with_a_log_line(proxy_for, tls_upstream, pki):
    # Trusting another CA (and, below, only the system store) must not reach the upstream.
    for block in (f"    tls: {{ca_file: {pki['other_ca'].cert_path}}}", ""):
        proxy = proxy_for(routes(f"https://127.0.0.1:{tls_upstream.port}", block))
        response = get(proxy.port, "/x")
        assert response.status == 502, response.body
        assert "certificate verify failed" in response.json()["detail"]
        assert "failed: certificate verify failed" in proxy.output()


def test_no_plain_text_fallback(proxy_for):
    plain = start_echo("plain-app")
    try:
        proxy = proxy_for(routes(f"https://127.0.0.1:{plain.port}"))
        response = get(proxy.port, "/x")
        assert response.status == 502
        assert "plain-app" not in response.body.decode()
    finally:
        plain.stop()


def test_client_certificate_for_mtls(proxy_for, mtls_upstream, pki):
    ca = pki["ca"].cert_path
    without = proxy_for(routes(f"https://127.0.0.1:{mtls_upstream.port}", f"    tls: {{ca_file: {ca}}}"))
    refused = get(without.port, "/x")
    assert refused.status == 502 and "mtls-app" not in refused.body.decode()
    cert, key = pki["client"]
    with_cert = proxy_for(
        routes(
            f"https://127.0.0.1:{mtls_upstream.port}",
            f"    tls: {{ca_file: {ca}, client_cert: {cert}, client_key: {key}}}",
        )
    )
    response = get(with_cert.port, "/x")
    assert response.status == 200, response.body
    assert response.json()["client_cert"] == "commonName=lucid-proxy"


def _endpoint_health(proxy):
    doc = json.loads(get(proxy.port, "/api/v1/meta/health/details").body)
    return doc["checks"]["clusters"]["app"]["endpoints"][0]["healthy"]


def test_health_checks_go_over_verified_tls(proxy_for, tls_upstream, pki):
    """Right CA: the endpoint stays healthy (a plain-text probe would fail); wrong CA: unhealthy."""
    proxies = {}
    for label, ca in (("right", pki["ca"].cert_path), ("wrong", pki["other_ca"].cert_path)):
        text = routes(
            f"https://127.0.0.1:{tls_upstream.port}",
            f"    tls: {{ca_file: {ca}}}\n"
            "    health_check: {path: /health, interval_s: 0.1, timeout_ms: 1000, unhealthy_threshold: 2}",
        )
        text = text.replace(
            "routes:\n", "routes:\n  - {name: meta, match: {prefix: /api/v1/meta}, meta: true, fail_mode: open}\n"
        )
        proxies[label] = proxy_for(text)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _endpoint_health(proxies["wrong"]):
        time.sleep(0.1)
    assert _endpoint_health(proxies["wrong"]) is False
    assert _endpoint_health(proxies["right"]) is True
    assert get(proxies["right"].port, "/x").status == 200


def _check(text):
    path = write_routes(text)
    return subprocess.run(
        [sys.executable, "-m", "proxy", "--check", "--routes", path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    ), path


@pytest.mark.parametrize(
    "block,needle",
    [
        ("    tls: {ca_flie: /x}", "clusters.app.tls.ca_flie: unknown key"),
        ("    tls: {verify: 'no'}", "clusters.app.tls.verify: expected true or false"),
        ("    tls: {ca_file: /no/such/ca.pem}", "clusters.app.tls.ca_file: no such file"),
        ("    tls: {min_version: '1.1'}", "clusters.app.tls.min_version"),
        ("    tls: {client_cert: /etc/hostname}", "clusters.app.tls: client_cert and client_key go together"),
        ("    tls: [1]", "clusters.app.tls: expected a mapping"),
        ("    tsl: {}", "clusters.app.tsl: unknown key"),
    ],
)
def test_a_bad_tls_block_stops_startup_with_one_line(block, needle):
    done, path = _check(routes("https://127.0.0.1:9", block))
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and path in lines[0], done.stderr


def test_tls_block_on_a_plain_cluster_is_refused():
    done, _ = _check(routes("http://127.0.0.1:9", "    tls: {verify: true}"))
    assert done.returncode == 2 and "clusters.app.tls: only for https:// endpoints" in done.stderr
