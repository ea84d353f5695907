"""Start real upstreams and real proxies on loopback ports; speak raw HTTP to them."""

import json
import os
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv
from tests.support.waiting import wait_until  # noqa: F401  (the proxy tests import it from here)

HERE = Path(__file__).parent
ECHO = str(HERE / "echo_server.py")


def start_echo(name: str) -> Server:
    port = free_port()
    server = Server(python_argv(ECHO, str(port), name), port)
    server.name = name
    return server


def write_routes(text: str) -> str:
    handle = tempfile.NamedTemporaryFile("w", prefix="lucid-routes-", suffix=".yaml", delete=False)
    handle.write(text)
    handle.close()
    return handle.name


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a PDP that is down)."""
    return f"http://127.0.0.1:{free_port()}"


def start_proxy(
    routes: str = None, upstream: str = None, env: dict = None, workers: int = 1, ready_timeout: float = 30.0
) -> Server:
    """The real proxy (`python -m proxy`) on a free loopback port."""
    port = free_port()
    full_env = {
        "LISTEN_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "PROXY_WORKERS": str(workers),
        "PDP_URL": closed_port_url(),
        "HTTPS_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    full_env.update(env or {})
    argv = python_argv("-m", "proxy")
    if routes is not None:
        argv += ["--routes", write_routes(routes)]
    if upstream is not None:
        argv += ["--upstream", upstream]
    server = Server(argv, port, env=full_env, ready_timeout=ready_timeout)
    server.https_port = int(full_env["HTTPS_PORT"])
    return server


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def json(self):
        return json.loads(self.body)


def read_response(sock_file, method="GET") -> RawResponse:
    status_line = sock_file.readline()
    if not status_line:
        raise ConnectionError("no response")
    status = int(status_line.split()[1])
    headers = []
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(status, headers, b"")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return response
    length = response.header("content-length")
    if response.header("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int(sock_file.readline().split(b";")[0], 16)
            if size == 0:
                sock_file.readline()
                break
            parts.append(sock_file.read(size))
            sock_file.readline()
        response.body = b"".join(parts)
    elif length is not None:
        response.body = sock_file.read(int(length))
    else:
        response.body = sock_file.read()
    return response


def raw_request(port: int, data: bytes, timeout: float = 10.0, method="GET") -> RawResponse:
    """Sends bytes as they are (hostile requests included) and reads one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        with sock.makefile("rb") as sock_file:
            return read_response(sock_file, method)


def get(
    port: int, target: str, headers: dict = None, method: str = "GET", body: bytes = None, timeout: float = 10.0
) -> RawResponse:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    return raw_request(port, data, timeout=timeout, method=method)


def make_cert(directory: str, common_name: str = "localhost", serial: int = None):
    """A self-signed certificate and key made with the real openssl binary; returns (cert, key)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    argv = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        f"/CN={common_name}",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]
    if serial is not None:
        argv += ["-set_serial", str(serial)]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return cert, key


def tls_client_context(max_version=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        context.maximum_version = max_version
    return context


__all__ = ["ROOT", "start_echo", "start_proxy", "get", "raw_request", "make_cert", "wait_until"]
