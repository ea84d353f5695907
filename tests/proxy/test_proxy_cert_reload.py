"""Certificate reload without a signal: rewritten files are picked up by every
worker; a bad write keeps the last good pair. Real files, a real TLS client."""

import os
import shutil
import socket

import pytest
from cryptography import x509

from tests.proxy.proxy_helpers import make_cert, start_echo, start_proxy, tls_client_context, wait_until

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


@pytest.fixture(scope="module")
def upstream():
    server = start_echo("app")
    yield server
    server.stop()


def served_serial(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def reloading_proxy(upstream, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = make_cert(str(live), serial=1001)
    proxy = start_proxy(
        routes=ROUTES.format(app=upstream.url),
        workers=2,
        env={"SSL_ENABLED": "true", "SSL_CERT_PATH": cert, "SSL_KEY_PATH": key, "SSL_RELOAD_INTERVAL_S": "0.2"},
    )
    wait_until(lambda: _port_open(proxy.https_port))
    yield proxy, live, tmp_path
    proxy.stop()


def _every_worker_serves(port, serial, timeout=10):
    # Two workers share the port; several handshakes land on both.
    wait_until(lambda: all(served_serial(port) == serial for _ in range(8)), timeout=timeout)


def test_rewritten_files_are_served_without_a_signal(reloading_proxy):
    proxy, live, _ = reloading_proxy
    assert served_serial(proxy.https_port) == 1001
    make_cert(str(live), serial=2002)  # rewrites cert.pem and key.pem in place
    _every_worker_serves(proxy.https_port, 2002)


def test_a_bad_write_keeps_the_last_good_pair(reloading_proxy):
    proxy, live, tmp_path = reloading_proxy
    (live / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    wait_until(lambda: proxy.output().count("certificate reload failed, keeping the previous one") >= 2)
    assert all(served_serial(proxy.https_port) == 1001 for _ in range(8))
    # A certificate whose key is not the one beside it (a half-done renewal).
    other = tmp_path / "other"
    other.mkdir()
    make_cert(str(other), serial=3003)
    shutil.copy(other / "cert.pem", live / "cert.pem")
    wait_until(lambda: proxy.output().count("certificate reload failed") >= 4)
    assert all(served_serial(proxy.https_port) == 1001 for _ in range(8))
    # The renewal completes: the key arrives, the new pair is served.
    shutil.copy(other / "key.pem", live / "key.pem")
    _every_worker_serves(proxy.https_port, 3003)


def test_a_secret_volume_symlink_swap_is_picked_up(upstream, tmp_path):
    """Kubernetes secret volumes swap a `..data` symlink; the paths stay the same."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    for folder, serial in ((first, 4004), (second, 5005)):
        folder.mkdir()
        make_cert(str(folder), serial=serial)
    data = tmp_path / "..data"
    os.symlink(first, data)
    for name in ("cert.pem", "key.pem"):
        os.symlink(data / name, tmp_path / name)
    proxy = start_proxy(
        routes=ROUTES.format(app=upstream.url),
        env={
            "SSL_ENABLED": "true",
            "SSL_CERT_PATH": str(tmp_path / "cert.pem"),
            "SSL_KEY_PATH": str(tmp_path / "key.pem"),
            "SSL_RELOAD_INTERVAL_S": "0.2",
        },
    )
    try:
        wait_until(lambda: _port_open(proxy.https_port))
        assert served_serial(proxy.https_port) == 4004
        swap = tmp_path / "..data_tmp"
        os.symlink(second, swap)
        os.replace(swap, data)  # atomic, as the kubelet does
        _every_worker_serves(proxy.https_port, 5005)
    finally:
        proxy.stop()
