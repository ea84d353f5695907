"""A real nginx for tests, on the config parts the benchmark uses (bench/configs.py).

`forward_auth_http` is the documented way to put the PDP in front of a
backend: deploy/nginx/lucid-auth.conf included in a server, as a user would;
`forward_auth_stack` runs it whole, with Redis, a PDP and an echoing backend.
"""

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

from bench import configs, stack
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server, python_argv
from tests.support.redis_server import start_redis

# Answers every request with the method, path and headers it received, as JSON.
ECHO_UPSTREAM = ROOT / "tests" / "quota" / "echo_upstream.py"


def start_nginx(http_body: str, port: int, prefix: str = "lucid-nginx-") -> Server:
    """One nginx worker serving http_body, with its files in a folder of its own
    that goes when the server is stopped."""
    if not stack.find_nginx():
        pytest.skip("nginx not installed (scripts/bootstrap.sh installs it)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = stack.start_nginx(
            workdir, configs.nginx_conf(workdir, http_body, workers="1", worker_connections=64), port
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    stop = server.stop

    def stop_and_clean(timeout: float = 10.0) -> int:
        try:
            return stop(timeout)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    server.stop = stop_and_clean  # Server starts its process in __init__: no subclass hook before that
    return server


def forward_auth_http(port: int, pdp_port: int, upstream_port: int, locations: str = "") -> str:
    """One server on `port`: lucid-auth.conf asks the PDP, then `location /` passes to the upstream."""
    return f"""  upstream lucid_pdp {{ server 127.0.0.1:{pdp_port}; keepalive 8; }}
  upstream backend {{ server 127.0.0.1:{upstream_port}; }}
  server {{
    listen 127.0.0.1:{port};
    include {configs.NGINX_SNIPPETS}/lucid-auth.conf;
    location / {{ proxy_pass http://backend; }}
{locations}
  }}"""


@contextlib.contextmanager
def forward_auth_stack(start_pdp, locations: str = "", prefix: str = "lucid-nginx-"):
    """Redis, the PDP from start_pdp(redis_url), ECHO_UPSTREAM and nginx in front of
    it with forward_auth_http(locations); yields the nginx Server and stops all
    four, the last started first."""
    started = []
    try:
        redis_server = start_redis()
        started.append(redis_server)
        pdp = start_pdp(redis_server.redis_url)
        started.append(pdp)
        upstream_port = free_port()
        started.append(Server(python_argv(str(ECHO_UPSTREAM), str(upstream_port)), upstream_port))
        port = free_port()
        nginx = start_nginx(forward_auth_http(port, pdp.port, upstream_port, locations), port, prefix)
        started.append(nginx)
        yield nginx
    finally:
        for server in reversed(started):
            server.stop()
